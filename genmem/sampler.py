"""Fast class-conditional sampling from one version of a memory.

At load, every task's generator is materialised once: the task's slice of
each shared weight with its binary mask multiplied in (DGMw), or with the
unit masks folded into the next layer's input weights (DGMa, which is the same
function because an unused unit then meets only zero weights). Sampling is
then a plain stack of transposed convolutions. In float32 the result is
bit-identical to the reference masked forward pass; in half precision the
BatchNorms are folded into the convolutions as well.

Reproducible by construction: class c's images under seed s come from a noise
stream seeded by (s, c) alone, so they do not depend on which other classes a
request names, on their order, or on how the work is split into batches (the
uint8 images are identical; float outputs agree to rounding when the split
differs). CPU and CUDA draw different streams.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from genmem.artifact import ClassInfo, ClassTable
from genmem.errors import GenmemError, InvalidSetting
from genmem.nets import FrozenNorm, Generator, GeneratorSpec, class_of, condition
from genmem.pixels import to_uint8
from genmem.resnet import ResNetTaskNetwork

PRECISIONS = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def class_seed(seed: int, label: int) -> int:
    """A well-mixed 63-bit seed for one class's noise stream."""
    state = np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, label & 0xFFFFFFFF]).generate_state(1, np.uint64)
    return int(state[0] >> np.uint64(1))


@dataclass
class _Layer:
    weight: torch.Tensor
    bias: torch.Tensor | None
    stride: int
    padding: int
    norm: FrozenNorm | None


class TaskNetwork:
    """One task's generator with masks, slices and (optionally) BatchNorms fixed into plain weights."""

    def __init__(self, generator: Generator, task: int, device: torch.device, dtype: torch.dtype, fold_norms: bool):
        branch = generator.tasks[task]
        self.num_classes = branch.num_classes
        self.dtype = dtype
        self.class_norm = generator.spec.class_norm
        unit_masks = generator.spec.variant == "dgma"
        layers, in_mask = [], None
        with torch.no_grad():
            for shared, norm, width, mask in zip(generator.layers, branch.norms, branch.widths, branch.masks):
                in_width = generator.spec.noise_dim if not layers else layers[-1].weight.shape[1]
                weight = shared.weight[:in_width, :width].detach().float()
                if unit_masks:
                    if in_mask is not None:
                        weight = weight * in_mask.view(-1, 1, 1, 1)
                    in_mask = mask.float()
                else:
                    weight = weight * mask
                layers.append(self._layer(weight, None, shared.stride, shared.padding, norm, fold_norms))
            out_weight = branch.out.weight.detach().float()
            if in_mask is not None:
                out_weight = out_weight * in_mask.view(-1, 1, 1, 1)
            layers.append(_Layer(out_weight, branch.out.bias.detach().float(), 2, 1, None))
        self.layers = [_Layer(l.weight.to(device, dtype), None if l.bias is None else l.bias.to(device, dtype),
                              l.stride, l.padding, None if l.norm is None else l.norm.to(device, dtype))
                       for l in layers]

    @staticmethod
    def _layer(weight, bias, stride, padding, norm, fold: bool) -> _Layer:
        if not fold:
            return _Layer(weight, bias, stride, padding, norm.frozen())
        weight, bias, rest = norm.frozen().fold(weight)  # y = scale * (conv - mean) + shift, into the convolution
        return _Layer(weight, bias, stride, padding, rest)

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        x = z.to(self.dtype)[:, :, None, None]
        classes = class_of(z, self.num_classes) if self.class_norm else None
        *hidden, out = self.layers
        for layer in hidden:
            x = F.conv_transpose2d(x, layer.weight, layer.bias, stride=layer.stride, padding=layer.padding)
            if layer.norm is not None:
                x = layer.norm(x, classes)
            x = F.relu(x)
        return torch.tanh(F.conv_transpose2d(x, out.weight, out.bias, stride=out.stride, padding=out.padding))


FROZEN_NETWORKS = {"dcgan": TaskNetwork, "resnet": ResNetTaskNetwork}  # a task's frozen network, per architecture


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """'auto' is float16 on CUDA and float32 on the CPU."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision not in PRECISIONS:
        raise InvalidSetting(f"unknown precision {precision!r}: use auto, {', '.join(PRECISIONS)}")
    return PRECISIONS[precision]


class Sampler:
    """Draws images of the classes of one loaded version, grouped by task."""

    def __init__(self, generator: Generator, classes: ClassTable, version: str, device: str | torch.device = "cpu",
                 precision: str = "auto", chunk: int | None = None):
        self.device = torch.device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.spec: GeneratorSpec = generator.spec
        self.classes = classes
        self.version = version
        self.chunk = chunk or (65536 if self.device.type == "cuda" else 1024)
        fold = self.dtype != torch.float32
        network = FROZEN_NETWORKS[self.spec.arch]
        self.networks = [network(generator, t, self.device, self.dtype, fold) for t in range(len(generator.tasks))]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.spec.channels, self.spec.image_size, self.spec.image_size

    def noise(self, info: ClassInfo, count: int, seed: int) -> torch.Tensor:
        rng = torch.Generator(self.device).manual_seed(class_seed(seed, info.label))
        return torch.randn(count, self.spec.noise_dim, generator=rng, device=self.device)

    @torch.inference_mode()
    def sample(self, counts: Mapping[int | str, int], seed: int = 0, as_uint8: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels for {class (label or name): count}, classes in the order given, each contiguous.

        uint8 [N, C, H, W] by default; floats in [-1, 1] with as_uint8=False.
        Images stay on the sampler's device; labels are on the CPU.
        """
        wanted = [(self.classes.resolve(key), int(n)) for key, n in counts.items()]
        for info, n in wanted:
            if n < 0:
                raise GenmemError(f"count for class {info.name!r} is {n}; counts must be 0 or more")
        total = sum(n for _, n in wanted)
        images = torch.empty(total, *self.image_shape, device=self.device,
                             dtype=torch.uint8 if as_uint8 else torch.float32)
        labels = torch.empty(total, dtype=torch.long)
        by_task: dict[int, list[tuple[ClassInfo, int, int]]] = {}
        start = 0
        for info, n in wanted:
            by_task.setdefault(info.task, []).append((info, n, start))
            labels[start: start + n] = info.label
            start += n
        for task, parts in by_task.items():
            network = self.networks[task]
            noise = torch.cat([self.noise(info, n, seed) for info, n, _ in parts])
            index = torch.cat([torch.full((n,), info.index, device=self.device) for info, n, _ in parts])
            z = condition(noise, index, network.num_classes)
            spans = [(first, n) for _, n, first in parts]
            contiguous = all(a[0] + a[1] == b[0] for a, b in zip(spans, spans[1:]))
            where = None if contiguous else torch.cat([torch.arange(f, f + n, device=self.device) for f, n in spans])
            for offset in range(0, len(z), self.chunk):
                out = network(z[offset: offset + self.chunk])
                out = to_uint8(out) if as_uint8 else out.float()
                if where is None:
                    images[spans[0][0] + offset: spans[0][0] + offset + len(out)] = out
                else:
                    images[where[offset: offset + len(out)]] = out
        return images, labels
