"""Class-conditional sampling from one version of a memory.

Reproducible by construction: class c's images under seed s come from a noise
stream seeded by (s, c) alone, so they do not depend on which other classes a
request names, on their order, or on how the work is split into batches. The
same seed gives the same images on the same device (CPU and CUDA draw
different streams).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from genmem.artifact import ClassInfo, ClassTable
from genmem.errors import GenmemError
from genmem.nets import Generator

DEFAULT_CHUNK = 4096


def class_seed(seed: int, label: int) -> int:
    """A well-mixed 63-bit seed for one class's noise stream."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, label & 0xFFFFFFFF]).generate_state(1, np.uint64)[0]
               >> np.uint64(1))


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] to uint8 pixels, what an image data loader yields."""
    return ((images.float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


class Sampler:
    """Draws images of the classes of one loaded version, grouped by task."""

    def __init__(self, generator: Generator, classes: ClassTable, version: str, device: str | torch.device = "cpu",
                 chunk: int = DEFAULT_CHUNK):
        self.device = torch.device(device)
        self.generator = generator.to(self.device).eval()
        self.classes = classes
        self.version = version
        self.chunk = chunk

    @property
    def image_shape(self) -> tuple[int, int, int]:
        spec = self.generator.spec
        return spec.channels, spec.image_size, spec.image_size

    def noise(self, info: ClassInfo, count: int, seed: int) -> torch.Tensor:
        rng = torch.Generator(self.device).manual_seed(class_seed(seed, info.label))
        return torch.randn(count, self.generator.spec.noise_dim, generator=rng, device=self.device)

    @torch.no_grad()
    def sample(self, counts: Mapping[int | str, int], seed: int = 0, as_uint8: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels for {class (label or name): count}, classes in the order given, each contiguous.

        uint8 [N, C, H, W] by default; floats in [-1, 1] with as_uint8=False.
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
            noise = torch.cat([self.noise(info, n, seed) for info, n, _ in parts])
            index = torch.cat([torch.full((n,), info.index, device=self.device) for info, n, _ in parts])
            where = torch.cat([torch.arange(first, first + n, device=self.device) for _, n, first in parts])
            for offset in range(0, len(noise), self.chunk):
                part = slice(offset, offset + self.chunk)
                out = self.generator(noise[part], task, index[part])
                images[where[part]] = to_uint8(out) if as_uint8 else out
        return images, labels
