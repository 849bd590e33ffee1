"""The masked, growing conditional generator and the critic (docs/ALGORITHM.md §2).

The generator is a DCGAN-style stack of transposed convolutions. The weights
of the masked layers are shared by all tasks; each task reads them through its
own binary mask (DGMw: one bit per weight; DGMa: one bit per output unit) and
only the slice of each weight that existed when it was learned. BatchNorms and
the output layer are private to a task. Together these make an old task's
output independent of everything learned after it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genmem.errors import InvalidSetting

VARIANTS = ("dgmw", "dgma")
KERNEL = 4
INIT_STD = 0.02  # DCGAN initialisation, also used for weights added by expansion
DEFAULT_BASE_WIDTH = {"dgmw": 6, "dgma": 20}


def default_widths(variant: str, image_size: int, base_width: int | None = None) -> tuple[int, ...]:
    """Output channels of the masked layers, halving towards the image: (24, 12, 6) for DGMw at 32 px."""
    base = base_width or DEFAULT_BASE_WIDTH[variant]
    depth = masked_depth(image_size)
    return tuple(base * 2 ** (depth - 1 - layer) for layer in range(depth))


def masked_depth(image_size: int) -> int:
    """Number of masked layers: the first maps 1x1 to 4x4, each further one and the output layer double."""
    return int(math.log2(image_size)) - 2


@dataclass(frozen=True)
class GeneratorSpec:
    """The architecture a memory is created with; widths are the initial ones, before any growth."""

    variant: str
    channels: int
    image_size: int
    noise_dim: int
    widths: tuple[int, ...]

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise InvalidSetting(f"unknown variant {self.variant!r}: choose one of {', '.join(VARIANTS)}")
        if self.image_size < 8 or self.image_size & (self.image_size - 1):
            raise InvalidSetting(f"image size {self.image_size} is not supported: use a power of two of at least 8")
        if len(self.widths) != masked_depth(self.image_size):
            raise InvalidSetting(
                f"{self.image_size} px images need {masked_depth(self.image_size)} masked layers, "
                f"got widths {list(self.widths)}"
            )
        if self.channels < 1 or self.noise_dim < 1 or min(self.widths) < 1:
            raise InvalidSetting("channels, noise_dim and widths must be positive")

    @classmethod
    def for_images(cls, variant: str, channels: int, image_size: int = 32, base_width: int | None = None,
                   noise_dim: int = 128) -> "GeneratorSpec":
        return cls(variant, channels, image_size, noise_dim, default_widths(variant, image_size, base_width))


def mask_shapes(spec: GeneratorSpec, widths: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Mask shapes of a task learned at `widths`: the weight's [in, out, k, k] (DGMw) or [out] (DGMa)."""
    if spec.variant == "dgma":
        return [(w,) for w in widths]
    inputs = (spec.noise_dim,) + tuple(widths[:-1])
    return [(i, o, KERNEL, KERNEL) for i, o in zip(inputs, widths)]


def dcgan_init_(module: nn.Module, rng: torch.Generator) -> None:
    """N(0, 0.02) weights and zero biases; BatchNorm scales N(1, 0.02). Drawn from `rng` for reproducibility."""
    for m in module.modules():
        if isinstance(m, SharedDeconv):
            with torch.no_grad():
                m.weight.normal_(0.0, INIT_STD, generator=rng)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            with torch.no_grad():
                m.weight.normal_(0.0, INIT_STD, generator=rng)
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.normal_(1.0, INIT_STD, generator=rng)
                m.bias.zero_()


@contextlib.contextmanager
def fresh_norm_statistics(norms: Iterable[nn.BatchNorm2d]) -> Iterator[None]:
    """Re-estimate BatchNorm running statistics: reset them, average them plainly (momentum None) over the forward
    passes made in training mode inside the block, then give every norm its momentum back."""
    norms = list(norms)
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    try:
        yield
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum


