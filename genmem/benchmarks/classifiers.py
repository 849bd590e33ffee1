"""The networks the protocol's own classifiers (replay, joint, fine-tuned) can be: `conv`, the critic's trunk
(genmem.nets.Classifier); `mlp`, the multilayer perceptron van de Ven & Tolias (2019) use on split-MNIST; or
`resnet18`, the ResNet-18 the split-CIFAR-10 literature trains from scratch. The last two let a run be set beside
the field's figures. Each trains through genmem.classifier.train_classifier."""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.models import resnet18

from genmem.classifier import fresh_classifier
from genmem.errors import InvalidSetting

CLASSIFIERS = ("conv", "mlp", "resnet18")
MLP_UNITS = (400, 400)  # van de Ven & Tolias 2019: two fully connected hidden layers of 400 ReLU units


class MLPClassifier(nn.Module):
    """Pixels, flattened, through hidden layers of ReLU units to one logit per class; trained from scratch."""

    def __init__(self, inputs: int, num_classes: int, units: tuple[int, ...] = MLP_UNITS,
                 rng: torch.Generator | None = None):
        super().__init__()
        sizes = (inputs, *units)
        hidden = [part for i, o in zip(sizes, sizes[1:]) for part in (nn.Linear(i, o), nn.ReLU())]
        self.layers = nn.Sequential(nn.Flatten(), *hidden, nn.Linear(sizes[-1], num_classes))
        rng = rng if rng is not None else torch.Generator().manual_seed(0)
        for layer in self.layers:
            if isinstance(layer, nn.Linear):  # PyTorch's own initialisation, drawn from `rng`
                nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=rng)
                bound = 1 / math.sqrt(layer.in_features)
                nn.init.uniform_(layer.bias, -bound, bound, generator=rng)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.layers(images)


def small_image_resnet18(channels: int, num_classes: int, seed: int) -> nn.Module:
    """torchvision's ResNet-18 with the stem small images are given in the continual-learning literature: one 3x3
    convolution of stride 1 and no max pooling, so that a 32 px image still reaches its last stage at 4x4 (the
    ImageNet stem would shrink it to 1x1). Its weights are drawn by torchvision's own initialisation from `seed`."""
    with torch.random.fork_rng(devices=[]):  # torchvision draws from the global generator; leave it as it was
        torch.manual_seed(seed)
        model = resnet18(num_classes=num_classes)
        model.conv1 = nn.Conv2d(channels, model.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def new_classifier(network: str, channels: int, image_size: int, num_classes: int, width: int, seed: int
                   ) -> nn.Module:
    """A fresh classifier of the named network, its weights drawn from `seed` (`width`: the conv one's; the others
    keep their published sizes)."""
    if network == "mlp":
        return MLPClassifier(channels * image_size**2, num_classes, rng=torch.Generator().manual_seed(seed))
    if network == "resnet18":
        return small_image_resnet18(channels, num_classes, seed)
    if network == "conv":
        return fresh_classifier(channels, image_size, num_classes, width, seed)
    raise InvalidSetting(f"unknown classifier {network!r}: choose from {', '.join(CLASSIFIERS)}")
