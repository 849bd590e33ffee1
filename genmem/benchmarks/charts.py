"""PNG charts of a protocol run (results.json from genmem.benchmarks.protocol): A_t of every method, and the
accuracy of the replay methods against the bytes they keep (genmem.benchmarks.footprint).

Charts are titled by the data set the run used, not by the recipe it borrowed.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from matplotlib.ticker import MaxNLocator  # noqa: E402

from genmem.benchmarks.footprint import Point  # noqa: E402
from genmem.benchmarks.methods import REGISTRY, method_class, registered_name  # noqa: E402
from genmem.benchmarks.results import dgm_variant, run_title, setting  # noqa: E402
from genmem.plots import png_bytes  # noqa: E402


def method_label(method: str, results: dict) -> str:
    """A method's legend entry (its class's label; a name no method is registered under stands for itself);
    DGM's name its variant where runs of both are combined (dgma-replay), and the stored solver says how it was
    trained unless it is the default `real` one."""
    variant = dgm_variant(method, results)
    if method in REGISTRY:
        label = method_class(method).label
    elif registered_name(method) and not variant:  # an instance of a method: the buffer at one of its scales
        label = method_class(registered_name(method)).label_of(method)
    elif variant:  # dgma-replay of combined runs: DGM's label, named by its variant
        label = method_class(f"dgm-{method.partition('-')[2]}").label.replace("DGM", variant[:3].upper() + variant[3:])
    else:
        label = method
    mode = results.get("gan_config", {}).get("solver", "real")
    return f"{label}, trained on replay" if variant and method.endswith("-solver") and mode == "replay" else label


def accuracy_plot(results: dict) -> bytes:
    """A_t after every task for every method."""
    figure, axes = plt.subplots(figsize=(6.5, 4))
    for method, curve in results["accuracy"].items():
        axes.plot(range(1, len(curve) + 1), curve, marker="o", label=method_label(method, results))
    per_task = setting(results, "classes_per_task")
    axes.set_xlabel("tasks learned (one class each)" if per_task == 1 else f"tasks learned ({per_task} classes each)")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylabel("A_t: mean per-class test accuracy (%)")
    axes.set_ylim(0, 101)
    axes.grid(alpha=0.3)
    axes.legend(loc="best", fontsize=8)
    axes.set_title(f"{run_title(results, display=True)}, profile {results['profile']['name']}", fontsize=10)
    return png_bytes(figure)


MARKERS = {"genmem": "*", "hybrid": "D", "buffer": "o"}


def accuracy_bytes_plot(points: list[Point], title: str) -> bytes:
    """Accuracy after the last task against the bytes each replay method keeps, bytes on a log scale: the buffer
    at its scales as a line, genmem's memories and the hybrids as points."""
    figure, axes = plt.subplots(figsize=(6.5, 4))
    buffers = sorted((p for p in points if p.kind == "buffer"), key=lambda p: p.bytes)
    if buffers:
        axes.plot([p.bytes for p in buffers], [p.accuracy for p in buffers], marker=MARKERS["buffer"],
                  label="buffer of real images")
        for point in buffers:
            axes.annotate(point.method, (point.bytes, point.accuracy), fontsize=7, textcoords="offset points",
                          xytext=(4, -10))
    for point in (p for p in points if p.kind != "buffer"):
        axes.scatter([point.bytes], [point.accuracy], marker=MARKERS[point.kind], s=90 if point.kind == "genmem"
                     else 40, label=point.method, zorder=3)
    axes.set_xscale("log")
    axes.set_xlabel("bytes kept for replay (log scale)")
    axes.set_ylabel("accuracy after the last task (%)")
    axes.grid(alpha=0.3, which="both")
    axes.legend(loc="best", fontsize=8)
    axes.set_title(title, fontsize=10)
    return png_bytes(figure)