class SharedDeconv(nn.Module):
    """A transposed convolution whose weight [in, out, k, k] every task shares.

    A task reads only weight[:in_width, :out_width] at the widths it was learned
    with; growth appends rows and columns and never touches existing entries.
    """

    def __init__(self, in_width: int, out_width: int, first: bool):
        super().__init__()
        self.stride, self.padding = (1, 0) if first else (2, 1)
        self.weight = nn.Parameter(torch.empty(in_width, out_width, KERNEL, KERNEL))

    def forward(self, x: torch.Tensor, out_width: int, weight_mask: torch.Tensor | None = None) -> torch.Tensor:
        return F.conv_transpose2d(x, self.task_weight(x.shape[1], out_width, weight_mask),
                                  stride=self.stride, padding=self.padding)

    def task_weight(self, in_width: int, out_width: int, weight_mask: torch.Tensor | None) -> torch.Tensor:
        weight = self.weight[:in_width, :out_width]
        return weight if weight_mask is None else weight * weight_mask

    def grow(self, in_width: int, out_width: int, rng: torch.Generator) -> None:
        old = self.weight.detach()
        if (in_width, out_width) == tuple(old.shape[:2]):
            return
        new = torch.empty(in_width, out_width, KERNEL, KERNEL, device=old.device, dtype=old.dtype)
        new.normal_(0.0, INIT_STD, generator=rng)
        new[: old.shape[0], : old.shape[1]] = old
        self.weight = nn.Parameter(new)


class TaskLayers(nn.Module):
    """What belongs to one task alone: its widths, class count, BatchNorms, output layer and binary masks."""

    def __init__(self, widths: tuple[int, ...], num_classes: int, channels: int):
        super().__init__()
        self.widths = tuple(widths)
        self.num_classes = num_classes
        self.norms = nn.ModuleList(nn.BatchNorm2d(w) for w in widths)
        self.out = nn.ConvTranspose2d(widths[-1], channels, KERNEL, 2, 1)

    @property
    def masks(self) -> list[torch.Tensor]:
        """One bool tensor per masked layer; empty until the task is finished."""
        return [buf for name, buf in self.named_buffers(recurse=False) if name.startswith("mask")]

    def set_masks(self, masks: list[torch.Tensor]) -> None:
        # Buffers, so that .to(device) moves them; not persistent, because the store bit-packs them itself.
        for index, mask in enumerate(masks):
            self.register_buffer(f"mask{index}", mask.bool(), persistent=False)


