"""The masked, growing conditional generator and the critic (docs/ALGORITHM.md §2, §15, §16).

The generator is a chain of unit groups (output channels) written by masked
layers, transposed convolutions whose weights [in, out, k, k] every task
shares; each task reads them through its own binary mask (DGMw: one bit per
weight; DGMa: one bit per unit of a group) and only the slice of each weight
that existed when it was learned. BatchNorms and the output layer are private
to a task. Together these make an old task's output independent of everything
learned after it.

Which layers there are and how a task's images are computed is the
architecture's: the DCGAN here (one layer per group), the residual network in
genmem.resnet (three layers per group). Everything else (growth, freezing,
the moving average, storage) reads only the wiring every layer carries: the
group it reads, the group it writes and its kernel.
"""

from __future__ import annotations

import contextlib
import importlib
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genmem.errors import InvalidSetting

VARIANTS = ("dgmw", "dgma")
ARCHITECTURES = {"dcgan": "genmem.nets", "resnet": "genmem.resnet"}  # each module defines ARCHITECTURE
KERNEL = 4
INIT_STD = 0.02  # DCGAN initialisation, also used for weights added by expansion
DEFAULT_BASE_WIDTH = {"dgmw": 6, "dgma": 20}


def default_widths(variant: str, image_size: int, base_width: int | None = None, arch: str = "dcgan"
                   ) -> tuple[int, ...]:
    """Initial widths of the unit groups: (24, 12, 6) for a DCGAN DGMw at 32 px (halving towards the image)."""
    family = architecture(arch)
    return family.default_widths(base_width or DEFAULT_BASE_WIDTH[variant], family.depth(image_size))


def masked_depth(image_size: int) -> int:
    """Number of the DCGAN's masked layers: the first maps 1x1 to 4x4, each further one and the output layer
    double."""
    return int(math.log2(image_size)) - 2


def architecture(name: str) -> "Architecture":
    """The architecture family called `name` (ARCHITECTURES)."""
    if name not in ARCHITECTURES:
        raise InvalidSetting(f"unknown architecture {name!r}: choose one of {', '.join(ARCHITECTURES)}")
    return importlib.import_module(ARCHITECTURES[name]).ARCHITECTURE


@dataclass(frozen=True)
class Wire:
    """Where a masked layer sits: the unit group it reads (None: the noise), the group it writes, and its
    transposed convolution's kernel, stride and padding."""

    source: int | None
    group: int
    kernel: int = KERNEL
    stride: int = 2
    padding: int = 1


@dataclass(frozen=True)
class GeneratorSpec:
    """The architecture a memory is created with; widths are the unit groups' initial ones, before any growth.

    arch: the family (`dcgan` or `resnet`); class_norm: whether every task's BatchNorms pick their scale and
    shift by the class (§16).
    """

    variant: str
    channels: int
    image_size: int
    noise_dim: int
    widths: tuple[int, ...]
    arch: str = "dcgan"
    class_norm: bool = False

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise InvalidSetting(f"unknown variant {self.variant!r}: choose one of {', '.join(VARIANTS)}")
        if self.image_size < 8 or self.image_size & (self.image_size - 1):
            raise InvalidSetting(f"image size {self.image_size} is not supported: use a power of two of at least 8")
        depth = self.architecture.depth(self.image_size)
        if len(self.widths) != depth:
            raise InvalidSetting(f"{self.image_size} px images need {depth} unit groups in a {self.arch} generator, "
                                 f"got widths {list(self.widths)}")
        if self.channels < 1 or self.noise_dim < 1 or min(self.widths) < 1:
            raise InvalidSetting("channels, noise_dim and widths must be positive")

    @classmethod
    def for_images(cls, variant: str, channels: int, image_size: int = 32, base_width: int | None = None,
                   noise_dim: int = 128, arch: str = "dcgan", class_norm: bool = False) -> "GeneratorSpec":
        return cls(variant, channels, image_size, noise_dim, default_widths(variant, image_size, base_width, arch),
                   arch, class_norm)

    @property
    def architecture(self) -> "Architecture":
        return architecture(self.arch)

    @property
    def wires(self) -> tuple[Wire, ...]:
        """The masked layers, in order."""
        return self.architecture.wires(len(self.widths))


def in_width(wire: Wire, widths: Sequence[int], noise_dim: int) -> int:
    """The input width of a layer at the groups' `widths`."""
    return noise_dim if wire.source is None else widths[wire.source]


