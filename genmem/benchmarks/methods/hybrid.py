"""hybrid: DGM's replay with K real images kept of every earlier class mixed in, the paper's relaxed setup (its
Table 2, where DGMw with real images mixed in at r = 0.5 rose from 17.82 to 40.72 % on ImageNet-50).

The classifier is dgm-replay's, on the same share of replay per batch; of
each earlier class's images in a batch a share r (option hybrid_ratio, the
paper's r, default 0.5) is real, drawn with replacement from the K images
kept of that class (option hybrid_per_class, default 20), the rest DGM's
replay. Where r times a class's count is not whole, its fraction is one more
real image with that probability, so r is the share on average. r = 0 is
dgm-replay; r = 1 a buffer of K images per class. The K images of a class
are chosen, as the buffer chooses its own (methods.exemplars), when its task
ends; no other real image of it is read after. Several K run at once beside
one memory (hybrid-k20, hybrid-k50, ...).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from genmem.benchmarks.methods.base import Run, Task, replay_score
from genmem.benchmarks.methods.dgm import DgmMethod
from genmem.benchmarks.methods.exemplars import SHARED_SECONDS, ExemplarChooser, Exemplars, check_selection
from genmem.errors import InvalidSetting
from genmem.evaluate import Score
from genmem.pixels import to_unit_range
from genmem.sampler import Sampler

PREFIX = "hybrid-k"
PER_CLASS, RATIO = 20, 0.5  # the defaults: K real images per class, r the share of real among a class's


class HybridReplay:
    """A replay source (genmem.replay's ReplaySource): DGM's replay with a share of real images of every class."""

    def __init__(self, sampler: Sampler, real: Exemplars, ratio: float):
        self.sampler, self.real, self.ratio = sampler, real, ratio
        self.classes, self.version = sampler.classes, f"{sampler.version} and real images"

    def sample(self, counts, seed: int = 0, as_uint8: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        rng = torch.Generator().manual_seed(seed)
        wanted = {self.classes.resolve(key).label: int(n) for key, n in counts.items()}
        real = {}
        for label, n in wanted.items():
            whole, fraction = divmod(self.ratio * n, 1)
            real[label] = int(whole) + int(torch.rand((), generator=rng) < fraction)
        generated, generated_labels = self.sampler.sample({c: n - real[c] for c, n in wanted.items()}, seed=seed)
        kept, kept_labels = self.real.draw(real, rng)
        images = torch.cat([generated.cpu(), kept])
        return (images if as_uint8 else to_unit_range(images)), torch.cat([generated_labels, kept_labels])


class Hybrid(DgmMethod):
    label, title = "classifier + DGM replay and real images", "DGM with real images"
    shared_seconds = (*DgmMethod.shared_seconds, SHARED_SECONDS)

    @classmethod
    def instances(cls, name: str, methods: tuple[str, ...], options: dict) -> list[str]:
        check_selection(options)
        ratio, per_class = options.get("hybrid_ratio", RATIO), options.get("hybrid_per_class", [PER_CLASS])
        if not (math.isfinite(ratio) and 0 <= ratio <= 1):
            raise InvalidSetting(f"hybrid ratio {ratio} is the share of real images among a class's: give 0 to 1")
        if not per_class or not all(isinstance(k, int) and k >= 1 for k in per_class):
            raise InvalidSetting(f"hybrid's real images per class {per_class} must be whole numbers of 1 or more")
        return [f"{PREFIX}{k}" for k in sorted(set(per_class))]

    @classmethod
    def label_of(cls, name: str) -> str:
        return f"{cls.label}, {name.removeprefix(PREFIX)} per class"

    def __init__(self, name: str, run: Run):
        super().__init__(name, run)
        self.per_class = int(name.removeprefix(PREFIX))
        self.ratio = run.options.get("hybrid_ratio", RATIO)
        self.kept = Exemplars(run.data.class_names)

    def score(self, task: Task) -> Score:
        score = replay_score(HybridReplay(self.memory.sampler, self.kept, self.ratio), task, self.run, self.name)
        chooser = self.run.shared(ExemplarChooser)
        for label in task.classes:
            self.kept.add(label, chooser.keep(task.index, label, self.per_class))
        return score

    def save(self, state: Path) -> None:
        self.kept.save(state / f"{self.name}.safetensors", None)

    def load(self, state: Path) -> None:
        self.kept.load(state / f"{self.name}.safetensors")

    def facts(self) -> dict:
        """The memory's facts, and the real images kept beside it."""
        mine = {"per_class": self.per_class, "ratio": self.ratio, "selection": check_selection(self.run.options),
                "images_per_class": self.kept.counts(), "real_bytes": self.kept.nbytes}
        return super().facts() | {"hybrid": {self.name: mine}}
