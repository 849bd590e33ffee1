"""Privacy against utility: memories learned with DP at several epsilons and without, each audited and tested.

For every setting one memory learns one class per task (holding a share of
each task's images out for the audit), then:

    replay classifier   A: a fresh classifier trained only on the memory's replay of every class, tested on
                        real test images (genmem.evaluate.replay_classifier_score)
    recognised          replay quality: the share of generated images that a classifier trained on the real
                        training images puts in their own class
    worst AUC           the audit's highest AUC over every attack on every shipped part (genmem.audit), members
                        against the held-out images
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import torch

from genmem.audit import HOLDOUT, audit
from genmem.classifier import ClassifierConfig, output_targets, predict, shuffled_batches, train_classifier
from genmem.data import ImageSet, fit_images
from genmem.errors import GenmemError
from genmem.evaluate import replay_classifier_score
from genmem.memory import Memory
from genmem.plots import png_bytes
from genmem.presets import paper_config

IMAGE_SIZE = 32
JUDGE_MIN_STEPS = 300  # a small reduced budget must not leave the judge untrained


def real_classifier(data: ImageSet, classes: list[int], config: ClassifierConfig, device) -> torch.nn.Module:
    """A classifier on the real training images, the judge of whether generated images look like their class."""
    outputs = {label: i for i, label in enumerate(classes)}
    steps = max(math.ceil(config.epochs * len(data.labels) / config.batch_size), JUDGE_MIN_STEPS)
    batches = shuffled_batches(data.images, output_targets(data.labels, outputs), config.batch_size, config.seed)
    return train_classifier(batches, steps, len(classes), data.images.shape[1], IMAGE_SIZE, config, device)


def recognised(memory: Memory, judge, classes: list[int], per_class: int, device) -> float:
    """% of generated images (per_class of each class) that the judge classifies as their own class."""
    images, labels = memory.sampler(device=device).sample({label: per_class for label in classes}, seed=1)
    predicted = torch.tensor(classes)[predict(judge, images.cpu(), device)]
    return 100.0 * float((predicted == labels).float().mean())


def run_privacy(train: ImageSet, test: ImageSet, out_dir: Path, epsilons: list[float | None], *, num_tasks: int,
                images_per_class: int, epochs: int, holdout: float = 0.2, delta: float = 1e-5,
                classifier_epochs: float = 2.0, device="cpu", progress: bool = True) -> dict:
    """Learn, test and audit one memory per epsilon (None: no DP, with genmem's default solver)."""
    classes = sorted(train.class_names)[:num_tasks]
    data = train.select(classes).first_per_class(images_per_class)
    data = ImageSet(fit_images(data.images, data.images.shape[1], IMAGE_SIZE, data.source), data.labels,
                    data.class_names, data.source)
    cls_config = ClassifierConfig(epochs=classifier_epochs)
    judge = real_classifier(data, classes, cls_config, device)
    rows = []
    for epsilon in epsilons:
        name = "no DP" if epsilon is None else f"epsilon {epsilon:g}"
        memory = Memory(out_dir / ("no-dp" if epsilon is None else f"eps-{epsilon:g}"))
        config = paper_config("mnist", "dgmw", epochs=epochs, solver_replay=8, dp_epsilon=epsilon, dp_delta=delta,
                              solver="real" if epsilon is None else "replay")
        for task, label in enumerate(classes):
            memory.learn_task(data, [label], config=replace(config, seed=task), device=device, image_size=IMAGE_SIZE,
                              progress=progress, holdout=holdout)
        score = replay_classifier_score(memory, test, config=cls_config, images_per_class=images_per_class,
                                        device=device)
        record, _ = audit(memory, data, HOLDOUT, samples_per_class=1000, device=device)
        privacy = [t["privacy"] for t in memory.manifest()["tasks"]]
        rows.append({"setting": name, "epsilon": epsilon, "spent": max((p["epsilon"] for p in privacy if p),
                                                                       default=None),
                     "noise_multiplier": privacy[0]["noise_multiplier"] if privacy[0] else None,
                     "replay_classifier": score.average, "recognised": recognised(memory, judge, classes, 200, device),
                     "worst_auc": record["worst_auc"], "attacks": record["attacks"],
                     "copy_rate": record["copy_rate"]["rate"], "solver": record["solver"]})
        if progress:
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "attacks"}), flush=True)
        results = {"classes": classes, "images_per_class": images_per_class, "epochs": epochs, "holdout": holdout,
                   "delta": delta, "rows": rows}
        save_privacy(results, out_dir)  # after every setting: a run stopped part way keeps what it finished
    return results