def mask_shapes(spec: GeneratorSpec, widths: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Mask shapes of a task learned at `widths`: per masked layer its weight's [in, out, k, k] (DGMw), or per unit
    group [width] (DGMa)."""
    if spec.variant == "dgma":
        return [(w,) for w in widths]
    return [(in_width(w, widths, spec.noise_dim), widths[w.group], w.kernel, w.kernel) for w in spec.wires]


def dcgan_init_(module: nn.Module, rng: torch.Generator) -> None:
    """N(0, 0.02) weights (or N(0, init_std) where a layer carries its own) and zero biases; BatchNorm scales
    N(1, 0.02). Drawn from `rng` for reproducibility."""
    for m in module.modules():
        if isinstance(m, SharedDeconv):
            with torch.no_grad():
                m.weight.normal_(0.0, INIT_STD, generator=rng)
        elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            with torch.no_grad():
                m.weight.normal_(0.0, getattr(m, "init_std", INIT_STD), generator=rng)
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            scale, shift = m.scale_and_shift() if isinstance(m, TaskNorm) else (m.weight, m.bias)
            with torch.no_grad():
                scale.normal_(1.0, INIT_STD, generator=rng)
                shift.zero_()


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
    `wire` says where it sits (by default the DCGAN's first layer or a later one).
    """

    def __init__(self, in_width: int, out_width: int, first: bool = False, wire: Wire | None = None):
        super().__init__()
        self.wire = wire or (Wire(None, 0, KERNEL, 1, 0) if first else Wire(0, 1))
        self.stride, self.padding = self.wire.stride, self.wire.padding
        self.weight = nn.Parameter(torch.empty(in_width, out_width, self.wire.kernel, self.wire.kernel))

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
        new = torch.empty(in_width, out_width, *old.shape[2:], device=old.device, dtype=old.dtype)
        new.normal_(0.0, INIT_STD, generator=rng)
        new[: old.shape[0], : old.shape[1]] = old
        self.weight = nn.Parameter(new)


@dataclass
class FrozenNorm:
    """A finished task's BatchNorm as plain tensors, for the fast sampler: its statistics (None once folded into
    the convolution before it) and its scale and shift, [width] or, class-conditional, [classes, width]."""

    mean: torch.Tensor | None
    var: torch.Tensor | None
    scale: torch.Tensor
    shift: torch.Tensor
    eps: float

    def __call__(self, x: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        """The same operations as the module's eval-mode forward, so that float32 results are equal bit for bit."""
        if self.scale.dim() == 1:
            return F.batch_norm(x, self.mean, self.var, self.scale, self.shift, False, 0.0, self.eps)
        if self.mean is not None:
            x = F.batch_norm(x, self.mean, self.var, None, None, False, 0.0, self.eps)
        return x * self.scale[classes][:, :, None, None] + self.shift[classes][:, :, None, None]

    def fold(self, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, "FrozenNorm | None"]:
        """Fold the statistics (and a shared scale and shift) into the transposed convolution [in, out, k, k] before
        it: its new weight, its bias, and what is left of the norm (a class's scale and shift, or None)."""
        root = torch.sqrt(self.var + self.eps)
        if self.scale.dim() == 1:
            factor = self.scale / root
            return weight * factor.view(1, -1, 1, 1), self.shift - self.mean * factor, None
        return weight / root.view(1, -1, 1, 1), -self.mean / root, FrozenNorm(None, None, self.scale, self.shift,
                                                                              self.eps)

    def to(self, device: torch.device, dtype: torch.dtype) -> "FrozenNorm":
        def move(t):
            return None if t is None else t.to(device, dtype)

        return FrozenNorm(move(self.mean), move(self.var), move(self.scale), move(self.shift), self.eps)


class TaskNorm(nn.BatchNorm2d):
    """A task's private BatchNorm after a masked layer: a plain BatchNorm2d that ignores the class."""

    def forward(self, x: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        return super().forward(x)

    def scale_and_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight, self.bias

    def rescale(self, normalised: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Scale and shift already normalised activations (for genmem.distributed, which normalises itself)."""
        return normalised * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)

    def frozen(self) -> FrozenNorm:
        scale, shift = self.scale_and_shift()
        return FrozenNorm(self.running_mean.detach().float(), self.running_var.detach().float(),
                          scale.detach().float(), shift.detach().float(), self.eps)


class ClassNorm(TaskNorm):
    """Class-conditional BatchNorm (§16): statistics over the whole batch, then a scale and shift per class of the
    task, [classes, width], chosen by each image's class within the task."""

    def __init__(self, width: int, num_classes: int):
        super().__init__(width, affine=False)
        self.scale = nn.Parameter(torch.ones(num_classes, width))
        self.shift = nn.Parameter(torch.zeros(num_classes, width))

    def forward(self, x: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        return self.rescale(super().forward(x), classes)

    def scale_and_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.scale, self.shift

    def rescale(self, normalised: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        return normalised * self.scale[classes][:, :, None, None] + self.shift[classes][:, :, None, None]


class TaskLayers(nn.Module):
    """What belongs to one task alone: its widths, class count, BatchNorms, output layer and binary masks.

    widths: the unit groups' widths it is learned at; norms: its BatchNorms in the order its architecture uses
    them; out: its output layer.
    """

    def __init__(self, widths: tuple[int, ...], num_classes: int, norms: Iterable[TaskNorm], out: nn.Module):
        super().__init__()
        self.widths = tuple(widths)
        self.num_classes = num_classes
        self.norms = nn.ModuleList(norms)
        self.out = out

    @property
    def masks(self) -> list[torch.Tensor]:
        """One bool tensor per masked layer (DGMw) or unit group (DGMa); empty until the task is finished."""
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


def class_of(z: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The class within the task that `condition` wrote into z (for networks that are handed z alone)."""
    return z[:, :num_classes].argmax(1)


def unit_masked(x: torch.Tensor, unit_mask: torch.Tensor | None) -> torch.Tensor:
    """DGMa's mask on a group's units, after the nonlinearity, so that an unused unit is exactly 0 downstream."""
    return x if unit_mask is None else x * unit_mask.view(1, -1, 1, 1)


class Architecture:
    """A generator family: its unit groups, masked layers (wires), private layers and forward pass, and the critic
    trunk that goes with it. Stateless; one instance per family (ARCHITECTURES)."""

    name: str

    def depth(self, image_size: int) -> int:
        """The number of unit groups for images of this size."""
        raise NotImplementedError

    def default_widths(self, base: int, depth: int) -> tuple[int, ...]:
        raise NotImplementedError

    def wires(self, depth: int) -> tuple[Wire, ...]:
        raise NotImplementedError

    def norm_groups(self, depth: int) -> tuple[int, ...]:
        """For each private BatchNorm of a task, in order, the unit group whose width it has."""
        raise NotImplementedError

    def output_layer(self, width: int, channels: int) -> nn.Module:
        raise NotImplementedError

    def forward(self, generator: "Generator", z: torch.Tensor, branch: TaskLayers,
                weight_masks: Sequence[torch.Tensor | None], unit_masks: Sequence[torch.Tensor | None],
                classes: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] of the task `branch` for the conditioned noise z [N, noise_dim]."""
        raise NotImplementedError

    def critic_trunk(self, channels: int, image_size: int, width: int) -> tuple[nn.Module, int]:
        """The critic's trunk (images to features) and its feature size."""
        raise NotImplementedError


class DCGAN(Architecture):
    """Transposed convolutions with kernel 4: the first maps the 1x1 noise to 4x4, each further one doubles, widths
    halving towards the image (§2)."""

    name = "dcgan"

    def depth(self, image_size: int) -> int:
        return masked_depth(image_size)

    def default_widths(self, base: int, depth: int) -> tuple[int, ...]:
        return tuple(base * 2 ** (depth - 1 - layer) for layer in range(depth))

    def wires(self, depth: int) -> tuple[Wire, ...]:
        return (Wire(None, 0, KERNEL, 1, 0),) + tuple(Wire(group - 1, group) for group in range(1, depth))

    def norm_groups(self, depth: int) -> tuple[int, ...]:
        return tuple(range(depth))

    def output_layer(self, width: int, channels: int) -> nn.Module:
        return nn.ConvTranspose2d(width, channels, KERNEL, 2, 1)

    def forward(self, generator, z, branch, weight_masks, unit_masks, classes):
        x = z[:, :, None, None]
        for layer, norm, width, weight_mask, unit_mask in zip(generator.layers, branch.norms, branch.widths,
                                                              weight_masks, unit_masks, strict=True):
            x = unit_masked(F.relu(norm(layer(x, width, weight_mask), classes)), unit_mask)
        return torch.tanh(branch.out(x))

    def critic_trunk(self, channels: int, image_size: int, width: int) -> tuple[nn.Module, int]:
        return conv_trunk(channels, image_size, width)


ARCHITECTURE = DCGAN()


class Generator(nn.Module):
    """The memory: shared masked layers that grow, plus the private layers and masks of every task."""

    def __init__(self, spec: GeneratorSpec, rng: torch.Generator | None = None):
        super().__init__()
        self.spec = spec
        self.architecture = spec.architecture
        self.layers = nn.ModuleList(SharedDeconv(in_width(wire, spec.widths, spec.noise_dim), spec.widths[wire.group],
                                                 wire=wire) for wire in spec.wires)
        self.tasks = nn.ModuleList()
        dcgan_init_(self, rng if rng is not None else torch.Generator().manual_seed(0))

    @property
    def wires(self) -> tuple[Wire, ...]:
        return tuple(layer.wire for layer in self.layers)

    @property
    def widths(self) -> tuple[int, ...]:
        """Current widths of the unit groups (the widths the next task is learned at)."""
        widths = {layer.wire.group: layer.weight.shape[1] for layer in self.layers}
        return tuple(widths[group] for group in range(len(widths)))

    @property
    def num_learned(self) -> int:
        return sum(1 for task in self.tasks if task.masks)

    def task_layers(self, widths: tuple[int, ...], num_classes: int) -> TaskLayers:
        """A task's private layers at `widths` (not yet initialised)."""
        family, spec = self.architecture, self.spec
        norms = [ClassNorm(widths[group], num_classes) if spec.class_norm else TaskNorm(widths[group])
                 for group in family.norm_groups(len(widths))]
        return TaskLayers(widths, num_classes, norms, family.output_layer(widths[-1], spec.channels))

    def add_task(self, num_classes: int, rng: torch.Generator) -> TaskLayers:
        """Fresh private layers at the current widths for the next task."""
        if num_classes > self.spec.noise_dim:
            raise InvalidSetting(f"a task can hold at most {self.spec.noise_dim} classes (the noise dimension)")
        device = self.layers[0].weight.device
        task = self.task_layers(self.widths, num_classes).to(device)
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
        if self.spec.variant == "dgma":
            weight_masks, unit_masks = [None] * len(self.layers), masks
        else:
            weight_masks, unit_masks = masks, [None] * len(branch.widths)
        z = condition(noise, class_index, branch.num_classes)
        return self.architecture.forward(self, z, branch, weight_masks, unit_masks, class_index)

    def reserved(self, before: int | None = None) -> list[torch.Tensor]:
        """Per mask (masked layer for DGMw, unit group for DGMa), the union of the binary masks of tasks
        [0, before), padded with False to the current widths."""
        before = self.num_learned if before is None else before
        device = self.layers[0].weight.device
        union = [torch.zeros(shape, dtype=torch.bool, device=device) for shape in self.mask_shapes()]
        for task in self.tasks[:before]:
            for acc, mask in zip(union, task.masks, strict=True):
                acc[tuple(slice(0, n) for n in mask.shape)] |= mask
        return union

    def grow(self, widths: tuple[int, ...], rng: torch.Generator) -> None:
        """Widen the unit groups to `widths` (each at least as wide as now); new weights are N(0, 0.02)."""
        if len(widths) != len(self.widths) or any(n < o for n, o in zip(widths, self.widths)):
            raise ValueError(f"cannot grow widths {self.widths} to {widths}")
        for layer in self.layers:
            layer.grow(in_width(layer.wire, widths, self.spec.noise_dim), widths[layer.wire.group], rng)


def channels_last(images: torch.Tensor) -> torch.Tensor:
    """Images laid out channels-last, so that a trunk's convolutions and BatchNorms run on oneDNN's channels-last
    kernels: on MNIST a critic step 10 to 15 % and the replay classifiers 6 % faster on a CPU, the same numbers bit for
    bit; colour images round differently (docs/ALGORITHM.md §10). Grey images are only given new strides."""
    return images.contiguous(memory_format=torch.channels_last)


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

    The trunk (`features`: images to features) is the architecture's (`arch`); the heads read its features only.
    The class head is the paper's task solver: over every class seen so far.
    """

    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 32, arch: str = "dcgan"):
        super().__init__()
        self.features, size = architecture(arch).critic_trunk(channels, image_size, width)
        self.critic = nn.Linear(size, 1)
        self.classes = nn.Linear(size, num_classes)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The real-or-fake scores and class logits. labels: each image's class among the classes seen, which this
        head does not read (genmem.conditioning's projection head does)."""
        h = self.trunk(images)
        return self.critic(h).squeeze(1), self.classes(h)

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        """The features of `images` (`channels_last`)."""
        return self.features(channels_last(images))


class Classifier(nn.Module):
    """A standalone classifier with the DCGAN critic's trunk: what replay is for, and the bounds' common
    yardstick."""

    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 32):
        super().__init__()
        self.features, size = conv_trunk(channels, image_size, width)
        self.classes = nn.Linear(size, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classes(self.features(channels_last(images)))
