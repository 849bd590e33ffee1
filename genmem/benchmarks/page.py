"""The results page: BENCHMARKS.md's tables, generated from BENCHMARKS.csv so that readers and tools see one set
of figures.

BENCHMARKS.md is written by people around the tables; each table stands
between `<!-- table: NAME -->` and `<!-- end table -->`, and `refresh_page`
rewrites what is between them from the CSV (genmem.benchmarks.record). A
figure measured on several seeds is shown as its mean with the range and the
number of seeds; one seed says so.
"""

from __future__ import annotations

import os
import re
import shlex
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from genmem.benchmarks.record import read_rows
from genmem.errors import GenmemError

# The paper's Table 1 (A10, %) per data set and method; its DGR and MeRGAN rows are the paper's citations of them,
# scored by a classifier on generated images (not comparable to a replay-trained classifier on real test images).
PAPER_A10 = {"mnist": {"dgmw": 96.46, "dgma": 97.92, "joint": 98.10},
             "svhn": {"dgmw": 74.38, "dgma": 66.89, "joint": 84.82},
             "cifar10": {"dgmw": 51.70, "dgma": 50.80, "joint": 64.20}}
MARKER = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n).*?(<!-- end table -->)", re.S)


@dataclass(frozen=True)
class Figure:
    """One figure over the seeds it was measured on: the rows of BENCHMARKS.csv that differ only in `seeds`."""

    rows: list[dict[str, str]]

    @property
    def first(self) -> dict[str, str]:
        return self.rows[0]

    @property
    def hardware(self) -> str:
        """Every machine the figure's seeds ran on, in the CSV's order."""
        return "; ".join(dict.fromkeys(row["hardware"] for row in self.rows))

    def values(self, column: str = "value") -> list[float]:
        return [float(row[column]) for row in self.rows if row[column] != ""]

    def shown(self, column: str = "value", digits: int = 2) -> str:
        """The mean, and the range over seeds where there are several ('one seed' otherwise)."""
        values = self.values(column)
        if not values:
            return "–"
        mean = f"{statistics.fmean(values):,.{digits}f}"
        if len(values) == 1:
            return f"{mean} (one seed)"
        return f"{mean} ({min(values):,.{digits}f} to {max(values):,.{digits}f}, {len(values)} seeds)"


def figures(rows: list[dict[str, str]], keep: Callable[[dict[str, str]], bool]) -> list[Figure]:
    """The figures among `rows` that `keep` selects, in the CSV's order of their first seed."""
    grouped: dict[tuple, list[dict[str, str]]] = {}
    for row in rows:
        if keep(row):
            grouped.setdefault(tuple(row[k] for k in ("data", "tasks", "method", "profile", "metric")), []).append(row)
    return [Figure(group) for group in grouped.values()]


def paper_a10(row: dict[str, str]) -> str:
    """The paper's A10 beside a row of the same data set, protocol and DGM variant; '–' where it has none."""
    if row["tasks"] != "10x1" or row["metric"] != "A10":
        return "–"
    variant, _, figure_of = row["method"].partition("-")
    key = "joint" if row["method"] == "joint" else variant if figure_of in ("solver", "replay") else None
    figure = PAPER_A10.get(row["data"], {}).get(key)
    return "–" if figure is None else f"{figure:.2f}"


def markdown(header: list[str], lines: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(line) + " |" for line in lines])


def accuracy_table(rows: list[dict[str, str]]) -> str:
    """Class-incremental accuracy of every method at its data set's last task, beside joint training and the paper."""
    chosen = figures(rows, lambda r: r["metric"] in ("A10", "final") and "sampling" not in r["method"]
                     and "-dp-" not in r["method"])
    return markdown(["data", "tasks", "method", "profile", "accuracy at the end (%)", "joint, same run",
                     "paper", "minutes", "hardware", "reproduce"],
                    [[f.first["data"], f.first["tasks"], f.first["method"], f.first["profile"], f.shown(),
                      f.shown("joint"), paper_a10(f.first), _minutes(f), f.hardware,
                      f"`{f.first['command']}`"] for f in chosen])


def privacy_table(rows: list[dict[str, str]]) -> str:
    chosen = figures(rows, lambda r: "-dp-" in r["method"])
    return markdown(["data", "tasks", "method", "profile", "accuracy of a classifier on replay (%)", "minutes",
                     "hardware", "reproduce"],
                    [[f.first["data"], f.first["tasks"], f.first["method"], f.first["profile"], f.shown(), _minutes(f),
                      f.hardware, f"`{f.first['command']}`"] for f in chosen])


