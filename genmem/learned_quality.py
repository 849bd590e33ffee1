"""Replay quality measured the moment a class is learned, kept in the manifest so that a person can inspect it.

For each class a task learns, SAMPLES images are drawn from the finished generator:

    recognised  the share (%) of them that the version's solver puts in their class: is the replay
                recognisable? (None when the version stores no solver)
    diversity   their mean pairwise distance over that of as many of the class's real training images:
                1.0 is as varied as the real class, near 0 a generator that repeats itself

Both are cheap (one forward pass over a few dozen images) and need nothing but what learning had at hand.
`genmem.quality` compares memories with an outside judge instead; this is the memory's own account.
"""

from __future__ import annotations

import torch
from torch import nn

from genmem.artifact import ClassTable
from genmem.grids import grid_png
from genmem.nets import Generator
from genmem.pixels import to_unit_range
from genmem.sampler import Sampler

SAMPLES = 64
STRIP = 8  # images per class in a version's sample strip


def class_logits(solver: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The solver's class scores; a critic-style solver also returns a real-or-fake score first."""
    out = solver(images)
    return out[1] if isinstance(out, tuple) else out


def mean_pairwise_distance(images: torch.Tensor) -> float:
    return float(torch.pdist(images.flatten(1).double()).mean())


@torch.no_grad()
def learned_quality(generator: Generator, task: int, solver: nn.Module | None, images: torch.Tensor,
                    class_index: torch.Tensor, labels: list[int], first_output: int, seed: int = 0
                    ) -> dict[str, dict[str, float | None]]:
    """{label: {"recognised": %, "diversity": ratio}} for the task's classes.

    images: the task's real training images (uint8) and class_index their
    class within the task; labels[i] is class i's label; the solver's output
    first_output + i is class i.
    """
    generator.eval()
    device = generator.layers[0].weight.device
    rng = torch.Generator(device=device).manual_seed(seed)
    quality = {}
    for i, label in enumerate(labels):
        noise = torch.randn(SAMPLES, generator.spec.noise_dim, generator=rng, device=device)
        fake = generator(noise, task, torch.full((SAMPLES,), i, device=device))
        real = images[class_index.to(images.device) == i]
        real = real[torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))[:SAMPLES]]
        real = to_unit_range(real.to(device))
        recognised = None
        if solver is not None:
            predicted = class_logits(solver.eval(), fake).argmax(1)
            recognised = round(100.0 * float((predicted == first_output + i).float().mean()), 2)
        spread = mean_pairwise_distance(real) if len(real) > 1 else 0.0
        diversity = mean_pairwise_distance(fake) / spread if spread > 0 else None  # None: nothing to compare with
        quality[str(label)] = {"recognised": recognised,
                               "diversity": None if diversity is None else round(diversity, 3)}
    return quality


def sample_strip(generator: Generator, manifest: dict, device: str | torch.device, seed: int = 0) -> bytes:
    """A PNG with one row of STRIP samples for every class the version knows, captioned by name."""
    table = ClassTable.from_manifest(manifest)
    sampler = Sampler(generator, table, manifest["version"], device, precision="float32")
    images, labels = sampler.sample({c.label: STRIP for c in table}, seed=seed)
    return grid_png([(c.name, images[labels == c.label]) for c in table])
