"""joint: a fresh classifier on the real images of every class seen, the upper bound (not continual)."""

from __future__ import annotations

from genmem.benchmarks.methods.base import IMAGE_SIZE, Method, Task
from genmem.classifier import output_targets, shuffled_batches, train_classifier
from genmem.evaluate import Score, evaluate_model


class Joint(Method):
    label = "joint training (upper bound)"

    def score(self, task: Task) -> Score:
        run, config = self.run, task.config
        with run.timed("joint classifier"):
            images, labels = run.images_of(task.seen)
            batches = shuffled_batches(images, output_targets(labels, task.outputs), config.batch_size, config.seed)
            model = train_classifier(batches, task.steps, len(task.seen), run.channels, IMAGE_SIZE, config,
                                     run.device, model=run.new_classifier(len(task.seen), config.seed),
                                     progress=run.progress, desc="joint classifier")
            return evaluate_model(model, task.seen, task.test_images, task.test_labels, run.device)
