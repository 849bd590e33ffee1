"""The paper's class-incremental protocol (docs/ALGORITHM.md §1), with its bounds, in one run.

One task per class, classes in label order, 32x32 images in [-1, 1]. After
every task four classifiers are tested on the real test images of the classes
seen so far, and A_t is the unweighted mean of their per-class accuracies:

    dgm-solver  the critic's class head as the paper trains it, stored with the version
    dgm-replay  a fresh classifier on the task's real images plus replay of every earlier class
    joint       the same classifier on real images of every class seen (upper bound; not continual)
    finetune    one classifier trained on each task's real images in turn, no replay (lower bound)

No real image of an earlier class is used by the first two, for training or
for model selection: every figure is the final model's.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from genmem.classifier import (ClassifierConfig, mixed_batches, output_targets, relabelled, shuffled_batches,
                               train_classifier)
from genmem.data import ImageSet, fit_images
from genmem.encoding import encode_samples
from genmem.errors import GenmemError
from genmem.evaluate import (Score, average_accuracy, evaluate_model, forgetting, images_of_classes,
                             solver_score)
from genmem.memory import Memory
from genmem.presets import base_width_for, paper_config
from genmem.replay import ReplayStream

METHODS = ("dgm-solver", "dgm-replay", "joint", "finetune")
IMAGE_SIZE = 32
# The paper's Table 1 (A5, A10, %); the authors selected models on real old-class validation images.
PAPER = {("mnist", "dgmw"): (98.75, 96.46), ("mnist", "dgma"): (99.17, 97.92),
         ("svhn", "dgmw"): (83.93, 74.38), ("svhn", "dgma"): (81.07, 66.89),
         ("cifar10", "dgmw"): (64.94, 51.70), ("cifar10", "dgma"): (62.50, 50.80)}
PAPER_JOINT = {"mnist": (97.66, 98.10), "svhn": (85.30, 84.82), "cifar10": (82.20, 64.20)}


@dataclass(frozen=True)
class Profile:
    """A compute budget for the protocol."""

    name: str
    images_per_class: int | None  # real training images per class; None: all
    gan_epochs: int | None  # None: the paper's (101 MNIST, 151 SVHN, 251 CIFAR-10)
    solver_replay: int | None  # generated images per earlier class in each solver step; None: the batch size
    classifier_epochs: float
    about: str
    solver_steps: int | None = None  # None: TrainingConfig's default

    def with_budget(self, images_per_class: int | None = None, gan_epochs: int | None = None) -> Profile:
        """This profile with fewer or more real images per class or GAN epochs; the name says it was changed."""
        if images_per_class is None and gan_epochs is None:
            return self
        changed = replace(self, images_per_class=images_per_class or self.images_per_class,
                          gan_epochs=gan_epochs or self.gan_epochs)
        images = changed.images_per_class or "all"
        epochs = changed.gan_epochs or "the paper's"
        return replace(changed, name=f"{self.name}, custom budget",
                       about=f"{self.name} with {images} images per class, {epochs} GAN epochs per task")


PROFILES = {
    "quick": Profile("quick", 1000, 40, 8, 2.0, "2 CPU cores: 1000 images per class, 40 GAN epochs per task"),
    "paper": Profile("paper", None, None, None, 5.0, "the paper's budgets on all the data, for a GPU"),
    "smoke": Profile("smoke", 24, 1, 2, 0.5, "seconds on tiny data: checks the pipeline, not the accuracy",
                     solver_steps=20),
}


def per_class_subset(data: ImageSet, count: int | None) -> ImageSet:
    """The first `count` images of every class (all of them for None), in a fixed order."""
    if count is None:
        return data
    keep = torch.zeros(len(data.labels), dtype=torch.bool)
    for label in data.class_names:
        keep[torch.nonzero(data.labels == label).flatten()[:count]] = True
    return ImageSet(data.images[keep], data.labels[keep], data.class_names, data.source)


def run_protocol(train: ImageSet, test: ImageSet, recipe: str, variant: str, profile: Profile, out_dir: Path, *,
                 device: str | torch.device = "cpu", seed: int = 0, num_tasks: int | None = None,
                 progress: bool = True) -> dict:
    """Learn one class per task into a new memory under out_dir, test every method after every task."""
    out_dir = Path(out_dir)
    if (out_dir / "memory").exists():
        raise GenmemError(f"{out_dir} already holds a protocol run; choose a new --out folder")
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    classes = sorted(train.class_names)[:num_tasks]
    data = per_class_subset(train.select(classes), profile.images_per_class)
    channels = data.images.shape[1]
    data = ImageSet(fit_images(data.images, channels, IMAGE_SIZE, data.source), data.labels, data.class_names,
                    data.source)
    memory = Memory(out_dir / "memory")
    gan = paper_config(recipe, variant, epochs=profile.gan_epochs, solver_replay=profile.solver_replay,
                       solver_steps=profile.solver_steps)
    cls_config = ClassifierConfig(epochs=profile.classifier_epochs)
    finetuned = None
    history: dict[str, list[dict[int, float]]] = {m: [] for m in METHODS}
    finals: dict[str, Score] = {}
    timings: dict[str, float] = {"gan": 0.0, "classifiers": 0.0}
    for task, label in enumerate(classes):
        seen = classes[: task + 1]
        outputs = {c: i for i, c in enumerate(seen)}
        started = time.perf_counter()
        version = memory.learn_task(data, [label], variant=variant, config=replace(gan, seed=seed + task),
                                    device=device, image_size=IMAGE_SIZE, base_width=base_width_for(recipe),
                                    progress=progress)
        timings["gan"] += time.perf_counter() - started
        started = time.perf_counter()
        names = {c: data.class_names[c] for c in seen}
        test_images, test_labels = images_of_classes(seen, names, test, channels, IMAGE_SIZE)
        mine = data.labels == label
        config = replace(cls_config, seed=seed + task)
        per_step = config.batch_size
        steps = math.ceil(config.epochs * int(mine.sum()) * len(seen) / per_step)
        sampler = memory.sampler(version, device)

        scores = {"dgm-solver": solver_score(memory, test, version, device)}

        real_share = max(1, round(per_step / len(seen)))
        real = shuffled_batches(data.images[mine], torch.full((int(mine.sum()),), outputs[label]), real_share,
                                config.seed)
        batches = real
        if task > 0:
            replay = ReplayStream(sampler, classes=seen[:-1], batch_size=per_step - real_share, seed=config.seed)
            batches = mixed_batches(real, relabelled(replay, outputs))
        model = train_classifier(batches, steps, len(seen), channels, IMAGE_SIZE, config, device,
                                 progress=progress, desc="dgm-replay classifier")
        scores["dgm-replay"] = evaluate_model(model, seen, test_images, test_labels, device)

        seen_mask = torch.isin(data.labels, torch.tensor(seen))
        joint = shuffled_batches(data.images[seen_mask], output_targets(data.labels[seen_mask], outputs), per_step,
                                 config.seed)
        model = train_classifier(joint, steps, len(seen), channels, IMAGE_SIZE, config, device,
                                 progress=progress, desc="joint classifier")
        scores["joint"] = evaluate_model(model, seen, test_images, test_labels, device)

        own = shuffled_batches(data.images[mine], torch.full((int(mine.sum()),), task), per_step, config.seed)
        finetuned = train_classifier(own, math.ceil(config.epochs * int(mine.sum()) / per_step), len(classes),
                                     channels, IMAGE_SIZE, config, device, model=finetuned, progress=progress,
                                     desc="finetune classifier")
        allowed = torch.arange(len(classes)) <= task  # single head over the classes seen so far
        scores["finetune"] = evaluate_model(finetuned, classes, test_images, test_labels, device, allowed)
        timings["classifiers"] += time.perf_counter() - started

        for method, result in scores.items():
            history[method].append(result.per_class)
            finals[method] = result
        images, labels = sampler.sample({c: 8 for c in seen}, seed=0)
        (out_dir / "samples" / f"task{task:02d}.png").write_bytes(encode_samples(images, labels, "png", names))
        if progress:
            print(f"task {task} (class {data.class_names[label]}): "
                  + ", ".join(f"{m} A={scores[m].average:.2f}" for m in METHODS), flush=True)

    manifest = memory.manifest()
    results = {
        "recipe": recipe, "variant": variant, "profile": asdict(profile), "seed": seed,
        "classes": [{"label": c, "name": data.class_names[c]} for c in classes],
        "gan_config": gan.to_dict() | {"seed": seed}, "classifier_config": cls_config.to_dict() | {"seed": seed},
        "accuracy": {m: [average_accuracy(step) for step in history[m]] for m in METHODS},
        "per_class": {m: [{str(k): v for k, v in step.items()} for step in history[m]] for m in METHODS},
        "forgetting": {m: {str(k): v for k, v in forgetting(history[m]).items()} if len(history[m]) > 1 else {}
                       for m in METHODS},
        "confusion": {m: finals[m].confusion for m in METHODS},
        "growth": [{k: t[k] for k in ("task", "widths", "capacity", "parameters")} for t in manifest["tasks"]],
        "storage_bytes": {name: entry["bytes"] for name, entry in manifest["files"].items()},
        "seconds": {k: round(v, 1) for k, v in timings.items()},
    }
    (out_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def markdown_table(results: dict) -> str:
    """A_t after 5 and 10 tasks (or whatever the run reached) per method, beside the paper's Table 1."""
    steps = len(results["accuracy"]["joint"])
    points = [t for t in (5, 10) if t <= steps] or [steps]
    if steps not in points:
        points.append(steps)
    paper_dgm = PAPER.get((results["recipe"], results["variant"]))
    paper = {"dgm-solver": paper_dgm, "dgm-replay": paper_dgm, "joint": PAPER_JOINT.get(results["recipe"])}
    head = "| method | " + " | ".join(f"A{t}" for t in points) + " | paper A5 | paper A10 |"
    lines = [head, "|" + "---|" * (len(points) + 3)]
    for method in METHODS:
        curve = results["accuracy"][method]
        ref = paper.get(method)
        lines.append(f"| {method} | " + " | ".join(f"{curve[t - 1]:.2f}" for t in points) + " | "
                     + (f"{ref[0]:.2f} | {ref[1]:.2f} |" if ref else "– | – |"))
    return "\n".join(lines)


def growth_table(results: dict) -> str:
    """Per task: widths, generator parameters (against a fixed 0.5 M replay GAN), and capacity summed over layers."""
    unit = "units" if results["variant"] == "dgma" else "weights"
    lines = [f"| task | widths | generator parameters | x fixed 0.5 M GAN | new {unit} | reused {unit} | "
             f"free {unit} |", "|---|---|---|---|---|---|---|"]
    for g in results["growth"]:
        total = g["parameters"]["total"]
        new, reused, free = (sum(layer[k] for layer in g["capacity"]) for k in ("new", "reused", "free"))
        lines.append(f"| {g['task']} | {'/'.join(map(str, g['widths']))} | {total:,} | {total / 500_000:.2f} | "
                     f"{new:,} | {reused:,} | {free:,} |")
    sizes = results["storage_bytes"]
    lines.append("")
    lines.append(f"Last version on disk: weights {sizes['generator.safetensors'] / 1024:,.1f} KiB, bit-packed masks "
                 f"{sizes['masks.safetensors'] / 1024:,.1f} KiB, solver {sizes['solver.safetensors'] / 1024:,.1f} KiB.")
    return "\n".join(lines)
