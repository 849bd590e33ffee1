"""PNG charts of a protocol run (results.json from genmem.benchmarks.protocol): accuracy, growth, confusion.

Charts are titled by the data set the run used, not by the recipe it borrowed.
"""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from genmem.benchmarks.protocol import dgm_variant, run_title  # noqa: E402

FIXED_REPLAY_GAN = 500_000  # parameters of MeRGAN's fixed-size 32x32 generator, the paper's comparison
LABELS = {"dgm-solver": "DGM stored solver", "dgm-replay": "classifier + DGM replay",
          "dgr": "classifier + DGR replay", "mergan": "classifier + MeRGAN replay",
          "ewc": "classifier + EWC-M replay",
          "joint": "joint training (upper bound)", "finetune": "fine-tuning, no replay (lower bound)"}


def method_label(method: str, results: dict) -> str:
    """A method's legend entry; DGM's name its variant where runs of both are combined (dgma-replay), and the
    stored solver says how it was trained unless it is the default `real` one."""
    variant = dgm_variant(method, results)
    if variant is None or method in LABELS:
        label = LABELS.get(method, method)
    else:
        label = LABELS[f"dgm-{method.partition('-')[2]}"].replace("DGM", variant[:3].upper() + variant[3:])
    mode = results.get("gan_config", {}).get("solver", "real")
    return f"{label}, trained on replay" if variant and method.endswith("-solver") and mode == "replay" else label


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def accuracy_plot(results: dict) -> bytes:
    """A_t after every task for every method."""
    figure, axes = plt.subplots(figsize=(6.5, 4))
    for method, curve in results["accuracy"].items():
        axes.plot(range(1, len(curve) + 1), curve, marker="o", label=method_label(method, results))
    axes.set_xlabel("tasks learned (one class each)")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("A_t: mean per-class test accuracy (%)")
    axes.set_ylim(0, 101)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    axes.set_title(f"{run_title(results, display=True)}, profile {results['profile']['name']}", fontsize=10)
    return _png(figure)


def growth_plot(results: dict) -> bytes:
    """Generator size per task against a fixed replay GAN, and per layer what each task reserved, reused, left free."""
    growth = results["growth"]
    tasks = [g["task"] for g in growth]
    layers = len(growth[0]["capacity"])
    figure, axes = plt.subplots(1, 1 + layers, figsize=(4 + 3 * layers, 3.6))
    axes[0].plot(tasks, [g["parameters"]["total"] for g in growth], marker="o", label="genmem generator")
    axes[0].axhline(FIXED_REPLAY_GAN, color="grey", linestyle="--", label="fixed replay GAN (0.5 M)")
    axes[0].set_xlabel("task")
    axes[0].set_ylabel("parameters")
    axes[0].legend(fontsize=8)
    axes[0].set_title("generator size")
    unit = "units" if results["variant"] == "dgma" else "weights"
    for layer, ax in enumerate(axes[1:]):
        caps = [g["capacity"][layer] for g in growth]
        new, reused, free = ([c[k] for c in caps] for k in ("new", "reused", "free"))
        ax.bar(tasks, new, label="newly reserved")
        ax.bar(tasks, reused, bottom=new, label="reused")
        ax.bar(tasks, free, bottom=[a + b for a, b in zip(new, reused)], label="free", color="lightgrey")
        ax.set_title(f"layer {layer + 1} ({unit})")
        ax.set_xlabel("task")
        if layer == 0:
            ax.legend(fontsize=8)
    return _png(figure)


def confusion_plot(matrix: list[list[int]], names: list[str], title: str) -> bytes:
    figure, axes = plt.subplots(figsize=(4.8, 4.2))
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(names)), names, rotation=90 if max(map(len, names)) > 2 else 0)
    axes.set_yticks(range(len(names)), names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title, fontsize=9)
    top = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            if count:
                axes.text(j, i, count, ha="center", va="center", fontsize=6,
                          color="white" if count > top / 2 else "black")
    return _png(figure)
