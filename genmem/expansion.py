"""Dynamic expansion (docs/ALGORITHM.md §9): after each task, grow just enough to keep the free capacity constant.

Capacity is counted in weights (per masked layer) for DGMw and in units
(output channels, per unit group) for DGMa. A task reserves some entries
anew, reuses some that earlier tasks reserved, and leaves the rest free; the
network then grows by at least what was newly reserved, so every task starts
with as much free room as the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from genmem.nets import DCGAN, Generator, Wire, in_width


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


def plan_widths(variant: str, widths: tuple[int, ...], noise_dim: int, new: list[int],
                wires: Sequence[Wire] | None = None) -> tuple[int, ...]:
    """Widths of the unit groups after a task learned at `widths` newly reserved `new` entries per mask.

    DGMa adds one unit per newly reserved unit of a group. DGMw adds to each
    group the fewest output channels with which every layer writing it gains
    at least as many weights as the task newly reserved in it, crediting the
    weights that a wider input already added. `wires`: the masked layers
    (GeneratorSpec.wires); None: a chain of kernel-4 layers, one per group (the DCGAN).
    """
    if variant == "dgma":
        return tuple(w + n for w, n in zip(widths, new, strict=True))
    wires = wires or DCGAN().wires(len(widths))
    grown = list(widths)
    for group in range(len(widths)):  # a layer reads the noise, an earlier group or its own
        writers = [(wire, reserved) for wire, reserved in zip(wires, new, strict=True) if wire.group == group]
        added = 0
        while any(_added_weights(wire, widths, grown, noise_dim, added) < reserved for wire, reserved in writers):
            added += 1
        grown[group] = widths[group] + added
    return tuple(grown)


def _added_weights(wire: Wire, widths: Sequence[int], grown: Sequence[int], noise_dim: int, added: int) -> int:
    """Weights a layer gains when its output group gets `added` channels (its input, if another group, has already
    grown to `grown`)."""
    source = wire.source
    before = in_width(wire, widths, noise_dim)
    after = before + added if source == wire.group else in_width(wire, grown, noise_dim)
    out = widths[wire.group]
    return (after * (out + added) - before * out) * wire.kernel * wire.kernel


def expand_for_next_task(generator: Generator, rng: torch.Generator) -> None:
    """Grow the generator after its last finished task; doing it again changes nothing."""
    if generator.num_learned == 0:
        return
    last = generator.num_learned - 1
    new = [layer.new for layer in task_capacity(generator, last)]
    widths = plan_widths(generator.spec.variant, generator.tasks[last].widths, generator.spec.noise_dim, new,
                         generator.wires)
    generator.grow(widths, rng)
