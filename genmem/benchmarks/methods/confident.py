"""dgm-confident: dgm-replay whose replay is filtered by the version's own stored solver (genmem.filtering).

On CIFAR-10 a generator draws some images that look like no class; a
classifier trained on them learns wrong boundaries. Here every replayed
image is one the solver stored with the same version puts in its class with
probability at least P (option min_confidence; where too few pass, the
doubted ones fill in); the rest of each batch is as dgm-replay's. On
split-CIFAR-10 the filter raised the replay-alone score by 3 to 7 points,
yet beside the newest classes' real images it ended 0.7 lower than
dgm-replay, so it is a measurement, not a default
(docs/experiments/2026-12-04-split-cifar10-seed2-and-confident-replay.md).
Several thresholds run beside one memory (dgm-confident-30, dgm-confident-50: P in percent).
"""

from __future__ import annotations

from genmem.benchmarks.methods.base import Task, replay_score
from genmem.benchmarks.methods.dgm import DgmMethodPerValue
from genmem.evaluate import Score
from genmem.filtering import ConfidentReplay


class ConfidentReplayMethod(DgmMethodPerValue):
    label = "classifier + DGM replay the stored solver recognises"
    prefix, option = "dgm-confident-", "min_confidence"
    defaults = (0.5,)  # the minimum probability the stored solver gives a replayed image's class
    refusal = ("minimum confidences {values} are probabilities the stored solver gives a replayed image's class: "
               "give numbers above 0 and under 1")
    label_format = "classifier + DGM replay the stored solver puts in its class at {percent} %"

    @staticmethod
    def accepts(threshold: float) -> bool:
        return 0 < threshold < 1

    def score(self, task: Task) -> Score:
        source = ConfidentReplay.from_memory(self.memory.memory, self.memory.version, self.value, self.run.device)
        return replay_score(source, task, self.run, self.name)
