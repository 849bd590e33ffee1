"""PNG charts of a protocol run (results.json from genmem.benchmarks.protocol): A_t of every method.

Charts are titled by the data set the run used, not by the recipe it borrowed.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from genmem.benchmarks.protocol import dgm_variant, run_title  # noqa: E402
from genmem.plots import png_bytes  # noqa: E402

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
    return png_bytes(figure)
