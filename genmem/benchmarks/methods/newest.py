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

from genmem.benchmarks.methods.base import Task, replay_score
from genmem.benchmarks.methods.dgm import DgmMethodPerValue
from genmem.evaluate import Score


class NewestGenerated(DgmMethodPerValue):
    label = "classifier + DGM replay, newest classes partly generated"
    prefix, option = "dgm-newest-", "newest_generated"
    defaults = (0.5,)  # the share of the newest classes' images that are generated
    refusal = ("newest-generated shares {values} are the part of the newest classes' images that the memory "
               "generates: give numbers above 0 and at most 1")
    label_format = "classifier + DGM replay, newest classes {percent} % generated"

    @staticmethod
    def accepts(share: float) -> bool:
        return math.isfinite(share) and 0 < share <= 1

    def score(self, task: Task) -> Score:
        return replay_score(self.memory.sampler, task, self.run, self.name, newest_generated=self.value)
