"""The residual generator and critic, the paper's CIFAR-10 family (docs/ALGORITHM.md §15).

The generator is a chain of unit groups, as the DCGAN's, but every group after
the first is a residual stage of three masked layers that all write its units:

    u = upsample(x)                                      nearest, 2x
    h = mask(relu(BN_a(conv_a(u))))                      3x3, previous group -> this group
    x = mask(relu(BN_b(conv_b(h)) + shortcut(u)))        3x3, this group -> this group; 1x1 shortcut

`mask` is DGMa's unit mask of the stage's group, the same for h and x, so an
unused unit is exactly 0 wherever it is read. The first group maps the noise
to 4x4 as the DCGAN's first layer does. The 3x3 and 1x1 layers are transposed
convolutions with stride 1 (a convolution with its kernel flipped and its
input and output swapped: the same functions), so every masked weight keeps
the layout [in, out, k, k] that growth, freezing and the masks rely on.

The critic's trunk follows the reference's residual critic: blocks of two 3x3
convolutions with ReLUs and a 1x1 projected shortcut, average-pooled by 2 down
to 8x8, two more blocks at 8x8, no normalisation, then ReLU and the mean over
the image. `ResNetTaskNetwork` is a finished task's generator materialised for
the fast sampler (genmem.sampler).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from genmem.nets import KERNEL, Architecture, FrozenNorm, Generator, Wire, class_of, in_width, unit_masked

STAGE_LAYERS = 3  # conv_a, conv_b, shortcut


def stage_wires(group: int) -> tuple[Wire, Wire, Wire]:
    """The masked layers of residual stage `group` (1 or more): conv_a, conv_b, shortcut."""
    return Wire(group - 1, group, 3, 1, 1), Wire(group, group, 3, 1, 1), Wire(group - 1, group, 1, 1, 0)


def upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class ResNet(Architecture):
    """One group at 4x4 from the noise, then one residual stage per doubling; every group `base` wide."""

    name = "resnet"

    def depth(self, image_size: int) -> int:
        return int(math.log2(image_size)) - 1

    def default_widths(self, base: int, depth: int) -> tuple[int, ...]:
        return (base,) * depth  # the reference keeps one width in every block

    def wires(self, depth: int) -> tuple[Wire, ...]:
        stages = (wire for group in range(1, depth) for wire in stage_wires(group))
        return (Wire(None, 0, KERNEL, 1, 0), *stages)

    def norm_groups(self, depth: int) -> tuple[int, ...]:
        """One BatchNorm after the first layer, then two per stage (after conv_a and conv_b)."""
        return (0, *(group for group in range(1, depth) for _ in range(2)))

    def output_layer(self, width: int, channels: int) -> nn.Module:
        return nn.Conv2d(width, channels, 3, 1, 1)

    def forward(self, generator, z, branch, weight_masks, unit_masks, classes):
        layers, norms, widths = generator.layers, branch.norms, branch.widths
        x = unit_masked(F.relu(norms[0](layers[0](z[:, :, None, None], widths[0], weight_masks[0]), classes)),
                        unit_masks[0])
        for group in range(1, len(widths)):
            first, width = 1 + STAGE_LAYERS * (group - 1), widths[group]
            conv_a, conv_b, shortcut = layers[first: first + STAGE_LAYERS]
            mask_a, mask_b, mask_shortcut = weight_masks[first: first + STAGE_LAYERS]
            norm_a, norm_b = norms[2 * group - 1: 2 * group + 1]
            u = upsample(x)
            h = unit_masked(F.relu(norm_a(conv_a(u, width, mask_a), classes)), unit_masks[group])
            x = unit_masked(F.relu(norm_b(conv_b(h, width, mask_b), classes) + shortcut(u, width, mask_shortcut)),
                            unit_masks[group])
        return torch.tanh(branch.out(x))

    def critic_trunk(self, channels: int, image_size: int, width: int) -> tuple[nn.Module, int]:
        return residual_trunk(channels, image_size, width), width


ARCHITECTURE = ResNet()


def he_scaled(conv: nn.Conv2d) -> nn.Conv2d:
    """Mark a convolution for He's initialisation, N(0, 2 / fan-in) (genmem.nets.dcgan_init_ draws it): without
    normalisation, the DCGAN's N(0, 0.02) leaves a deep critic's score and its gradient near 0 (1e-5 at 32 px)."""
    conv.init_std = math.sqrt(2 / (conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]))
    return conv


class CriticBlock(nn.Module):
    """A residual critic block: [ReLU,] 3x3 conv, ReLU, 3x3 conv, plus a shortcut (1x1 projection where the width
    changes or the block pools), average-pooled by 2 when `down`. The first block reads the image itself, so it
    starts without a ReLU."""

    def __init__(self, in_ch: int, out_ch: int, down: bool, first: bool):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = he_scaled(nn.Conv2d(in_ch, out_ch, 3, 1, 1))
        self.conv2 = he_scaled(nn.Conv2d(out_ch, out_ch, 3, 1, 1))
        self.shortcut = he_scaled(nn.Conv2d(in_ch, out_ch, 1)) if down or in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(F.relu(self.conv1(x if self.first else F.relu(x))))
        h = h + self.shortcut(x)
        return F.avg_pool2d(h, 2) if self.down else h


class MeanFeatures(nn.Module):
    """ReLU, then the mean over the image: [N, C, H, W] to [N, C]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).mean(dim=(2, 3))


