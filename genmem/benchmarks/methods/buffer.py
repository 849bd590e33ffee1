"""buffer: a fresh classifier on the task's real images plus a buffer of real images of every earlier class, in
as many bytes as DGM's memory needs for replay (or a budget given).

What a generative memory is worth is measured against its simplest rival:
keeping real images in the same bytes. After each task's classifier is
trained, the buffer takes in the task's classes (iCaRL's order) at one byte
per pixel and channel at the protocol's image size: an equal share of its
budget per class held, the newest classes' in full, the others' by dropping
their last-chosen images (iCaRL's reduction; a class never regains images it
dropped, so a share that grows leaves them short). Its budget after task t
is its scale times either a number of bytes given (option buffer_bytes) or
the payload of DGM's version t as stored for replay (generator and masks;
the stored solver is no part of replay). Task t's classifier thus replays
what the buffer kept after task t-1, in the bytes of DGM's version t-1, as
dgm-replay replays version t, whose images of the earlier classes are
version t-1's bit for bit. A run may hold the buffer at several scales at
once (option buffer_scales: buffer-x0.25, buffer, buffer-x4, ...), all
beside one DGM memory.
"""

from __future__ import annotations

import math
from pathlib import Path

from genmem.benchmarks.methods import method_class
from genmem.benchmarks.methods.base import IMAGE_SIZE, Method, Run, Task, replay_score
from genmem.benchmarks.methods.dgm import DgmMemory, DgmMethod
from genmem.benchmarks.methods.exemplars import SHARED_SECONDS, ExemplarChooser, Exemplars, check_selection
from genmem.errors import GenmemError, InvalidSetting
from genmem.evaluate import Score

PREFIX = "buffer-x"  # of the instances at a scale other than 1


def scale_of(name: str) -> float:
    return float(name.removeprefix(PREFIX)) if name.startswith(PREFIX) else 1.0


class Buffer(Method):
    label, title = "classifier + buffer of real images", "real-image buffer"
    shared_seconds = (SHARED_SECONDS,)

    @classmethod
    def instances(cls, name: str, methods: tuple[str, ...], options: dict) -> list[str]:
        check_selection(options)
        scales = options.get("buffer_scales", [1.0])
        if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
            raise InvalidSetting(f"buffer scales {scales} must be finite numbers above 0, e.g. 0.25,0.5,1,2,4")
        if options.get("buffer_bytes") is None and not any(issubclass(method_class(m), DgmMethod) for m in methods):
            raise InvalidSetting("the buffer's budget is by default the bytes of DGM's memory, and no method of this "
                                 "run learns one: add dgm-replay to --methods, or give --buffer-bytes")
        return [name if scale == 1 else f"{PREFIX}{scale:g}" for scale in sorted(set(scales))]

    @classmethod
    def label_of(cls, name: str) -> str:
        return f"{cls.label}, {scale_of(name):g}x the budget"

    def __init__(self, name: str, run: Run):
        super().__init__(name, run)
        self.scale, self.fixed = scale_of(name), run.options.get("buffer_bytes")
        self.memory = run.shared(DgmMemory) if self.fixed is None else None
        self.kept = Exemplars(run.data.class_names)
        self.record: list[dict] = []  # per task: the budget and what was kept
        if self.fixed is not None and self.budget() < self.image_bytes * len(run.classes):
            raise InvalidSetting(f"{name}'s budget of {self.budget():,} bytes cannot hold one {self.image_bytes:,}-"
                                 f"byte image of each of the run's {len(run.classes)} classes: give more bytes")

    @property
    def image_bytes(self) -> int:
        return self.run.channels * IMAGE_SIZE**2

    def budget(self) -> int:
        """Bytes it may hold now: its scale times the bytes given, or DGM's last version's replay payload."""
        return int(self.scale * (self.fixed if self.fixed is not None else self.memory.payload_bytes()))

    def score(self, task: Task) -> Score:
        score = replay_score(self.kept, task, self.run, self.name)
        self.take(task)
        return score

    def take(self, task: Task) -> None:
        """Take in the task's classes, as many images of each as of every other class the budget leaves room for."""
        budget = self.budget()
        per_class = budget // (self.image_bytes * (len(self.kept.images) + len(task.classes)))
        if per_class < 1:
            raise GenmemError(f"{self.name}'s budget of {budget:,} bytes after task {task.index} cannot hold one "
                              f"{self.image_bytes:,}-byte image of each class learned: give it a larger scale")
        self.kept.truncate(per_class)
        chooser = self.run.shared(ExemplarChooser)
        for label in task.classes:
            self.kept.add(label, chooser.keep(task.index, label, per_class))
        self.record.append({"task": task.index, "budget_bytes": budget, "images_per_class": self.kept.counts(),
                            "bytes": self.kept.nbytes})

    def save(self, state: Path) -> None:
        self.kept.save(state / f"{self.name}.safetensors", self.record)

    def load(self, state: Path) -> None:
        self.record = self.kept.load(state / f"{self.name}.safetensors")

    def facts(self) -> dict:
        """Its budget and what it held after every task."""
        budget = f"{self.fixed:,} bytes given" if self.fixed is not None else "DGM's replay payload"
        return {"buffers": {self.name: {"scale": self.scale, "of": budget, "image_bytes": self.image_bytes,
                                        "selection": check_selection(self.run.options),
                                        "tasks": self.record}}}
