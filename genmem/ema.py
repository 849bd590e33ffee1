"""An exponential moving average of what a task may change in the generator, used for sampling.

GAN weights oscillate around a good solution; averaging them over the last
few hundred steps gives a generator that samples better than the last step's
(Yazıcı et al. 2019). In a memory the average may only cover what the task
may change: its own private layers (BatchNorm scales and shifts, output
layer) and the shared weight entries that no earlier task reserved. Reserved
entries are never averaged; `apply` writes the average only where the
entry is free, so every earlier task stays bit-identical.

The task's masks are not averaged: the embeddings are binarised at the end
of the task as without the average, and the averaged weights are used under
those binary masks. Running BatchNorm statistics are not averaged either;
they are re-estimated under the binary masks after `apply`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from genmem.nets import Generator

WARMUP = 10  # the decay ramps up as (1 + step) / (WARMUP + step), so the random start is soon forgotten


class ParameterAverage:
    """Shadow copies of some tensors, folded in after every optimiser step with a warm-up ramp on the decay."""

    def __init__(self, tensors: Sequence[torch.Tensor], decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the average's decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.steps = 0
        self.tensors = list(tensors)
        self.shadow = [t.detach().clone() for t in self.tensors]

    @torch.no_grad()
    def update(self) -> None:
        """Fold the current values into the average (call after each optimiser step)."""
        weight = 1.0 - min(self.decay, (1 + self.steps) / (WARMUP + self.steps))
        for shadow, live in zip(self.shadow, self.tensors, strict=True):
            shadow.lerp_(live.detach(), weight)
        self.steps += 1

    @torch.no_grad()
    def apply(self) -> None:
        """Replace every tensor by its average."""
        for live, shadow in zip(self.tensors, self.shadow, strict=True):
            live.copy_(shadow)


class GeneratorAverage:
    """The average of a task's trainable generator entries, updated after every generator step."""

    def __init__(self, generator: Generator, task: int, frozen: Sequence[torch.Tensor], decay: float):
        self.layers = list(generator.layers)
        self.private = list(generator.tasks[task].parameters())
        self.average = ParameterAverage([layer.weight for layer in self.layers] + self.private, decay)
        self.free = [~keep.expand_as(layer.weight) for keep, layer in zip(frozen, self.layers, strict=True)]

    def update(self) -> None:
        """Fold the current entries into the average (call after each optimiser step of the generator)."""
        self.average.update()

    @torch.no_grad()
    def apply(self) -> None:
        """Replace the generator's trainable entries by their average; reserved entries are left as they are."""
        shadow = self.average.shadow
        shared, private = shadow[:len(self.layers)], shadow[len(self.layers):]
        for layer, free, average in zip(self.layers, self.free, shared, strict=True):
            layer.weight.copy_(torch.where(free, average, layer.weight))
        for param, average in zip(self.private, private, strict=True):
            param.copy_(average)
