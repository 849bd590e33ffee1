"""DGM's two figures: the solver stored with each version, and a fresh classifier on the memory's replay; and the
base of DGM's methods that run once per value of an option (dgm-newest, dgm-confident).

All test one memory (memory/ in the run's folder), learned once per task by
whichever method asks first. The memory is its own state: a resumed run finds
the versions a killed one wrote, and continues a task from its last
checkpoint.
"""

from __future__ import annotations

from dataclasses import replace

from genmem.artifact import MASKS_FILE, WEIGHTS_FILE
from genmem.benchmarks.methods.base import IMAGE_SIZE, Method, Run, Task, replay_score
from genmem.errors import InvalidSetting
from genmem.evaluate import Score, solver_score
from genmem.memory import Memory
from genmem.sampler import Sampler


class DgmMemory:
    """The run's memory: one version per task, written by Memory.learn_task."""

    def __init__(self, run: Run):
        self.run = run
        self.memory = Memory(run.out_dir / "memory")
        self.task: int | None = None  # the task the memory last learned
        self.version: str | None = None
        self.sampler: Sampler | None = None

    def learn(self, task: Task) -> None:
        """Learn the task into a new version, unless it is learned already (by this run, or a killed one)."""
        if self.task == task.index:
            return
        run = self.run
        with run.timed("gan"):
            learned = self.memory.versions()
            self.version = learned[task.index] if len(learned) > task.index else self.memory.learn_task(
                run.data, task.classes, variant=run.variant, config=replace(run.gan, seed=run.seed + task.index),
                device=run.device, image_size=IMAGE_SIZE,
                base_width=run.profile.base_width(run.variant, run.recipe, run.base_width), progress=run.progress,
                checkpoint_every=run.checkpoint_every, arch=run.arch, class_norm=run.class_norm)
        self.task = task.index
        self.sampler = self.memory.sampler(self.version, run.device)
        run.write_samples("", self.sampler, task)

    def payload_bytes(self) -> int:
        """What replay needs of the last version, in bytes as stored: its generator's weights and masks (the
        stored solver is no part of replay)."""
        files = self.memory.manifest(self.version)["files"]
        return files[WEIGHTS_FILE]["bytes"] + files[MASKS_FILE]["bytes"]

    def facts(self) -> dict:
        """The generator's growth per task, and the bytes of the last version's weights."""
        manifest = self.memory.manifest(self.version)
        return {"growth": [{k: t[k] for k in ("task", "widths", "capacity", "parameters")}
                           for t in manifest["tasks"]],
                "storage_bytes": {name: entry["bytes"] for name, entry in manifest["files"].items()
                                  if name.endswith(".safetensors")}}  # the card's size varies with timings


class DgmMethod(Method):
    """A figure of the run's DGM memory."""

    shared_seconds = ("gan",)  # the memory's GAN, and the stored solver trained with it

    def __init__(self, name: str, run: Run):
        super().__init__(name, run)
        self.memory = run.shared(DgmMemory)

    def learn(self, task: Task) -> None:
        self.memory.learn(task)

    def facts(self) -> dict:
        return self.memory.facts()


class StoredSolver(DgmMethod):
    """dgm-solver: the solver stored with the version (genmem.solver; the profile says how it is trained)."""

    label = "DGM stored solver"

    def score(self, task: Task) -> Score:
        with self.run.timed(f"{self.name} test"):
            return solver_score(self.memory.memory, self.run.test, self.memory.version, self.run.device)


class DgmReplay(DgmMethod):
    """dgm-replay: a fresh classifier on the task's real images plus DGM's replay of every earlier class."""

    label = "classifier + DGM replay"

    def score(self, task: Task) -> Score:
        return replay_score(self.memory.sampler, task, self.run, self.name)


class DgmMethodPerValue(DgmMethod):
    """A DGM method that runs once per value of one of its options (several beside one memory), each instance
    named by its value in percent: `prefix` + percent, e.g. dgm-newest-50. A subclass names its option, its
    default values, which values it takes (`accepts`), what it says of others, and its label."""

    prefix: str
    option: str
    defaults: tuple[float, ...]
    refusal: str  # why given values are refused, with {values}
    label_format: str  # the label, with {percent}

    @staticmethod
    def accepts(value: float) -> bool:
        raise NotImplementedError

    @classmethod
    def instances(cls, name: str, methods: tuple[str, ...], options: dict) -> list[str]:
        values = options.get(cls.option, cls.defaults)
        # an instance runs at its name's whole percent, so that must be accepted too (0.999 would run at 1)
        if not values or not all(cls.accepts(value) and cls.accepts(round(100 * value) / 100) for value in values):
            raise InvalidSetting(cls.refusal.format(values=values))
        return [f"{cls.prefix}{percent}" for percent in sorted({round(100 * value) for value in values})]

    @classmethod
    def label_of(cls, name: str) -> str:
        return cls.label_format.format(percent=name.removeprefix(cls.prefix))

    def __init__(self, name: str, run: Run):
        super().__init__(name, run)
        self.value = int(name.removeprefix(self.prefix)) / 100
