"""Privacy against utility, measured as the field measures it: one memory per epsilon and seed, each tested and
audited.

For every setting (an epsilon, or no DP) and seed, one memory learns one class
per task with genmem's DP defaults at its epsilon (genmem.private.dp_config;
the critic's loss and the batch size can be chosen), holding a share of each
task's images out for the audit,
then:

    accuracy     a downstream classifier trained only on generated images, tested on the real test set
                 (DPImageBench's protocol, Gao et al. CCS 2025): a fixed architecture (genmem.nets.Classifier,
                 32 wide: three 5x5 stride-2 convolutions, BatchNorm, LeakyReLU, a linear head), trained on
                 SYNTHETIC_PER_CLASS generated images per class; its hyperparameters (CLASSIFIER_GRID) are
                 chosen by accuracy on a held-out split of other generated images, never on the test set
    Fréchet      the Fréchet distance between each class's generated and real training images in the
                 features of genmem.quality's judge (a classifier trained on the real training images, fixed
                 seed), averaged over classes; with the judge's accuracy on the generated images (recognised)
    worst AUC    the membership audit's highest AUC over every attack on every shipped part (genmem.audit),
                 members against the held-out images

`csv_rows` turns the DP settings' accuracies into BENCHMARKS.csv rows, one per seed.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from genmem.audit import HOLDOUT, audit
from genmem.benchmarks.profiles import named_for_storage
from genmem.benchmarks.results import describe_data
from genmem.benchmarks.rows import data_key
from genmem.classifier import ClassifierConfig, output_targets, predict, shuffled_batches, train_classifier
from genmem.config import TrainingConfig
from genmem.data import ImageSet, fit_images
from genmem.errors import GenmemError
from genmem.evaluate import evaluate_model, images_of_classes
from genmem.memory import Memory
from genmem.plots import png_bytes
from genmem.presets import paper_config
from genmem.private import dp_config
from genmem.quality import class_quality, mean_quality, train_judge

IMAGE_SIZE = 32
SYNTHETIC_PER_CLASS = 6000  # as many generated images per class as MNIST has real ones (DPImageBench's 60,000)
VALIDATION_PER_CLASS = 1000  # the held-out split of generated images that chooses the classifier's settings
CLASSIFIER_EPOCHS = 3.0
JUDGE = ClassifierConfig(epochs=2.0)  # genmem.quality's judge of the replay, trained on the real training images
CLASSIFIER_GRID = tuple(ClassifierConfig(lr=lr, augment=augment, epochs=CLASSIFIER_EPOCHS)
                        for lr in (1e-3, 3e-3) for augment in ("", "translation"))
# DPImageBench (Gao et al., CCS 2025), MNIST, accuracy (%) of its fixed classifier trained on synthetic images.
DPIMAGEBENCH_MNIST = {"DPDM": {10.0: 97.7, 1.0: 89.2}, "DP-MERF": {10.0: 81.3, 1.0: 80.3},
                      "GS-WGAN": {10.0: 75.3, 1.0: 72.4}}
PROFILE = "dp"  # the CSV rows' profile: genmem's DP defaults (genmem.private.dp_config)
BUDGET_KEYS = ("data", "classes", "images_per_class", "epochs", "holdout", "delta", "synthetic_per_class",
               "storage_dtype")


# The DP settings a run can choose (bench privacy's options) and how a setting's name spells one that differs
# from genmem's default at its epsilon.
NAMED_SETTINGS = {"dp_loss": "{} critic", "batch_size": "batch {}"}


def named_settings(training: dict, epsilon: float) -> str:
    """', logistic critic, batch 512' for the settings of NAMED_SETTINGS in `training` that differ from genmem's DP
    defaults at `epsilon` (which go unnamed): the suffix of a setting's and a profile's name."""
    defaults = dp_config(epsilon).to_dict()
    return "".join(f", {label.format(training[key])}" for key, label in NAMED_SETTINGS.items()
                   if key in training and training[key] != defaults[key])


def setting_name(epsilon: float | None, training: dict | None = None) -> str:
    """'no DP', 'epsilon 4', or with settings other than the defaults 'epsilon 4, wasserstein critic'."""
    return "no DP" if epsilon is None else f"epsilon {epsilon:g}{named_settings(training or {}, epsilon)}"


def row_training(row: dict) -> dict:
    """The settings a row's memory learned with; runs from before they were recorded used the Wasserstein critic,
    TrainingConfig's default."""
    return {"dp_loss": TrainingConfig.dp_loss, **row.get("training", {})}


