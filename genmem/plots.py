"""PNG charts of a memory and of its evaluation: growth per task, confusion of a classifier."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

FIXED_REPLAY_GAN = 500_000  # parameters of MeRGAN's fixed-size 32x32 generator, the paper's comparison


def png_bytes(figure, footnote_room: float = 0.0) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed. footnote_room: the share of the height kept free at
    the bottom for text placed there with figure.text."""
    buffer = io.BytesIO()
    figure.tight_layout(rect=(0, footnote_room, 1, 1))
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


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
    return png_bytes(figure)


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
    return png_bytes(figure)
