"""The networks the protocol's own classifiers (replay, joint, fine-tuned) can be: `conv`, the critic's trunk
(genmem.nets.Classifier), or `mlp`, the multilayer perceptron van de Ven & Tolias (2019) use on split-MNIST, so
that a run can be set beside their figures. Either trains through genmem.classifier.train_classifier."""

from __future__ import annotations

import math

import torch
from torch import nn

from genmem.classifier import fresh_classifier
from genmem.errors import InvalidSetting

CLASSIFIERS = ("conv", "mlp")
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


def new_classifier(network: str, channels: int, image_size: int, num_classes: int, width: int, seed: int
                   ) -> nn.Module:
    """A fresh classifier of the named network, its weights drawn from `seed` (`width`: the conv one's)."""
    if network == "mlp":
        return MLPClassifier(channels * image_size**2, num_classes, rng=torch.Generator().manual_seed(seed))
    if network == "conv":
        return fresh_classifier(channels, image_size, num_classes, width, seed)
    raise InvalidSetting(f"unknown classifier {network!r}: choose from {', '.join(CLASSIFIERS)}")