def save_privacy(results: dict, out_dir: Path) -> None:
    """results.json and privacy-utility.png in out_dir."""
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "privacy-utility.png").write_bytes(privacy_utility_plot(results))


def combine_privacy(runs: list[dict]) -> dict:
    """One table from runs of the same budget that learned other settings (say one epsilon per GPU process)."""
    budget = ("classes", "images_per_class", "epochs", "holdout", "delta")
    first = runs[0]
    for run in runs[1:]:
        differs = [key for key in budget if run.get(key) != first.get(key)]
        if differs:
            raise GenmemError(f"privacy runs with other {', '.join(differs)} cannot share a table; combine runs "
                              f"of one budget")
    rows = [row for run in runs for row in run["rows"]]
    settings = [row["setting"] for row in rows]
    twice = sorted({setting for setting in settings if settings.count(setting) > 1})
    if twice:
        raise GenmemError(f"two runs hold the same setting ({', '.join(twice)}); combine runs of different settings")
    rows.sort(key=lambda row: math.inf if row["epsilon"] is None else row["epsilon"])
    return {**{key: first[key] for key in budget}, "rows": rows}


def privacy_table(results: dict) -> str:
    lines = ["| setting | epsilon spent | noise multiplier | solver | A, replay classifier (%) | recognised (%) | "
             "worst audit AUC | copy rate |", "|---|---|---|---|---|---|---|---|"]
    for r in results["rows"]:
        spent = "–" if r["spent"] is None else f"{r['spent']:.2f}"
        noise = "–" if r["noise_multiplier"] is None else f"{r['noise_multiplier']:.3f}"
        lines.append(f"| {r['setting']} | {spent} | {noise} | {r['solver']} | {r['replay_classifier']:.2f} | "
                     f"{r['recognised']:.1f} | {r['worst_auc']:.3f} | {r['copy_rate']:.2%} |")
    names = list(dict.fromkeys(f"{a['part']}: {a['attack']}" for r in results["rows"] for a in r["attacks"]))
    lines += ["", "AUC of every attack (– where the part is not shipped):", "",
              "| setting | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for r in results["rows"]:
        by_name = {f"{a['part']}: {a['attack']}": f"{a['auc']:.3f}" for a in r["attacks"]}
        lines.append(f"| {r['setting']} | " + " | ".join(by_name.get(n, "–") for n in names) + " |")
    return "\n".join(lines)


def privacy_utility_plot(results: dict) -> bytes:
    """Replay-classifier accuracy and worst audit AUC against epsilon (no DP drawn at the right)."""
    import matplotlib.pyplot as plt

    rows = results["rows"]
    finite = [r["epsilon"] for r in rows if r["epsilon"] is not None]
    no_dp_at = 3 * max(finite) if finite else 1.0
    xs = [r["epsilon"] if r["epsilon"] is not None else no_dp_at for r in rows]
    figure, left = plt.subplots(figsize=(6, 3.6))
    left.plot(xs, [r["replay_classifier"] for r in rows], "o-", label="A, classifier on replay (%)")
    left.plot(xs, [r["recognised"] for r in rows], "s--", label="generated images recognised (%)")
    left.set_xscale("log")
    left.set_xlabel("epsilon (rightmost: no DP)")
    left.set_ylabel("%")
    right = left.twinx()
    right.plot(xs, [r["worst_auc"] for r in rows], "^:", color="tab:red", label="worst audit AUC")
    right.set_ylim(0.4, 1.0)
    right.set_ylabel("AUC")
    figure.legend(loc="lower center", fontsize=7, ncol=3)
    figure.tight_layout(rect=(0, 0.08, 1, 1))
    return png_bytes(figure)
