"""dgm-newest: dgm-replay with a share of the newest classes' images generated too, against the shortcut
"a real image is the newest class".

dgm-replay's classifier sees real images of the task's classes only and
generated images of the earlier ones only; on CIFAR-10 it partly learns
to tell them apart and scores the newest class above what joint training
gives it (`genmem.benchmarks.results.newest_table`). Here a share g (option
newest_generated) of the task's classes' images in every batch come from the
memory too, from the version that has just learned them, so that the newest
classes appear both real and generated; the rest of each batch is as
dgm-replay's. g = 1 trains on the memory's replay alone: no real image at
all, the memory's classification accuracy score. Several shares run beside
one memory (dgm-newest-50, dgm-newest-100: g in percent).
"""

from __future__ import annotations

import math

from genmem.benchmarks.methods.base import Run, Task, replay_score
from genmem.benchmarks.methods.dgm import DgmMethod
from genmem.errors import InvalidSetting
from genmem.evaluate import Score

PREFIX = "dgm-newest-"
SHARES = (0.5,)  # the default share of the newest classes' images that are generated


class NewestGenerated(DgmMethod):
    label = "classifier + DGM replay, newest classes partly generated"

    @classmethod
    def instances(cls, name: str, methods: tuple[str, ...], options: dict) -> list[str]:
        shares = options.get("newest_generated", SHARES)
        if not shares or not all(math.isfinite(g) and 0 < g <= 1 for g in shares):
            raise InvalidSetting(f"newest-generated shares {shares} are the part of the newest classes' images "
                                 f"that the memory generates: give numbers above 0 and at most 1")
        return [f"{PREFIX}{percent}" for percent in sorted({round(100 * g) for g in shares})]

    @classmethod
    def label_of(cls, name: str) -> str:
        return f"classifier + DGM replay, newest classes {name.removeprefix(PREFIX)} % generated"

    def __init__(self, name: str, run: Run):
        super().__init__(name, run)
        self.share = int(name.removeprefix(PREFIX)) / 100

    def score(self, task: Task) -> Score:
        return replay_score(self.memory.sampler, task, self.run, self.name, newest_generated=self.share)
