"""Replay quality per unit of GAN compute: the same few tasks learned under several training settings.

Every setting learns the same classes (one per task) from the same seed and
budget into its own memory; then the replay of every class learned is scored
by one fixed judge (genmem.quality) against the real test images, a fresh
classifier trained on replay alone is tested on them (a classification
accuracy score), the stored solver is tested, and the GAN's iterations per
second are taken from the versions' manifests. A judge trained on real images is cached in the
output folder (safetensors) so that every setting is scored by the same one.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from genmem.benchmarks.protocol import IMAGE_SIZE
from genmem.classifier import ClassifierConfig
from genmem.config import TrainingConfig
from genmem.data import ImageSet, fit_images
from genmem.errors import InvalidSetting
from genmem.evaluate import replay_classifier_score, replay_quality, solver_score
from genmem.memory import Memory
from genmem.nets import Classifier
from genmem.quality import mean_quality, train_judge

JUDGE_FILE = "judge.safetensors"
REPLAY_PER_CLASS = 1000


def judge_for(train: ImageSet, out_dir: Path, device, image_size: int = IMAGE_SIZE, progress: bool = False
              ) -> Classifier:
    """The cached judge of out_dir, or a new one trained on every real training image at image_size; output i is
    the class named judge_names(train)[i]. A cached judge of other data or another size is refused, never reused."""
    path = out_dir / JUDGE_FILE
    channels = train.images.shape[1]
    classes = sorted(train.class_names)
    made_of = {"source": train.source, "classes": ",".join(judge_names(train)), "image_size": str(image_size)}
    model = Classifier(channels, image_size, len(classes))
    if path.exists():
        with safe_open(path, "pt") as cached:
            if cached.metadata() != made_of:
                raise InvalidSetting(f"{path} is a judge of other data or another image size ({cached.metadata()}); "
                                     f"give another --out, or delete it to train a judge of {train.source}")
        model.load_state_dict(load_file(path))
        return model.to(device).eval()
    data = train.select(classes)
    images = fit_images(data.images, channels, image_size, data.source)
    model = train_judge(images, data.labels, classes, ClassifierConfig(epochs=2.0), device, progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path, metadata=made_of)
    return model


def judge_names(train: ImageSet) -> list[str]:
    """The names of a judge's outputs, in order."""
    return [train.class_names[label] for label in sorted(train.class_names)]


def run_setting(name: str, config: TrainingConfig, train: ImageSet, test: ImageSet, classes: list[int],
                variant: str, images_per_class: int | None, out_dir: Path, judge: Classifier, device="cpu",
                base_width: int | None = None, progress: bool = False,
                classifier: ClassifierConfig | None = None) -> dict:
    """Learn `classes` one per task under `config`, then score the last version's replay and solver. classifier:
    how a fresh classifier learns from replay alone, images_per_class generated images of every class per pass
    (genmem.evaluate.replay_classifier_score); None: no such classifier."""
    memory = Memory(out_dir / name)
    data = train.select(classes).first_per_class(images_per_class)
    for task, label in enumerate(classes):
        memory.learn_task(data, [label], variant=variant, config=replace(config, seed=config.seed + task),
                          device=device, image_size=IMAGE_SIZE, base_width=base_width, progress=progress)
    manifest = memory.manifest()
    seconds = sum(t["seconds"] for t in manifest["tasks"])
    iterations = sum(t["iterations"] for t in manifest["tasks"])
    quality = replay_quality(memory, test, judge, judge_names(train), images_per_class=REPLAY_PER_CLASS,
                             device=device)
    mean = mean_quality(quality)
    replay_accuracy = None if classifier is None else replay_classifier_score(
        memory, test, config=classifier, images_per_class=images_per_class or REPLAY_PER_CLASS, device=device).average
    return {"setting": name, "config": config.to_dict(), "solver_accuracy": solver_score(memory, test).average,
            "replay_accuracy": replay_accuracy,
            "judge_accuracy": mean.judge_accuracy, "frechet": mean.frechet,
            "per_class": {str(k): q.to_dict() for k, q in quality.items()},
            "iterations_per_second": iterations / seconds, "gan_seconds": seconds,
            "parameters": manifest["tasks"][-1]["parameters"]["total"]}


def markdown_table(rows: list[dict]) -> str:
    lines = ["| setting | solver A | classifier on replay A | judge accuracy on replay (%) | Fréchet distance | "
             "GAN it/s | GAN s | generator parameters |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        replay = "–" if r.get("replay_accuracy") is None else f"{r['replay_accuracy']:.2f}"
        lines.append(f"| {r['setting']} | {r['solver_accuracy']:.2f} | {replay} | {r['judge_accuracy']:.2f} | "
                     f"{r['frechet']:.2f} | {r['iterations_per_second']:.2f} | {r['gan_seconds']:.0f} | "
                     f"{r['parameters']:,} |")
    return "\n".join(lines)


def save(rows: list[dict], out_dir: Path) -> None:
    (out_dir / "ablation.json").write_text(json.dumps(rows, indent=2) + "\n")

