"""What a protocol method is, and what the methods of one run share.

The runner (genmem.benchmarks.protocol) makes one `Method` per name and, for
every task, calls `learn` on each, then `score` on each, then `save` on
each; a resumed run calls `load` once, with the state saved after its last
finished task. Work that several methods need (DGM's memory, which the
stored solver and the replay classifier both test) is a shared part, made
once per run by `Run.shared`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from genmem.benchmarks.classifiers import new_classifier
from genmem.benchmarks.profiles import Profile
from genmem.classifier import ClassifierConfig, mixed_batches, relabelled, shuffled_batches, train_classifier
from genmem.config import TrainingConfig
from genmem.data import ImageSet
from genmem.encoding import encode_samples
from genmem.errors import GenmemError
from genmem.evaluate import Score, evaluate_model
from genmem.replay import ReplayStream

IMAGE_SIZE = 32
SAMPLES_PER_CLASS = 8  # per class in each task's sample sheet


@dataclass(frozen=True)
class Task:
    """One task of a run as every method sees it. A classifier's output i is class seen[i]."""

    index: int
    classes: list[int]  # the task's new classes
    seen: list[int]  # every class learned so far, this task's last
    config: ClassifierConfig  # the classifiers' settings, seeded for this task
    steps: int  # batches of a classifier that learns every class seen
    test_images: torch.Tensor  # the real test images of the classes seen
    test_labels: torch.Tensor

    @property
    def outputs(self) -> dict[int, int]:
        return {c: i for i, c in enumerate(self.seen)}

    @property
    def earlier(self) -> list[int]:
        """The classes of the tasks before this one."""
        return self.seen[: len(self.seen) - len(self.classes)]


