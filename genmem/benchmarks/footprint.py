"""What the methods of protocol runs keep, in bytes, beside their accuracy at the end: genmem's memory against a
buffer of real images at several budgets (genmem.benchmarks.methods.buffer) and DGM with real images mixed in
(methods.hybrid), from one run's results.json or from the figures of BENCHMARKS.csv. The plot is
genmem.benchmarks.charts.accuracy_bytes_plot.

A method is named here as BENCHMARKS.csv names it (genmem.benchmarks.rows):
DGM's by the run's variant (dgmw-replay, dgma-hybrid-k20), a buffer sized by a
memory other than the default by that memory (dgma-buffer-x2).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

from genmem.artifact import MASKS_FILE, WEIGHTS_FILE

DEFAULT_MEMORY = "dgmw"  # BENCHMARKS.csv's name of the default variant and architecture's memory (rows.dgm_key)


@dataclass(frozen=True)
class Point:
    method: str
    kind: str  # "genmem", "buffer" or "hybrid"
    bytes: int  # what it keeps for replay after the last task: DGM's payload, the real images, or both
    accuracy: float  # A_t after the last task
    images_per_class: list[int] | None  # real images kept per class after the last task; None: none
    budget: int | None = None  # a buffer's: what it may keep (more than it keeps when its classes run out of images)


def payload_bytes(results: dict) -> int | None:
    """The bytes the run's last DGM version stores for replay (generator and masks); None without DGM."""
    sizes = results.get("storage_bytes")
    return sizes[WEIGHTS_FILE] + sizes[MASKS_FILE] if sizes else None


def memory_points(results: dict) -> list[Point]:
    """A run's replay methods at the bytes they keep: dgm-replay, every buffer and every hybrid it ran."""
    payload, variant = payload_bytes(results), results["variant"]
    buffers, hybrids = results.get("buffers", {}), results.get("hybrid", {})
    points = []
    for method, curve in results["accuracy"].items():
        if method == "dgm-replay" and payload is not None:
            points.append(Point(f"{variant}-replay", "genmem", payload, curve[-1], None))
        elif method in buffers:
            last = buffers[method]["tasks"][-1]
            points.append(Point(method, "buffer", last["bytes"], curve[-1], last["images_per_class"],
                                last["budget_bytes"]))
        elif method in hybrids:
            kept = hybrids[method]
            points.append(Point(f"{variant}-{method}", "hybrid", payload + kept["real_bytes"], curve[-1],
                                kept["images_per_class"]))
    return points


def points_of_runs(runs: list[dict]) -> list[Point]:
    """The points of several runs of one data set (say DGMw with buffers, and DGMa); a name several runs hold is
    taken from the first (combine runs of one data set, profile and seed: genmem.benchmarks.results)."""
    points: dict[str, Point] = {}
    for results in runs:
        for point in memory_points(results):
            points.setdefault(point.method, point)
    return list(points.values())


def bytes_table(points: list[Point]) -> str:
    """Bytes kept, as a multiple of genmem's (the first genmem point's), a buffer's budget, real images per class,
    and accuracy."""
    reference = next((p.bytes for p in points if p.kind == "genmem"), None)
    lines = ["| method | bytes kept | x genmem's | budget | real images per class | accuracy at the end (%) |",
             "|---|---|---|---|---|---|"]
    for point in sorted(points, key=lambda p: p.bytes):
        times = f"{point.bytes / reference:.2f}" if reference else "–"
        per_class = point.images_per_class
        images = "–" if not per_class else (f"{min(per_class)}" if min(per_class) == max(per_class)
                                            else f"{min(per_class)} to {max(per_class)}")
        budget = "–" if point.budget is None else f"{point.budget:,}"
        lines.append(f"| {point.method} | {point.bytes:,} | {times} | {budget} | {images} | {point.accuracy:.2f} |")
    return "\n".join(lines)


def points_of_rows(rows: list[dict[str, str]], data: str, tasks: str, profile: str) -> list[Point]:
    """BENCHMARKS.csv's figures of one data set and split on one budget, whatever the storage type, as points (means
    over seeds): DGM's replay classifier at its payload's bytes, and each buffer at its budget, S times the payload of
    the memory it ran beside (buffer-xS beside DGMw's, dgma-buffer-xS beside DGMa's). Runs of one storage type keep
    the buffer budgets of that payload."""
    def unstored(row: dict[str, str]) -> str:  # the profile without the storage type it names (quick, float32 storage)
        return re.sub(r", \w+ storage$", "", row["profile"])

    mine = [row for row in rows if (row["data"], row["tasks"]) == (data, tasks) and unstored(row) == profile]
    grouped: dict[tuple[str, str, str], list[float]] = {}
    for row in mine:
        if row["metric"] == "payload_bytes" or row["metric"] == "final" or re.fullmatch(r"A\d+", row["metric"]):
            grouped.setdefault((row["method"], row["profile"], row["metric"]), []).append(float(row["value"]))
    mean = {key: statistics.fmean(values) for key, values in grouped.items()}
    payload = {(method, stored): value for (method, stored, metric), value in mean.items()
               if metric == "payload_bytes"}
    points = []
    for (method, stored, metric), accuracy in mean.items():
        variant, (memory, scale) = method.removesuffix("-replay"), _buffer_scale(method)
        if variant != method and (variant, stored) in payload:
            points.append(Point(f"{method} ({stored})", "genmem", round(payload[variant, stored]), accuracy, None))
        elif scale is not None and (memory, stored) in payload:
            kept = round(scale * payload[memory, stored])
            points.append(Point(method, "buffer", kept, accuracy, None, budget=kept))
    return points


def _buffer_scale(method: str) -> tuple[str, float | None]:
    """The memory whose payload a buffer's budget multiplies (dgma of dgma-buffer-x2, else dgmw) and S of a
    buffer-xS method (1 for buffer); S is None for any other method."""
    memory, _, name = method.rpartition("buffer")
    memory = memory.removesuffix("-") or DEFAULT_MEMORY
    if name == "":
        return memory, 1.0
    return memory, float(name.removeprefix("-x")) if name.startswith("-x") else None
