"""finetune: one classifier trained on each task's real images in turn, with no replay: the lower bound.

It has a single head over every class of the run from the start, and is
tested with its choice restricted to the classes seen so far.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from genmem.benchmarks.methods.base import IMAGE_SIZE, Method, Run, Task, load_module, save_module
from genmem.classifier import output_targets, shuffled_batches, train_classifier
from genmem.evaluate import Score, evaluate_model


class Finetune(Method):
    label = "fine-tuning, no replay (lower bound)"

    def __init__(self, name: str, run: Run):
        super().__init__(name, run)
        self.model: nn.Module | None = None  # none before the first task

    def score(self, task: Task) -> Score:
        with self.run.timed(f"{self.name} classifier"):
            return self.trained_and_tested(task)

    def trained_and_tested(self, task: Task) -> Score:
        run, config = self.run, task.config
        outputs = {c: i for i, c in enumerate(run.classes)}
        images, labels = run.images_of(task.classes)
        batches = shuffled_batches(images, output_targets(labels, outputs), config.batch_size, config.seed)
        model = self.model if self.model is not None else run.new_classifier(len(run.classes), config.seed)
        self.model = train_classifier(batches, math.ceil(config.epochs * len(images) / config.batch_size),
                                      len(run.classes), run.channels, IMAGE_SIZE, config, run.device,
                                      model=model, progress=run.progress, desc="finetune classifier")
        allowed = torch.arange(len(run.classes)) < len(task.seen)
        return evaluate_model(self.model, run.classes, task.test_images, task.test_labels, run.device, allowed)

    def save(self, state: Path) -> None:
        save_module(self.model, state / f"{self.name}.safetensors")

    def load(self, state: Path) -> None:
        self.model = self.run.new_classifier(len(self.run.classes), seed=0)  # its weights are then loaded
        load_module(self.model, state / f"{self.name}.safetensors")
