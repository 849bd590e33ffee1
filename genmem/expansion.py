"""Dynamic expansion (docs/ALGORITHM.md §9): after each task, grow just enough to keep the free capacity constant.

Capacity is counted in weights for DGMw and in units (output channels) for
DGMa. A task reserves some entries anew, reuses some that earlier tasks
reserved, and leaves the rest free; the network then grows by at least what
was newly reserved, so every task starts with as much free room as the first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch

from genmem.nets import KERNEL, Generator


@dataclass(frozen=True)
class LayerCapacity:
    """One masked layer as one task left it, in weights (DGMw) or units (DGMa), at that task's widths."""

    total: int  # entries that exist at the task's widths
    new: int  # reserved by this task and by no earlier one
    reused: int  # reserved earlier and used again by this task (free of charge)
    free: int  # reserved by no task up to and including this one

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def layer_capacity(task_mask: torch.Tensor, earlier: torch.Tensor) -> LayerCapacity:
    """Count a task's binary mask against what earlier tasks reserved (both at the task's widths)."""
    return LayerCapacity(
        total=task_mask.numel(),
        new=int((task_mask & ~earlier).sum()),
        reused=int((task_mask & earlier).sum()),
        free=int((~(task_mask | earlier)).sum()),
    )


def task_capacity(generator: Generator, task: int) -> list[LayerCapacity]:
    """Per masked layer, how task `task` (finished) used the capacity it was given."""
    masks = generator.tasks[task].masks
    earlier = generator.reserved(before=task)
    return [
        layer_capacity(mask, reserved[tuple(slice(0, n) for n in mask.shape)])
        for mask, reserved in zip(masks, earlier, strict=True)
    ]


def plan_widths(variant: str, widths: tuple[int, ...], noise_dim: int, new: list[int]) -> tuple[int, ...]:
    """Widths after a task learned at `widths` newly reserved `new` entries per layer.

    DGMa adds one unit per newly reserved unit. DGMw adds output channels to
    each layer until the added weights cover the newly reserved ones, crediting
    the weights that a wider input already added.
    """
    if variant == "dgma":
        return tuple(w + n for w, n in zip(widths, new, strict=True))
    area = KERNEL * KERNEL
    grown: list[int] = []
    added_inputs = 0
    for layer, (out_width, reserved) in enumerate(zip(widths, new, strict=True)):
        in_width = noise_dim if layer == 0 else widths[layer - 1]
        still_needed = reserved - added_inputs * out_width * area
        added = max(math.ceil(still_needed / ((in_width + added_inputs) * area)), 0)
        grown.append(out_width + added)
        added_inputs = added
    return tuple(grown)


def expand_for_next_task(generator: Generator, rng: torch.Generator) -> None:
    """Grow the generator after its last finished task; doing it again changes nothing."""
    if generator.num_learned == 0:
        return
    last = generator.num_learned - 1
    new = [layer.new for layer in task_capacity(generator, last)]
    widths = plan_widths(generator.spec.variant, generator.tasks[last].widths, generator.spec.noise_dim, new)
    generator.grow(widths, rng)
