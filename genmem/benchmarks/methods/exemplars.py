"""Real training images kept per class: which ones, and the store that holds and replays them.

A buffer of real images (methods.buffer) and DGM with a few real images per
class (methods.hybrid) keep, of every class they finish, the first images of
one order of its real training images: herding's (iCaRL, Rebuffi et al.
2017: each next image is the one that brings the mean of those chosen closest
to the class mean) or a seeded shuffle's. Keeping a prefix makes iCaRL's
reduction, when new classes arrive, a truncation, and lets every method of a
run share one order per class.

Herding needs a feature space that stays fixed. iCaRL herds in the features
of the network it trains; the protocol's classifiers are fresh every task, so
none lasts. The default is the audit's randomly initialised convolutional
trunk (genmem.audit.FeatureSpace, unit-length features, a fixed seed): its
strided convolutions weigh a digit's strokes rather than single pixels, it
needs no training and no download, and it is the same for every run. Its cost
is a pass over the class's images, seconds per class on a CPU.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from genmem.artifact import ClassInfo, ClassTable
from genmem.audit import FeatureSpace
from genmem.benchmarks.methods import SELECTIONS
from genmem.benchmarks.methods.base import IMAGE_SIZE, Run, load_tensors
from genmem.errors import InvalidSetting
from genmem.pixels import to_unit_range
from genmem.replay import batch_seed

SHARED_SECONDS = "exemplar order"  # Run.timings key of the orders' cost, shared by the methods that keep images


def check_selection(options: dict) -> str:
    selection = options.get("exemplar_selection", SELECTIONS[0])
    if selection not in SELECTIONS:
        raise InvalidSetting(f"unknown exemplar selection {selection!r}: choose from {', '.join(SELECTIONS)}")
    return selection


class Herding:
    """iCaRL's herding over one class's features, extended on demand; never the same image twice."""

    def __init__(self, features: torch.Tensor):
        self.features = features
        self.mean = features.mean(0)
        self.squared_norms = features.pow(2).sum(1)
        self.total = torch.zeros_like(self.mean)  # of the features chosen so far
        self.free = torch.ones(len(features), dtype=torch.bool)
        self.order: list[int] = []

    def first(self, count: int) -> torch.Tensor:
        """The indices of the first `count` images in herding's order (all of them, if there are fewer)."""
        while len(self.order) < min(count, len(self.features)):
            k = len(self.order) + 1
            # |mean - (total + f) / k|^2 = |gap|^2 - 2 gap.f / k + |f|^2 / k^2, with gap = mean - total / k
            gap = self.mean - self.total / k
            cost = self.squared_norms / k**2 - 2 * (self.features @ gap) / k
            best = int(cost.masked_fill(~self.free, float("inf")).argmin())
            self.order.append(best)
            self.free[best] = False
            self.total += self.features[best]
        return torch.tensor(self.order[:count], dtype=torch.long)


class ExemplarChooser:
    """The run's order of the real training images of the current task's classes, shared by every method that
    keeps some (Run.shared): herding's in the audit's feature space, or a shuffle seeded by the run and class."""

    def __init__(self, run: Run):
        self.run = run
        self.selection = check_selection(run.options)
        self.space = FeatureSpace(run.channels, IMAGE_SIZE) if self.selection == "herding" else None
        self.task: int | None = None
        self.herding: dict[int, Herding] = {}  # the current task's classes only: features take memory

    def keep(self, task: int, label: int, count: int) -> torch.Tensor:
        """A copy of the first `count` real training images of class `label` in the run's order, read while task
        `task` learns it (all of them, if it has fewer)."""
        images, _ = self.run.images_of([label])
        with self.run.timed(SHARED_SECONDS):
            if self.selection == "random":
                rng = torch.Generator().manual_seed(batch_seed(self.run.seed, label))
                chosen = torch.randperm(len(images), generator=rng)[:count]
            else:
                if task != self.task:
                    self.task, self.herding = task, {}
                if label not in self.herding:
                    self.herding[label] = Herding(self.space(images))
                chosen = self.herding[label].first(count)
        # The method's own copy, not a view of the data set, in the standard layout that a resumed run loads back:
        # a one-channel image set read as channels-last is contiguous too, but convolutions sum it in another order.
        return images[chosen].clone(memory_format=torch.contiguous_format)


class Exemplars:
    """Real images kept per class, each class's in the order chosen; as a replay source (genmem.replay's
    ReplaySource) it draws a class's images with replacement."""

    version = "real images"

    def __init__(self, names: Mapping[int, str]):
        self.names = names
        self.images: dict[int, torch.Tensor] = {}  # label: uint8 [n, C, H, W], in the order chosen

    @property
    def classes(self) -> ClassTable:
        return ClassTable([ClassInfo(label, self.names[label], 0, i) for i, label in enumerate(self.images)])

    @property
    def nbytes(self) -> int:
        """The bytes of the images kept, one per pixel and channel (the labels are the classes they are under)."""
        return sum(images.numel() * images.element_size() for images in self.images.values())

    def counts(self) -> list[int]:
        """Images kept per class, in the order the classes came."""
        return [len(images) for images in self.images.values()]

    def add(self, label: int, images: torch.Tensor) -> None:
        self.images[label] = images

    def truncate(self, count: int) -> None:
        """Keep the first `count` images of every class (copies: a view would hold on to the rest)."""
        self.images = {label: images[:count].clone() for label, images in self.images.items()}

    def draw(self, counts: Mapping[int, int], rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """counts[label] images of each class, drawn with replacement, and their labels."""
        images = [self.images[label][torch.randint(len(self.images[label]), (n,), generator=rng)]
                  for label, n in counts.items()]
        labels = [torch.full((n,), label) for label, n in counts.items()]
        return torch.cat(images), torch.cat(labels)

    def sample(self, counts: Mapping[int | str, int], seed: int = 0, as_uint8: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
        table = self.classes
        images, labels = self.draw({table.resolve(key).label: n for key, n in counts.items()},
                                   torch.Generator().manual_seed(seed))
        return (images if as_uint8 else to_unit_range(images)), labels

    def save(self, path: Path, record) -> None:
        """The images, and `record` (JSON) beside them in the file's metadata: one entry, for the file's bytes to
        be the same every time (safetensors writes several in any order)."""
        save_file({str(label): images.contiguous() for label, images in self.images.items()}, str(path),
                  metadata={"exemplars": json.dumps({"labels": list(self.images), "record": record})})

    def load(self, path: Path):
        """Take back what `save` wrote; returns its record."""
        tensors = load_tensors(path)
        with safe_open(str(path), "pt") as handle:
            saved = json.loads(handle.metadata()["exemplars"])
        self.images = {label: tensors[str(label)] for label in saved["labels"]}
        return saved["record"]