def task_config(epsilon: float | None, delta: float, epochs: int | None,
                storage_dtype: str = TrainingConfig.storage_dtype, dp_loss: str | None = None,
                batch_size: int | None = None) -> TrainingConfig:
    """What every task of a setting learns with: genmem's DP defaults at epsilon, with the critic's loss
    `dp_loss` and `batch_size` where given, or without DP genmem's own defaults and its `real` solver; its
    generator stored in `storage_dtype`."""
    if epsilon is None:
        config = paper_config("mnist", "dgmw", epochs=epochs or dp_config(1.0).epochs, solver="real")
    else:
        config = dp_config(epsilon, dp_delta=delta, dp_loss=dp_loss, batch_size=batch_size)
    return replace(config, epochs=epochs or config.epochs, storage_dtype=storage_dtype)


def synthetic_split(memory: Memory, classes: list[int], per_class: int, seed: int, device
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """per_class generated images of every class (uint8, on the CPU) and their labels, drawn with `seed`."""
    images, labels = memory.sampler(device=device).sample({label: per_class for label in classes}, seed=seed)
    return images.cpu(), labels


def downstream_accuracy(memory: Memory, test: ImageSet, classes: list[int], per_class: int, device,
                        seed: int = 0) -> dict:
    """Train the fixed classifier on generated images with every setting of CLASSIFIER_GRID, keep the one that
    classifies a held-out split of other generated images best, and test that one alone on the real test set."""
    train_images, train_labels = synthetic_split(memory, classes, per_class, 2 * seed, device)
    held_images, held_labels = synthetic_split(memory, classes, max(1, min(per_class, VALIDATION_PER_CLASS)),
                                               2 * seed + 1, device)
    outputs = {label: i for i, label in enumerate(classes)}
    targets = output_targets(train_labels, outputs)
    best = None
    for config in CLASSIFIER_GRID:
        config = replace(config, seed=seed)
        steps = math.ceil(config.epochs * len(train_images) / config.batch_size)
        model = train_classifier(shuffled_batches(train_images, targets, config.batch_size, config.seed), steps,
                                 len(classes), train_images.shape[1], train_images.shape[2], config, device)
        held_out = 100.0 * float((torch.tensor(classes)[predict(model, held_images, device)] == held_labels)
                                 .float().mean())
        if best is None or held_out > best[0]:
            best = (held_out, config, model)
    held_out, config, model = best
    names = {c.label: c.name for c in memory.sampler().classes}
    images, true = images_of_classes(classes, names, test, train_images.shape[1], train_images.shape[2])
    score = evaluate_model(model, classes, images, true, device)
    return {"accuracy": score.average, "per_class": {str(k): v for k, v in score.per_class.items()},
            "chosen": {"lr": config.lr, "augment": config.augment, "epochs": config.epochs},
            "held_out_accuracy": held_out}


def real_reference(data: ImageSet, test: ImageSet, classes: list[int], device) -> float:
    """The fixed classifier (CLASSIFIER_GRID's first settings) trained on the real training images of every
    class at once: what the same classifier reaches without privacy or replay (the rows' `joint`)."""
    config = CLASSIFIER_GRID[0]
    outputs = {label: i for i, label in enumerate(classes)}
    steps = math.ceil(config.epochs * len(data.labels) / config.batch_size)
    batches = shuffled_batches(data.images, output_targets(data.labels, outputs), config.batch_size, config.seed)
    model = train_classifier(batches, steps, len(classes), data.images.shape[1], IMAGE_SIZE, config, device)
    return evaluate_model(model, classes, *images_of_classes(classes, data.class_names, test, data.images.shape[1],
                                                             IMAGE_SIZE), device).average


def measure_memory(memory: Memory, data: ImageSet, test: ImageSet, classes: list[int], judge, synthetic: int,
                   seed: int, device) -> dict:
    """The downstream accuracy, the judge's Fréchet distance and recognition, and the audit of one memory."""
    downstream = downstream_accuracy(memory, test, classes, synthetic, device, seed)
    generated, labels = synthetic_split(memory, classes, min(synthetic, VALIDATION_PER_CLASS), 2 * seed + 1, device)
    quality = mean_quality(class_quality(judge, classes, generated, labels, data.images, data.labels, device))
    record, _ = audit(memory, data, HOLDOUT, samples_per_class=1000, device=device)
    return {**downstream, "frechet": quality.frechet, "recognised": quality.judge_accuracy,
            "worst_auc": record["worst_auc"], "attacks": record["attacks"],
            "copy_rate": record["copy_rate"]["rate"], "solver": record["solver"]}


def run_privacy(train: ImageSet, test: ImageSet, out_dir: Path, epsilons: list[float | None], *, num_tasks: int,
                images_per_class: int | None = None, epochs: int | None = None, holdout: float = 0.1,
                delta: float = 1e-5, seeds: int = 1, first_seed: int = 0,
                synthetic_per_class: int = SYNTHETIC_PER_CLASS, storage_dtype: str = TrainingConfig.storage_dtype,
                dp_loss: str | None = None, batch_size: int | None = None, provenance: dict | None = None,
                data_record: dict | None = None, device="cpu", progress: bool = True) -> dict:
    """Learn, test and audit one memory per epsilon (None: no DP) and seed (first_seed onwards, so that seeds can
    learn in separate processes and be merged by `combine_privacy`); results.json after each.

    provenance: {"hardware", "commit", "command"}, copied into every row (for `csv_rows`, also after
    `combine_privacy` merged runs of several machines); data_record: the data set as `describe_data` states it from
    the source the user named (default: from `train`'s display name, which names the rows only for folders
    and files)."""
    classes = sorted(train.class_names)[:num_tasks]
    data = train.select(classes).first_per_class(images_per_class)
    data = ImageSet(fit_images(data.images, data.images.shape[1], IMAGE_SIZE, data.source), data.labels,
                    data.class_names, data.source)
    judge = train_judge(data.images, data.labels, classes, JUDGE, device)
    results = {"data": data_record or describe_data(train.source), "classes": classes,
               "images_per_class": images_per_class, "epochs": epochs, "holdout": holdout, "delta": delta,
               "synthetic_per_class": synthetic_per_class, "storage_dtype": storage_dtype,
               "joint": real_reference(data, test, classes, device), "rows": []}
    for epsilon in epsilons:
        config = task_config(epsilon, delta, epochs, storage_dtype, dp_loss, batch_size)
        for seed in range(first_seed, first_seed + seeds):
            memory = Memory(out_dir / (f"{'no-dp' if epsilon is None else f'eps-{epsilon:g}'}-seed-{seed}"))
            started = time.perf_counter()
            for task, label in enumerate(classes):
                memory.learn_task(data, [label], config=replace(config, seed=1000 * seed + task), device=device,
                                  image_size=IMAGE_SIZE, progress=progress, holdout=holdout)
            seconds = time.perf_counter() - started
            privacy = [t["privacy"] for t in memory.manifest()["tasks"]]
            row = {"setting": setting_name(epsilon, config.to_dict()), "epsilon": epsilon, "seed": seed,
                   "seconds": round(seconds, 1), **(provenance or {}),
                   "spent": max((p["epsilon"] for p in privacy if p), default=None),
                   "noise_multiplier": privacy[0]["noise_multiplier"] if privacy[0] else None,
                   "training": {k: v for k, v in config.to_dict().items() if k != "seed"},
                   **measure_memory(memory, data, test, classes, judge, synthetic_per_class, seed, device)}
            results["rows"].append(row)
            if progress:
                print(json.dumps({k: v for k, v in row.items() if k not in ("attacks", "training")}), flush=True)
            save_privacy(results, out_dir)  # after every memory: a run stopped part way keeps what it finished
    return results


def save_privacy(results: dict, out_dir: Path) -> None:
    """results.json and privacy-utility.png in out_dir."""
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    (out_dir / "privacy-utility.png").write_bytes(privacy_utility_plot(results))


def combine_privacy(runs: list[dict]) -> dict:
    """One table from runs of the same budget that learned other settings (say one epsilon per GPU process)."""
    first = runs[0]
    for run in runs[1:]:
        differs = [key for key in BUDGET_KEYS if run.get(key) != first.get(key)]
        if differs:
            raise GenmemError(f"privacy runs with other {', '.join(differs)} cannot share a table; combine runs "
                              f"of one budget")
    # settings renamed by the defaults of today: runs from before a default changed merge with the runs of its setting
    rows = [{**row, "setting": setting_name(row["epsilon"], row_training(row))} for run in runs for row in run["rows"]]
    keys = [(row["setting"], row.get("seed", 0)) for row in rows]
    twice = sorted({f"{setting}, seed {seed}" for setting, seed in keys if keys.count((setting, seed)) > 1})
    if twice:
        raise GenmemError(f"two runs hold the same setting ({'; '.join(twice)}); combine runs of different "
                          f"settings or seeds")
    rows.sort(key=lambda row: (math.inf if row["epsilon"] is None else row["epsilon"], row["setting"],
                               row.get("seed", 0)))
    return {**{key: first.get(key) for key in BUDGET_KEYS}, "joint": first.get("joint"), "rows": rows}


def by_setting(results: dict) -> list[tuple[str, float | None, list[dict]]]:
    """The rows grouped by setting, in the order they appear: (name, epsilon, rows of its seeds)."""
    groups: dict[str, list[dict]] = {}
    for row in results["rows"]:
        groups.setdefault(row["setting"], []).append(row)
    return [(name, rows[0]["epsilon"], rows) for name, rows in groups.items()]


def spread(values: list[float], digits: int = 2) -> str:
    """'mean ± sample standard deviation', or the one value."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def privacy_table(results: dict) -> str:
    lines = ["| setting | seeds | epsilon spent | noise multiplier | accuracy (%) | Fréchet distance | recognised (%) "
             "| worst audit AUC | copy rate |", "|---|---|---|---|---|---|---|---|---|"]
    for name, _, rows in by_setting(results):
        spent = "–" if rows[0]["spent"] is None else f"{max(r['spent'] for r in rows):.2f}"
        noise = "–" if rows[0]["noise_multiplier"] is None else f"{rows[0]['noise_multiplier']:.3f}"
        lines.append(f"| {name} | {len(rows)} | {spent} | {noise} | {spread([r['accuracy'] for r in rows])} | "
                     f"{spread([r['frechet'] for r in rows], 3)} | {spread([r['recognised'] for r in rows], 1)} | "
                     f"{max(r['worst_auc'] for r in rows):.3f} | {max(r['copy_rate'] for r in rows):.2%} |")
    names = list(dict.fromkeys(f"{a['part']}: {a['attack']}" for r in results["rows"] for a in r["attacks"]))
    lines += ["", "AUC of every attack, the highest over seeds (– where the part is not shipped):", "",
              "| setting | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for name, _, rows in by_setting(results):
        worst = {n: max((a["auc"] for r in rows for a in r["attacks"] if f"{a['part']}: {a['attack']}" == n),
                        default=None) for n in names}
        lines.append(f"| {name} | " + " | ".join("–" if v is None else f"{v:.3f}" for v in worst.values()) + " |")
    return "\n".join(lines)


def csv_rows(results: dict) -> list[dict]:
    """BENCHMARKS.csv rows of the DP settings, one per seed: the downstream accuracy as A<tasks>, `joint` the
    fixed classifier trained on the real images (`real_reference`), `seconds` the memory's learning time. The
    profile names settings and a storage type other than the defaults (runs from before the type was recorded
    stored float32)."""
    tasks = len(results["classes"])
    stored = results.get("storage_dtype") or "float32"
    joint = None if results.get("joint") is None else round(results["joint"], 2)
    data = data_key(results) if results.get("data") else "mnist"  # runs from before the key was recorded: MNIST
    return [{"data": data, "tasks": f"{tasks}x1", "method": f"dgmw-replay-dp-eps{row['epsilon']:g}",
             "profile": named_for_storage(PROFILE + named_settings(row_training(row), row["epsilon"]), stored),
             "metric": f"A{tasks}", "value": round(row["accuracy"], 2),
             "joint": joint, "seconds": row["seconds"], "hardware": row.get("hardware"), "commit": row.get("commit"),
             "seeds": row["seed"], "command": row.get("command")}
            for row in results["rows"] if row["epsilon"] is not None]


def privacy_utility_plot(results: dict) -> bytes:
    """One run's downstream accuracy against epsilon, a line for the defaults and one per other choice of settings,
    with its no-DP setting as a line if it learned one."""
    series: dict[str, list[tuple[float, list[float]]]] = {}
    public = []
    for _, epsilon, rows in by_setting(results):
        if epsilon is None:
            public.append(statistics.mean(r["accuracy"] for r in rows))
        else:
            label = f"genmem (DGMw{named_settings(row_training(rows[0]), epsilon)})"
            series.setdefault(label, []).append((epsilon, [r["accuracy"] for r in rows]))
    return accuracy_epsilon_plot(series, results["delta"], public[0] if public else None)


def accuracy_epsilon_plot(series: dict[str, list[tuple[float, list[float]]]], delta: float | None,
                          no_dp: float | None = None) -> bytes:
    """Accuracy against epsilon of each series (its points' mean and range over seeds), DPImageBench's MNIST
    figures beside them; `no_dp`, if given, is drawn as a line."""
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    # colours other than DPImageBench's, repeated: zip must never drop a series
    colors = itertools.cycle(("tab:blue", "tab:purple", "tab:brown", "tab:cyan", "tab:pink", "tab:olive", "tab:gray"))
    for (label, points), color in zip(series.items(), colors):
        points = sorted(points)
        means = [statistics.mean(values) for _, values in points]
        low = [mean - min(values) for mean, (_, values) in zip(means, points)]
        high = [max(values) - mean for mean, (_, values) in zip(means, points)]
        axes.errorbar([epsilon for epsilon, _ in points], means, yerr=[low, high], fmt="o-", capsize=3, color=color,
                      label=label)
    others = zip(DPIMAGEBENCH_MNIST.items(), "s^v", ("tab:red", "tab:orange", "tab:green"))
    for (name, figures), marker, color in others:
        points = sorted(figures.items())
        axes.plot([e for e, _ in points], [a for _, a in points], marker + "--", alpha=0.7, color=color,
                  label=f"{name}*")
    if no_dp is not None:
        axes.axhline(no_dp, color="grey", ls=":", label="genmem, no DP")
    axes.set_xscale("log")
    axes.set_xlabel("epsilon (per task)" if delta is None else "epsilon (per task; delta %g)" % delta)
    axes.set_ylabel("accuracy on the real test set (%)")
    axes.legend(fontsize=7, loc="best")
    figure.text(0.01, 0.01, "* DPImageBench (Gao et al., CCS 2025), MNIST, its own fixed classifier.\n"
                            "genmem: one digit per task, a classifier trained on generated images only.", fontsize=6)
    return png_bytes(figure, footnote_room=0.07)