@dataclass
class Run:
    """What the methods of one run share: its data, settings and budget, its folder and its clock."""

    out_dir: Path
    data: ImageSet  # the classifiers' real training images of every class, fitted to IMAGE_SIZE
    gan_data: ImageSet  # the GANs' share of them (Profile.images_per_class), the same for every method
    test: ImageSet
    classes: list[int]  # every class of the run, in the order they are learned
    classes_per_task: int
    recipe: str
    variant: str  # DGM's
    profile: Profile
    gan: TrainingConfig  # DGM's GAN settings (baseline_gan: the others'); a task's seed is the run's plus its index
    classifier: ClassifierConfig  # every classifier's; likewise seeded per task
    network: str  # every classifier's network (genmem.benchmarks.classifiers)
    seed: int
    device: torch.device
    progress: bool
    base_width: int | None  # DGM's initial base width, if one was chosen
    checkpoint_every: float | None  # DGM's checkpoints inside a task (Memory.learn_task)
    arch: str = "dcgan"  # DGM's generator architecture, and class-conditional BatchNorm (Memory.learn_task)
    class_norm: bool = False
    options: dict = field(default_factory=dict)  # the methods' own settings (run_protocol's method_options)
    timings: dict[str, float] = field(default_factory=dict)
    _parts: dict[type, object] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return self.data.images.shape[1]

    @property
    def baseline_gan(self) -> TrainingConfig:
        """The baselines' GAN settings: their generator and critic are the DCGAN's whatever DGM's `arch`, so
        they train with the DCGAN's critic settings (genmem.presets.ARCH_SETTINGS)."""
        return self.profile.training_config(self.recipe, self.variant, self.gan.solver)

    def new_classifier(self, num_classes: int, seed: int) -> nn.Module:
        """A fresh classifier of the run's network, its weights drawn from `seed`."""
        return new_classifier(self.network, self.channels, IMAGE_SIZE, num_classes, self.classifier.width, seed)

    def shared(self, kind: type):
        """The run's one `kind(run)`, made by whichever method asks first."""
        if kind not in self._parts:
            self._parts[kind] = kind(self)
        return self._parts[kind]

    @contextmanager
    def timed(self, key: str):
        """Add the seconds the block takes to timings[key]: what each method costs, apart."""
        started = time.perf_counter()
        yield
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - started

    def images_of(self, classes: list[int], data: ImageSet | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The real training images of `classes` and their labels (from the classifiers' share by default)."""
        data = data or self.data
        mine = torch.isin(data.labels, torch.tensor(classes))
        return data.images[mine], data.labels[mine]

    def write_samples(self, prefix: str, source, task: Task) -> None:
        """A sheet of a replay source's images of every class seen, into samples/ (prefix: whose)."""
        images, labels = source.sample({c: SAMPLES_PER_CLASS for c in task.seen}, seed=0)
        names = {c: self.data.class_names[c] for c in task.seen}
        path = self.out_dir / "samples" / f"{prefix}task{task.index:02d}.png"
        path.write_bytes(encode_samples(images, labels, "png", names))


class Method(ABC):
    """One way of learning classes in turn, as the protocol trains it and tests it after every task."""

    label = ""  # the charts' legend entry
    title: str | None = None  # how a run's title names it ("DGR"); None: not named there (DGM's, the bounds)
    # Run.timings keys of work it shares with other methods (DGM's GAN), part of its cost beside its own keys,
    # which start with its name.
    shared_seconds: tuple[str, ...] = ()

    def __init__(self, name: str, run: Run):
        self.name, self.run = name, run

    @classmethod
    def instances(cls, name: str, methods: tuple[str, ...], options: dict) -> list[str]:
        """The names the registered method `name` runs under beside `methods`, given the methods' options: itself,
        or one per setting where an option asks for several at once (the buffer at several budgets). Settings that
        cannot work are refused here, before anything is learned."""
        return [name]

    @classmethod
    def label_of(cls, name: str) -> str:
        """The legend entry of the instance `name`."""
        return cls.label

    def learn(self, task: Task) -> None:
        """Learn the task's classes into what the method keeps (a generator, say); nothing by default."""

    @abstractmethod
    def score(self, task: Task) -> Score:
        """The method's classifier after this task, on the real test images of every class seen."""

    def save(self, state: Path) -> None:
        """Write what `load` needs to continue after this task into the folder `state`; nothing by default."""

    def load(self, state: Path) -> None:
        """Take back what `save` wrote, to continue a run; nothing by default."""

    def facts(self) -> dict:
        """Entries of results.json beside the scores (merged over methods); none by default."""
        return {}


def replay_classifier(source, task: Task, run: Run, desc: str, newest_generated: float = 0.0) -> nn.Module:
    """A fresh classifier on `replay_batches`."""
    batches = replay_batches(source, task, run, newest_generated)
    return train_classifier(batches, task.steps, len(task.seen), run.channels, IMAGE_SIZE, task.config, run.device,
                            model=run.new_classifier(len(task.seen), task.config.seed), progress=run.progress,
                            desc=desc)


def replay_batches(source, task: Task, run: Run, newest_generated: float = 0.0) -> Iterator[tuple[torch.Tensor,
                                                                                                   torch.Tensor]]:
    """Endless batches of the task's real images plus `source`'s replay of every earlier class.

    Each batch holds images of the task's classes in proportion to their
    share of the classes seen, the rest replay spread evenly over the
    earlier classes. newest_generated: the share of the task's classes'
    images that `source` generates too (it must hold them) instead of real
    ones; 1 is replay alone.
    """
    config, seen = task.config, task.seen
    newest = max(1, round(config.batch_size * len(task.classes) / len(seen)))
    generated = round(newest * newest_generated)
    streams = []
    if generated < newest:
        images, labels = run.images_of(task.classes)
        streams.append(shuffled_batches(images, labels, newest - generated, config.seed))
    if generated:
        streams.append(ReplayStream(source, classes=task.classes, batch_size=generated, seed=config.seed))
    if task.earlier:
        streams.append(ReplayStream(source, classes=task.earlier, batch_size=config.batch_size - newest,
                                    seed=config.seed))
    return mixed_batches(*(relabelled(stream, task.outputs) for stream in streams))


def replay_score(source, task: Task, run: Run, name: str, newest_generated: float = 0.0) -> Score:
    """`replay_classifier` on `source`, timed as `name`'s classifier, on the real test images."""
    with run.timed(f"{name} classifier"):
        model = replay_classifier(source, task, run, f"{name} classifier", newest_generated)
        return evaluate_model(model, task.seen, task.test_images, task.test_labels, run.device)


def save_module(model: nn.Module, path: Path) -> None:
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, str(path))


def load_module(model: nn.Module, path: Path) -> None:
    model.load_state_dict(load_tensors(path), strict=True)


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise GenmemError(f"{path} is missing: the run's state after its last finished task is incomplete")
    return load_file(str(path))
