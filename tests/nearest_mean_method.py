"""A protocol method kept outside genmem, as a user's own would be: the mean real image of every class learned,
and a nearest-mean classifier on pixels. tests/test_protocol.py registers it with one line."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from genmem.benchmarks.methods.base import Method, Run, Task, load_tensors
from genmem.evaluate import Score, evaluate_model
from genmem.pixels import to_unit_range


class NearestMean(Method):
    label = "nearest class mean of pixels"

    def __init__(self, name: str, run: Run):
        super().__init__(name, run)
        self.means: dict[int, torch.Tensor] = {}  # class: its mean training image, in [-1, 1]

    def learn(self, task: Task) -> None:
        images, labels = self.run.images_of(task.classes)
        for label in task.classes:
            self.means[label] = to_unit_range(images[labels == label]).mean(0)

    def score(self, task: Task) -> Score:
        centres = torch.stack([self.means[c] for c in task.seen]).flatten(1)
        return evaluate_model(lambda images: -torch.cdist(images.flatten(1), centres), task.seen, task.test_images,
                              task.test_labels)

    def save(self, state: Path) -> None:
        save_file({str(label): mean for label, mean in self.means.items()}, str(state / f"{self.name}.safetensors"))

    def load(self, state: Path) -> None:
        self.means = {int(label): mean for label, mean in load_tensors(state / f"{self.name}.safetensors").items()}
