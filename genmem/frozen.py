"""One task of a generator, frozen for sampling: what the sampler runs to draw that task's classes.

Each generator architecture (GeneratorSpec.arch) says how one of its tasks is frozen (`freezer`); the
sampler only groups classes by task, draws their noise, cuts the work into chunks and converts
pixels, so a new architecture adds its frozen network here without touching the sampler.

A frozen network is called with noise [n, noise_dim] and each image's class index within the task [n]
and returns images in [-1, 1], [n, C, H, W] in any memory format. Two rules make the sampler's
promises hold: an image's values must not depend on the other images in its call (no reduction
across the batch, no kernel whose result changes with the batch size; the sampler runs each call
on one thread, where oneDNN's convolutions are invariant to the batch), and `exact=True` must give
the task's own forward pass bit for bit in float32.

The DCGAN generator (genmem.nets.Generator) is frozen by multiplying each task's masks into its
slices of the shared weights once (DGMw), or its unit masks into the next layer's input weights
(DGMa: the same function, since an unused unit then meets only zero weights). Then:

- exact: the same transposed convolutions and BatchNorms as `Generator.forward`, with the activations
  channels-last (oneDNN computes them with the same kernel in either layout, without the two
  reorders per layer that NCHW costs);
- folded: each BatchNorm folded into the layer before it; the first layer (1x1 to 4x4) as a matrix
  product, and the output layer (to 1 or 3 channels, over which oneDNN vectorises a transposed
  convolution, so it ran at a sixteenth of the machine's width) as a product over pixels followed by
  the sum of each output phase's four taps. It sums in other orders, so it rounds differently from
  the exact pass (docs/ALGORITHM.md §17). With class-conditional BatchNorm (§16) a class's scale and
  shift cannot be folded into a layer shared by the task's classes, so such a task runs the exact pass
  in the dtype asked for.

The residual generator (genmem.resnet) freezes its own way, ResNetTaskNetwork; folded there means its
BatchNorm statistics folded into the convolutions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F

from genmem.errors import InvalidSetting
from genmem.nets import FrozenNorm, Generator, condition
from genmem.resnet import ResNetTaskNetwork

CHANNELS_LAST = torch.channels_last
# MKL computes a product of very few rows with other kernels, which sum in another order: one row on Intel CPUs, up to
# three on an AMD EPYC (measured). The folded first layer pads a smaller chunk to this many rows.
MIN_PRODUCT_ROWS = 8


class FrozenNetwork(Protocol):
    num_classes: int

    def __call__(self, noise: torch.Tensor, class_index: torch.Tensor) -> torch.Tensor: ...


Freezer = Callable[[Generator, int, torch.device, torch.dtype, bool], FrozenNetwork]
FREEZERS: dict[str, Freezer] = {}


def freezer(architecture: str) -> Callable[[Freezer], Freezer]:
    """Register how to freeze one task of `architecture` (a GeneratorSpec.arch): build(generator, task, device,
    dtype, exact) -> FrozenNetwork."""
    def register(build: Freezer) -> Freezer:
        FREEZERS[architecture] = build
        return build
    return register


def freeze(generator: Generator, task: int, device: torch.device, dtype: torch.dtype, exact: bool) -> FrozenNetwork:
    """Task `task` of `generator` as a network that samples on `device` in `dtype`."""
    architecture = generator.spec.arch
    if architecture not in FREEZERS:
        raise InvalidSetting(f"cannot sample from a {architecture} generator: no frozen network is registered for it")
    if exact and dtype != torch.float32:
        raise InvalidSetting("the exact forward pass is float32 only")
    with torch.no_grad():
        return FREEZERS[architecture](generator, task, device, dtype, exact)


def task_weights(generator: Generator, task: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The task's slices of the shared weights with its masks multiplied in, and its output layer's weight (float32)."""
    branch = generator.tasks[task]
    unit_masks = generator.spec.variant == "dgma"
    weights, in_width, in_mask = [], generator.spec.noise_dim, None
    for shared, width, mask in zip(generator.layers, branch.widths, branch.masks, strict=True):
        weight = shared.weight[:in_width, :width].detach().float()
        if unit_masks:
            if in_mask is not None:
                weight = weight * in_mask.view(-1, 1, 1, 1)
            in_mask = mask.float()
        else:
            weight = weight * mask
        weights.append(weight)
        in_width = width
    out = branch.out.weight.detach().float()
    if in_mask is not None:
        out = out * in_mask.view(-1, 1, 1, 1)
    return weights, out


