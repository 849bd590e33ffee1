"""Accuracy on real test images: per class, A_t, forgetting, confusion; for stored solvers and replay classifiers.

A_t is the unweighted mean over the classes seen after t tasks of each class's
accuracy on its real test images (docs/ALGORITHM.md §1). Nothing here uses
real images of old classes for training or model selection: solvers are
evaluated as stored, and a replay classifier learns from the memory alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from genmem.artifact import decode_solver, has_solver
from genmem.filtering import ConfidentReplay
from genmem.classifier import ClassifierConfig, predict, relabelled, train_classifier
from genmem.data import ImageSet, fit_images
from genmem.errors import DataError, GenmemError
from genmem.memory import Memory
from genmem.nets import Classifier
from genmem.quality import ClassQuality, class_quality
from genmem.replay import ReplayStream


def per_class_accuracy(predicted: torch.Tensor, true: torch.Tensor, classes: Sequence[int]) -> dict[int, float]:
    """Accuracy (%) of each class on its own test images; a class without test images is an error."""
    scores = {}
    for label in classes:
        mine = true == label
        if not bool(mine.any()):
            raise DataError(f"the test set has no images of class {label}")
        scores[label] = 100.0 * float((predicted[mine] == label).float().mean())
    return scores


def average_accuracy(per_class: dict[int, float]) -> float:
    """A_t: the unweighted mean of per-class accuracies, so a class with many test images counts once."""
    return sum(per_class.values()) / len(per_class)


def forgetting(history: Sequence[dict[int, float]]) -> dict[int, float]:
    """Per class: its best accuracy before the last step minus its last accuracy (classes seen before the end)."""
    final = history[-1]
    return {label: max(step[label] for step in history[:-1] if label in step) - final[label]
            for label in final if any(label in step for step in history[:-1])}


def confusion_matrix(predicted: torch.Tensor, true: torch.Tensor, classes: Sequence[int]) -> list[list[int]]:
    """Counts [true class][predicted class] over `classes`, in their order."""
    index = {label: i for i, label in enumerate(classes)}
    matrix = [[0] * len(classes) for _ in classes]
    for t, p in zip(true.tolist(), predicted.tolist()):
        if t in index and p in index:
            matrix[index[t]][index[p]] += 1
    return matrix


@dataclass
class Score:
    """How one classifier did on the real test images of the classes it knows."""

    per_class: dict[int, float]
    confusion: list[list[int]]

    @property
    def average(self) -> float:
        return average_accuracy(self.per_class)

    def to_dict(self) -> dict:
        return {"average": self.average, "per_class": {str(k): v for k, v in self.per_class.items()},
                "confusion": self.confusion}


def images_of_classes(memory_classes: Sequence[int], names: dict[int, str], test: ImageSet, channels: int,
                    image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images of a memory's classes (matched by name, so label clashes cannot mislead), fitted to it."""
    by_name = {name: label for label, name in test.class_names.items()}
    missing = [names[label] for label in memory_classes if names[label] not in by_name]
    if missing:
        raise DataError(f"{test.source} has no classes named {', '.join(map(repr, missing))}; evaluate with the "
                        f"data set the memory learned from")
    subset = test.select([by_name[names[label]] for label in memory_classes])
    to_memory = {by_name[names[label]]: label for label in memory_classes}
    labels = torch.tensor([to_memory[int(label)] for label in subset.labels])
    return fit_images(subset.images, channels, image_size, test.source), labels


def evaluate_model(logits_of, outputs: Sequence[int], images: torch.Tensor, labels: torch.Tensor,
                   device: str | torch.device = "cpu", allowed: torch.Tensor | None = None) -> Score:
    """Evaluate a model whose output i is class outputs[i] on labelled test images (`allowed`: see `predict`)."""
    predicted = torch.tensor(outputs)[predict(logits_of, images, device, allowed=allowed)]
    classes = sorted(set(labels.tolist()))
    return Score(per_class_accuracy(predicted, labels, classes), confusion_matrix(predicted, labels, classes))


def solver_score(memory: Memory, test: ImageSet, version: str | None = None, device: str | torch.device = "cpu"
                 ) -> Score:
    """The stored task solver of a version on the real test images of that version's classes: no retraining."""
    manifest, files = memory.store.read(version)
    if not has_solver(manifest):
        raise GenmemError(f"version {manifest['version']} stores no solver (learned with --solver none); "
                          f"evaluate a classifier trained on its replay instead (--replay-classifier)")
    solver = decode_solver(manifest, files).to(device)
    names = {c["label"]: c["name"] for c in manifest["classes"]}
    g = manifest["generator"]
    images, labels = images_of_classes(manifest["solver"]["classes"], names, test, g["channels"], g["image_size"])
    return evaluate_model(solver, manifest["solver"]["classes"], images, labels, device)


def replay_classifier_score(memory: Memory, test: ImageSet, version: str | None = None,
                            config: ClassifierConfig | None = None, images_per_class: int = 1000,
                            device: str | torch.device = "cpu", progress: bool = False,
                            min_confidence: float | None = None) -> Score:
    """Train a fresh classifier on replay alone (all classes of the version) and test it on real images.

    It sees config.epochs x images_per_class generated images of every class,
    drawn fresh in every batch from a ReplayStream; with min_confidence, only
    images the version's solver recognises with that probability
    (genmem.filtering).
    """
    config = config or ClassifierConfig()
    sampler = memory.sampler(version, device) if min_confidence is None else \
        ConfidentReplay.from_memory(memory, version, min_confidence, device)
    labels = [c.label for c in sampler.classes]
    outputs = {label: i for i, label in enumerate(labels)}
    steps = math.ceil(config.epochs * images_per_class * len(labels) / config.batch_size)
    stream = ReplayStream(sampler, batch_size=config.batch_size, seed=config.seed)
    model = train_classifier(relabelled(stream, outputs), steps, len(labels), *sampler.image_shape[:2], config, device,
                             progress=progress, desc="replay classifier")
    names = {c.label: c.name for c in sampler.classes}
    images, true = images_of_classes(labels, names, test, sampler.image_shape[0], sampler.image_shape[1])
    return evaluate_model(model, labels, images, true, device)


def replay_quality(memory: Memory, test: ImageSet, judge: Classifier, judge_names: Sequence[str],
                   version: str | None = None, images_per_class: int = 1000, seed: int = 0,
                   device: str | torch.device = "cpu") -> dict[int, ClassQuality]:
    """How a fixed judge (genmem.quality; its output i is the class named judge_names[i]) sees a version's replay of
    each of its classes, beside their real test images: one yardstick for memories learned in different ways."""
    sampler = memory.sampler(version, device)
    names = {c.label: c.name for c in sampler.classes}
    generated, generated_labels = sampler.sample({label: images_per_class for label in names}, seed=seed)
    real, real_labels = images_of_classes(list(names), names, test, *sampler.image_shape[:2])
    label_of = {name: label for label, name in names.items()}
    judged = [label_of.get(name, -1 - i) for i, name in enumerate(judge_names)]  # negative: a class the memory lacks
    return class_quality(judge, judged, generated.cpu(), generated_labels.cpu(), real, real_labels, device)
