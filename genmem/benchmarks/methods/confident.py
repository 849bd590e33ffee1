"""dgm-confident: dgm-replay whose replay is filtered by the version's own stored solver (genmem.filtering).

On CIFAR-10 a generator draws some images that look like no class; a
classifier trained on them learns wrong boundaries. Here every replayed
image is one the solver stored with the same version puts in its class with
probability at least P (option min_confidence); the rest of each batch is as
dgm-replay's. On split-CIFAR-10 the filter raised the replay-alone score by
3 to 7 points, yet beside the newest classes' real images it ended 0.7
lower than dgm-replay, so it is a measurement, not a default
(docs/experiments/2026-12-04-split-cifar10-seed2-and-confident-replay.md).
Several thresholds run beside one memory (dgm-confident-30, dgm-confident-50: P in percent).
"""

from __future__ import annotations

from genmem.benchmarks.methods.base import Run, Task, replay_score
from genmem.benchmarks.methods.dgm import DgmMethod
from genmem.errors import InvalidSetting
from genmem.evaluate import Score
from genmem.filtering import ConfidentReplay

PREFIX = "dgm-confident-"
THRESHOLDS = (0.5,)  # the default minimum probability the stored solver gives a replayed image's class


class ConfidentReplayMethod(DgmMethod):
    label = "classifier + DGM replay the stored solver recognises"

    @classmethod
    def instances(cls, name: str, methods: tuple[str, ...], options: dict) -> list[str]:
        thresholds = options.get("min_confidence", THRESHOLDS)
        if not thresholds or not all(0 < p < 1 for p in thresholds):
            raise InvalidSetting(f"minimum confidences {thresholds} are probabilities the stored solver gives a "
                                 f"replayed image's class: give numbers above 0 and under 1")
        return [f"{PREFIX}{percent}" for percent in sorted({round(100 * p) for p in thresholds})]

    @classmethod
    def label_of(cls, name: str) -> str:
        return f"classifier + DGM replay the stored solver puts in its class at {name.removeprefix(PREFIX)} %"

    def __init__(self, name: str, run: Run):
        super().__init__(name, run)
        self.threshold = int(name.removeprefix(PREFIX)) / 100

    def score(self, task: Task) -> Score:
        source = ConfidentReplay.from_memory(self.memory.memory, self.memory.version, self.threshold, self.run.device)
        return replay_score(source, task, self.run, self.name)