def condition(noise: torch.Tensor, class_index: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Write the one-hot of the class within its task over the first dimensions of the noise."""
    z = noise.clone()
    z[:, :num_classes] = F.one_hot(class_index, num_classes).to(z.dtype)
    return z


class Generator(nn.Module):
    """The memory: shared masked layers that grow, plus the private layers and masks of every task."""

    def __init__(self, spec: GeneratorSpec, rng: torch.Generator | None = None):
        super().__init__()
        self.spec = spec
        inputs = (spec.noise_dim,) + spec.widths[:-1]
        self.layers = nn.ModuleList(
            SharedDeconv(i, o, first=index == 0) for index, (i, o) in enumerate(zip(inputs, spec.widths))
        )
        self.tasks = nn.ModuleList()
        dcgan_init_(self, rng if rng is not None else torch.Generator().manual_seed(0))

    @property
    def widths(self) -> tuple[int, ...]:
        """Current output widths of the masked layers (the widths the next task is learned at)."""
        return tuple(layer.weight.shape[1] for layer in self.layers)

    @property
    def num_learned(self) -> int:
        return sum(1 for task in self.tasks if task.masks)

    def add_task(self, num_classes: int, rng: torch.Generator) -> TaskLayers:
        """Fresh private layers at the current widths for the next task."""
        if num_classes > self.spec.noise_dim:
            raise InvalidSetting(f"a task can hold at most {self.spec.noise_dim} classes (the noise dimension)")
        device = self.layers[0].weight.device
        task = TaskLayers(self.widths, num_classes, self.spec.channels).to(device)
        dcgan_init_(task, rng)
        self.tasks.append(task)
        return task

    def mask_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of a new task's masks, at the current widths."""
        return mask_shapes(self.spec, self.widths)

    def forward(self, noise: torch.Tensor, task: int, class_index: torch.Tensor,
                masks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Images of `task` for the given noise [N, noise_dim] and class indices within the task.

        `masks` are soft masks while the task is being learned; by default the
        task's binary masks are used.
        """
        branch = self.tasks[task]
        if masks is None:
            masks = [m.to(noise.dtype) for m in branch.masks]
        x = condition(noise, class_index, branch.num_classes)[:, :, None, None]
        unit_masks = self.spec.variant == "dgma"
        for layer, norm, width, mask in zip(self.layers, branch.norms, branch.widths, masks, strict=True):
            x = F.relu(norm(layer(x, width, None if unit_masks else mask)))
            if unit_masks:  # after the nonlinearity, so that an unused unit is exactly 0 downstream
                x = x * mask.view(1, -1, 1, 1)
        return torch.tanh(branch.out(x))

    def reserved(self, before: int | None = None) -> list[torch.Tensor]:
        """Per layer, the union of the binary masks of tasks [0, before), padded with False to the current widths."""
        before = self.num_learned if before is None else before
        device = self.layers[0].weight.device
        union = [torch.zeros(shape, dtype=torch.bool, device=device) for shape in self.mask_shapes()]
        for task in self.tasks[:before]:
            for acc, mask in zip(union, task.masks, strict=True):
                acc[tuple(slice(0, n) for n in mask.shape)] |= mask
        return union

    def grow(self, widths: tuple[int, ...], rng: torch.Generator) -> None:
        """Widen the masked layers to `widths` (each at least as wide as now); new weights are N(0, 0.02)."""
        if len(widths) != len(self.layers) or any(n < o for n, o in zip(widths, self.widths)):
            raise ValueError(f"cannot grow widths {self.widths} to {widths}")
        inputs = (self.spec.noise_dim,) + tuple(widths[:-1])
        for layer, in_width, out_width in zip(self.layers, inputs, widths):
            layer.grow(in_width, out_width, rng)


def conv_trunk(channels: int, image_size: int, width: int) -> tuple[nn.Sequential, int]:
    """5x5 stride-2 convolutions down to 4x4 (BatchNorm after the first), LeakyReLU, flattened; and its width."""
    blocks: list[nn.Module] = []
    in_ch = channels
    for index in range(int(math.log2(image_size)) - 2):
        out_ch = width * 2**index
        blocks.append(nn.Conv2d(in_ch, out_ch, 5, 2, 2))
        if index > 0:
            blocks.append(nn.BatchNorm2d(out_ch))
        blocks.append(nn.LeakyReLU(0.2))
        in_ch = out_ch
    return nn.Sequential(*blocks, nn.Flatten()), in_ch * 16


class Discriminator(nn.Module):
    """WGAN-GP critic and AC-GAN classifier in one network: a critic head and a class head over shared features.

    The class head is the paper's task solver: over every class seen so far.
    """

    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 32):
        super().__init__()
        self.features, size = conv_trunk(channels, image_size, width)
        self.critic = nn.Linear(size, 1)
        self.classes = nn.Linear(size, num_classes)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The real-or-fake scores and class logits. labels: each image's class among the classes seen, which this
        head does not read (genmem.conditioning's projection head does)."""
        h = self.features(images)
        return self.critic(h).squeeze(1), self.classes(h)


class Classifier(nn.Module):
    """A standalone classifier with the critic's trunk: what replay is for, and the bounds' common yardstick."""

    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 32):
        super().__init__()
        self.features, size = conv_trunk(channels, image_size, width)
        self.classes = nn.Linear(size, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classes(self.features(images))