def residual_trunk(channels: int, image_size: int, width: int) -> nn.Sequential:
    """Residual blocks `width` wide, each pooling by 2 down to 8x8 (at least one), then two at that size."""
    downs = max(int(math.log2(image_size)) - 3, 1)
    blocks = [CriticBlock(channels if index == 0 else width, width, down=index < downs, first=index == 0)
              for index in range(downs + 2)]
    return nn.Sequential(*blocks, MeanFeatures())


class ResNetTaskNetwork:
    """A finished task of a residual generator with masks and slices fixed into plain weights (genmem.sampler).

    DGMw's masks are multiplied into each weight; DGMa's unit masks into the input rows of every layer that reads
    the group (the same function, as an unused unit then meets only zero weights). In float32 the result equals
    Generator.forward in eval mode bit for bit; `fold_norms` folds the BatchNorm statistics into the convolutions
    (for half precision).
    """

    def __init__(self, generator: Generator, task: int, device: torch.device, dtype: torch.dtype, fold_norms: bool):
        branch, spec = generator.tasks[task], generator.spec
        self.num_classes, self.dtype = branch.num_classes, dtype
        self.class_norm = spec.class_norm
        unit_masks = branch.masks if spec.variant == "dgma" else None
        with torch.no_grad():
            weights = []
            for index, layer in enumerate(generator.layers):
                wire = layer.wire
                weight = layer.weight[:in_width(wire, branch.widths, spec.noise_dim), :branch.widths[wire.group]]
                weight = weight.detach().float()
                if unit_masks is None:
                    weight = weight * branch.masks[index]
                elif wire.source is not None:
                    weight = weight * unit_masks[wire.source].view(-1, 1, 1, 1)
                weights.append(weight)
            out_weight = branch.out.weight.detach().float()
            if unit_masks is not None:
                out_weight = out_weight * unit_masks[-1].view(1, -1, 1, 1)
            norms = [norm.frozen() for norm in branch.norms]
            biases: list[torch.Tensor | None] = [None] * len(weights)
            if fold_norms:
                for norm_index, layer_index in enumerate(self._normed_layers(len(branch.widths))):
                    weights[layer_index], biases[layer_index], norms[norm_index] = norms[norm_index].fold(
                        weights[layer_index])
        self.wires = generator.wires
        self.weights = [w.to(device, dtype) for w in weights]
        self.biases = [None if b is None else b.to(device, dtype) for b in biases]
        self.norms = [None if n is None else n.to(device, dtype) for n in norms]
        self.out_weight = out_weight.to(device, dtype)
        self.out_bias = branch.out.bias.detach().float().to(device, dtype)

    @staticmethod
    def _normed_layers(depth: int) -> list[int]:
        """For each BatchNorm, the layer it follows: the first, then conv_a and conv_b of every stage."""
        return [0, *(1 + STAGE_LAYERS * (group - 1) + k for group in range(1, depth) for k in (0, 1))]

    def _layer(self, index: int, x: torch.Tensor) -> torch.Tensor:
        wire = self.wires[index]
        return F.conv_transpose2d(x, self.weights[index], self.biases[index], stride=wire.stride,
                                  padding=wire.padding)

    def _norm(self, index: int, x: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        norm: FrozenNorm | None = self.norms[index]
        return x if norm is None else norm(x, classes)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        z = z.to(self.dtype)
        classes = class_of(z, self.num_classes) if self.class_norm else None
        x = F.relu(self._norm(0, self._layer(0, z[:, :, None, None]), classes))
        for stage in range((len(self.wires) - 1) // STAGE_LAYERS):
            first = 1 + STAGE_LAYERS * stage
            u = upsample(x)
            h = F.relu(self._norm(2 * stage + 1, self._layer(first, u), classes))
            x = F.relu(self._norm(2 * stage + 2, self._layer(first + 1, h), classes) + self._layer(first + 2, u))
        return torch.tanh(F.conv2d(x, self.out_weight, self.out_bias, padding=1))