# For each output phase a of a 4x4, stride-2, padding-1 transposed convolution (output row 2i + a), the
# (input row offset, kernel row) pairs that reach it: output 2i + a takes input i + offset through that kernel row.
PHASE_TAPS = (((0, 1), (-1, 3)), ((0, 2), (1, 0)))


def _overlap(offset: int, size: int) -> tuple[slice, slice]:
    """(output rows, input rows) where output i takes input i + offset, both within [0, size)."""
    return slice(max(0, -offset), size - max(0, offset)), slice(max(0, offset), size - max(0, -offset))


def upsample_by_product(x: torch.Tensor, weight_rows: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A 4x4, stride-2, padding-1 transposed convolution of channels-last x [n, c_in, h, w] as one matrix product
    (every kernel tap of every pixel) and, per output phase, the sum of its four shifted taps.

    weight_rows: [c_out * 16, c_in], rows in (channel, kernel row, kernel column) order. Returns [c_out, n, 2h, 2w].
    Meant for the output layer: oneDNN vectorises a transposed convolution over its output channels, of which
    an image has 1 or 3, while the product here runs over pixels.
    """
    n, c_in, h, w = x.shape
    c_out = weight_rows.shape[0] // 16
    taps = torch.mm(weight_rows, x.permute(0, 2, 3, 1).reshape(-1, c_in).t()).view(c_out, 4, 4, n, h, w)
    out = taps.new_empty(c_out, n, h, 2, w, 2)
    for a in range(2):
        for b in range(2):
            phase = out[:, :, :, a, :, b]
            (_, kh), (di, kh2) = PHASE_TAPS[a]
            (_, kw), (dj, kw2) = PHASE_TAPS[b]
            (oi, ii), (oj, ij) = _overlap(di, h), _overlap(dj, w)
            phase.copy_(taps[:, kh, kw])
            phase[:, :, oi, :] += taps[:, kh2, kw, :, ii, :]
            phase[:, :, :, oj] += taps[:, kh, kw2, :, :, ij]
            phase[:, :, oi, oj] += taps[:, kh2, kw2, :, ii, ij]
    return out.view(c_out, n, 2 * h, 2 * w).add_(bias.view(-1, 1, 1, 1))


@dataclass
class Stage:
    """One hidden layer: a transposed convolution, then (exact only) its BatchNorm's eval-mode arguments."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: int
    padding: int
    norm: FrozenNorm | None


class ExactDeconvStack:
    """The task's masked forward pass as `Generator.forward` computes it, with the activations channels-last."""

    def __init__(self, generator: Generator, task: int, device: torch.device, dtype: torch.dtype):
        branch = generator.tasks[task]
        self.num_classes, self.dtype = branch.num_classes, dtype
        self.class_norm = generator.spec.class_norm
        weights, out_weight = task_weights(generator, task)
        self.stages = [Stage(w.to(device, dtype), None, shared.stride, shared.padding, norm.frozen().to(device, dtype))
                       for w, shared, norm in zip(weights, generator.layers, branch.norms)]
        self.out = out_weight.to(device, dtype), branch.out.bias.detach().to(device, dtype)

    def __call__(self, noise: torch.Tensor, class_index: torch.Tensor) -> torch.Tensor:
        x = condition(noise, class_index, self.num_classes).to(self.dtype)[:, :, None, None]
        classes = class_index if self.class_norm else None
        for stage in self.stages:
            x = F.conv_transpose2d(x, stage.weight, None, stride=stage.stride, padding=stage.padding)
            x = stage.norm(x, classes).relu_().contiguous(memory_format=CHANNELS_LAST)
        return F.conv_transpose2d(x, *self.out, stride=2, padding=1).tanh_()


class FoldedDeconvStack:
    """The task with each BatchNorm folded into the layer before it: the first layer (1x1 to 4x4) as a matrix
    product, the hidden ones as oneDNN's transposed convolutions, the output layer by `upsample_by_product`."""

    def __init__(self, generator: Generator, task: int, device: torch.device, dtype: torch.dtype):
        branch = generator.tasks[task]
        self.num_classes = branch.num_classes
        self.dtype = dtype
        weights, out_weight = task_weights(generator, task)
        folded = [fold_norm(w, norm) for w, norm in zip(weights, branch.norms)]
        first, first_bias = folded[0]  # [noise, c, 4, 4] -> columns in (row, column, channel) order
        self.first = (first.permute(0, 2, 3, 1).reshape(first.shape[0], -1), first_bias.repeat(16))
        self.width = first.shape[1]
        self.stages = [Stage(w, b, shared.stride, shared.padding, None)
                       for (w, b), shared in zip(folded[1:], generator.layers[1:])]
        self.out = (out_weight.permute(1, 2, 3, 0).reshape(-1, out_weight.shape[0]), branch.out.bias.detach().float())
        move = (lambda t: t.to(device, dtype).contiguous())
        self.first = tuple(map(move, self.first))
        self.stages = [Stage(move(s.weight), move(s.bias), s.stride, s.padding, None) for s in self.stages]
        self.out = tuple(map(move, self.out))

    def __call__(self, noise: torch.Tensor, class_index: torch.Tensor) -> torch.Tensor:
        z = condition(noise, class_index, self.num_classes).to(self.dtype)
        n = len(z)
        rows = z if n >= MIN_PRODUCT_ROWS else torch.cat([z, z.new_zeros(MIN_PRODUCT_ROWS - n, z.shape[1])])
        product = torch.addmm(self.first[1], rows, self.first[0])[:n]
        x = product.relu_().view(n, 4, 4, self.width).permute(0, 3, 1, 2)
        for stage in self.stages:
            x = F.conv_transpose2d(x, stage.weight, stage.bias, stride=stage.stride, padding=stage.padding).relu_()
        return upsample_by_product(x, *self.out).tanh_().transpose(0, 1)


def fold_norm(weight: torch.Tensor, norm: torch.nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """A transposed convolution's weight [in, out, k, k] and bias with the eval-mode BatchNorm after it folded in."""
    mean, var = norm.running_mean.detach().float(), norm.running_var.detach().float()
    scale = norm.weight.detach().float() / torch.sqrt(var + norm.eps)  # y = scale * (conv - mean) + beta
    return weight * scale.view(1, -1, 1, 1), norm.bias.detach().float() - mean * scale


class ConditionedNetwork:
    """A frozen network that reads the class from the conditioned noise (ResNetTaskNetwork), called as the sampler
    calls every frozen network."""

    def __init__(self, network: ResNetTaskNetwork):
        self.network, self.num_classes = network, network.num_classes

    def __call__(self, noise: torch.Tensor, class_index: torch.Tensor) -> torch.Tensor:
        return self.network(condition(noise, class_index, self.num_classes))


@freezer("dcgan")
def freeze_dcgan(generator: Generator, task: int, device: torch.device, dtype: torch.dtype,
                 exact: bool) -> FrozenNetwork:
    if exact or generator.spec.class_norm:
        return ExactDeconvStack(generator, task, device, dtype)
    return FoldedDeconvStack(generator, task, device, dtype)


@freezer("resnet")
def freeze_resnet(generator: Generator, task: int, device: torch.device, dtype: torch.dtype,
                  exact: bool) -> FrozenNetwork:
    return ConditionedNetwork(ResNetTaskNetwork(generator, task, device, dtype, fold_norms=not exact))
