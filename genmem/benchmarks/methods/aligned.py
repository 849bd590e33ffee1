"""dgm-aligned: dgm-newest-50 with the classifier's features of real and generated images of the newest classes
pulled together, against the shortcut "a real image is the newest class".

dgm-newest shows the classifier the newest classes both real and generated,
but a classifier can still find what tells the two apart and use it. Here
every batch also pays a penalty on the features the classifier's last layer
reads: for each newest class, the gap between its real and its generated
images' feature means and standard deviations, per feature, in units of that
feature's spread over both (held fixed in the gradient, so that widening the
spread cannot hide a gap), averaged. A feature that differs between real and
generated images of one class then costs loss, so the head is left the
features that real and replayed images share (a moment-matching loss in the
spirit of domain adaptation's; docs/ALGORITHM.md §11). The penalty's weight
is option align_weight; several weights run beside one memory
(dgm-aligned-1, dgm-aligned-10).
"""

from __future__ import annotations

import math

import torch

from genmem.benchmarks.methods.base import Run, Task, newest_rows, replay_score
from genmem.benchmarks.methods.dgm import DgmMethod
from genmem.benchmarks.methods.newest import SHARES
from genmem.errors import InvalidSetting
from genmem.evaluate import Score

PREFIX = "dgm-aligned-"
WEIGHTS = (1.0,)  # the default weight of the penalty beside the cross-entropy
SHARE = SHARES[0]  # of the newest classes' images, the share generated: dgm-newest's default
MIN_ROWS = 2  # images of a class on each side for a standard deviation


def statistics_gap(real: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
    """Mean over features of the squared gaps between the two row sets' means and standard deviations, in units
    of each feature's variance over both sets (detached)."""
    both = torch.cat([real, generated])
    scale = both.var(0, unbiased=False).detach() + 1e-6
    spread = [(rows.var(0, unbiased=False) + 1e-6).sqrt() for rows in (real, generated)]
    gaps = (real.mean(0) - generated.mean(0)) ** 2 + (spread[0] - spread[1]) ** 2
    return (gaps / scale).mean()


def newest_feature_gap(features: torch.Tensor, targets: torch.Tensor, real: int, generated: int,
                       newest: list[int]) -> torch.Tensor:
    """`statistics_gap` between a batch's real and generated rows of each newest class (outputs `newest`) that
    has at least MIN_ROWS of both, averaged over those classes; 0 where none has."""
    real_part, generated_part = slice(0, real), slice(real, real + generated)
    gaps = []
    for output in newest:
        mine_real = features[real_part][targets[real_part] == output]
        mine_generated = features[generated_part][targets[generated_part] == output]
        if len(mine_real) >= MIN_ROWS and len(mine_generated) >= MIN_ROWS:
            gaps.append(statistics_gap(mine_real.flatten(1), mine_generated.flatten(1)))
    return torch.stack(gaps).mean() if gaps else features.new_zeros(())


class AlignedFeatures(DgmMethod):
    label = "classifier + DGM replay, newest classes half generated, features aligned"

    @classmethod
    def instances(cls, name: str, methods: tuple[str, ...], options: dict) -> list[str]:
        weights = options.get("align_weight", WEIGHTS)
        if not weights or not all(math.isfinite(w) and w > 0 for w in weights):
            raise InvalidSetting(f"align weights {weights} scale the feature gap beside the cross-entropy: give "
                                 f"numbers above 0")
        return [f"{PREFIX}{weight:g}" for weight in sorted(set(weights))]

    @classmethod
    def label_of(cls, name: str) -> str:
        return f"{cls.label} (weight {name.removeprefix(PREFIX)})"

    def __init__(self, name: str, run: Run):
        super().__init__(name, run)
        self.weight = float(name.removeprefix(PREFIX))

    def score(self, task: Task) -> Score:
        real, generated = newest_rows(task, SHARE)
        newest = [task.outputs[c] for c in task.classes]

        def penalty(features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return self.weight * newest_feature_gap(features, targets, real, generated, newest)

        return replay_score(self.memory.sampler, task, self.run, self.name, newest_generated=SHARE,
                            feature_penalty=penalty)