def speed_table(rows: list[dict[str, str]]) -> str:
    chosen = figures(rows, lambda r: r["metric"] == "images_per_s")
    return markdown(["method", "images per request", "images per second", "hardware", "reproduce"],
                    [[f.first["method"], f.first["profile"], f.shown(digits=0), f.hardware,
                      f"`{f.first['command']}`"] for f in chosen])


def bytes_table(rows: list[dict[str, str]]) -> str:
    """What a memory keeps for replay (its last version's generator and masks), the budget the buffer rows match."""
    chosen = figures(rows, lambda r: r["metric"] == "payload_bytes")
    return markdown(["data", "tasks", "memory", "profile", "bytes kept for replay", "hardware", "reproduce"],
                    [[f.first["data"], f.first["tasks"], f.first["method"], f.first["profile"],
                      f.shown(digits=0), f.hardware, f"`{f.first['command']}`"] for f in chosen])


TABLES: dict[str, Callable[[list[dict[str, str]]], str]] = {
    "accuracy": accuracy_table, "bytes": bytes_table, "privacy": privacy_table, "speed": speed_table}


def bytes_plots(rows: list[dict[str, str]], profile: str = "quick") -> dict[str, bytes]:
    """The page's plots of accuracy against the bytes kept for replay, one PNG per data set and split whose
    buffer was measured at several budgets on `profile` (any storage type), named bytes-DATA-TASKS.png."""
    from genmem.benchmarks.charts import accuracy_bytes_plot
    from genmem.benchmarks.footprint import points_of_rows

    plots = {}
    for data, tasks in dict.fromkeys((row["data"], row["tasks"]) for row in rows):
        points = points_of_rows(rows, data, tasks, profile)
        if sum(point.kind == "buffer" for point in points) > 2 and any(p.kind == "genmem" for p in points):
            title = f"{data} {tasks}, {profile} profile: accuracy against the bytes kept (BENCHMARKS.csv)"
            plots[f"bytes-{data}-{tasks}.png"] = accuracy_bytes_plot(points, title)
    return plots


def privacy_series(rows: list[dict[str, str]]) -> tuple[dict[str, list[tuple[float, list[float]]]], float | None]:
    """The `-dp-epsE` rows as the DP plot's lines, one per profile: (epsilon, accuracy of each seed) points; and
    the delta their commands name (None unless they all name the same one)."""
    chosen = figures(rows, lambda r: "-dp-eps" in r["method"])
    series: dict[str, list[tuple[float, list[float]]]] = {}
    for figure in chosen:
        epsilon = float(figure.first["method"].rpartition("-dp-eps")[2])
        series.setdefault(f"genmem DGMw ({figure.first['profile']})", []).append((epsilon, figure.values()))
    deltas = {_option(row["command"], "--delta") for figure in chosen for row in figure.rows}
    return series, float(deltas.pop()) if len(deltas) == 1 and None not in deltas else None


def privacy_plot(rows: list[dict[str, str]]) -> dict[str, bytes]:
    """The page's plot of DP accuracy against epsilon (dp-accuracy-against-epsilon.png), or nothing without DP rows."""
    from genmem.benchmarks.privacy import accuracy_epsilon_plot

    series, delta = privacy_series(rows)
    return {"dp-accuracy-against-epsilon.png": accuracy_epsilon_plot(series, delta)} if series else {}


def page_plots(rows: list[dict[str, str]]) -> dict[str, bytes]:
    """Every plot of the results page, by file name."""
    return bytes_plots(rows) | privacy_plot(rows)


def refresh_page(page: str | os.PathLike, table_csv: str | os.PathLike) -> str:
    """The page's text with every marked table regenerated from the CSV (the file is not written)."""
    text = Path(page).read_text()
    rows = read_rows(table_csv)

    def regenerate(match: re.Match) -> str:
        name = match["name"]
        if name not in TABLES:
            raise GenmemError(f"{page} marks a table {name!r} that genmem does not generate: use one of "
                              f"{', '.join(TABLES)}")
        return match.group(1) + TABLES[name](rows) + "\n" + match.group(3)

    return MARKER.sub(regenerate, text)


def _option(command: str, name: str) -> str | None:
    """The value a row's command gives option `name`, None where it gives none."""
    words = shlex.split(command)
    return words[words.index(name) + 1] if name in words[:-1] else None


def _minutes(figure: Figure) -> str:
    seconds = figure.values("seconds")
    return f"{statistics.fmean(seconds) / 60:.1f}" if seconds else "–"
