"""Recording a benchmark: its headline figures as rows of BENCHMARKS.csv, its whole report as a dated section.

A number without its machine, command and commit cannot be compared or
reproduced, so every row and every section carries them. BENCHMARKS.csv holds
one row per headline figure (the results page, BENCHMARKS.md, is generated
from it: genmem.benchmarks.page); a rerun replaces the row of the same figure.
`record_section` writes a run's full report into a file of the experiments
log (docs/experiments/), replacing that section and leaving the others.
"""

from __future__ import annotations

import csv
import os
import re
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

HEADER = ("# Experiments\n\n"
          "Each section records the device, the exact command, the date and the commit it was measured on.\n")
# BENCHMARKS.csv: what was measured (data, tasks, method, profile, metric: value; joint training's figure in the
# same run), how long it took, where, on what code, with which seeds, and the command that reproduces it.
COLUMNS = ("data", "tasks", "method", "profile", "metric", "value", "joint", "seconds", "hardware", "commit", "seeds",
           "command")
KEY = ("data", "tasks", "method", "profile", "metric", "seeds")  # a row with the same key is the same figure


def machine(device: torch.device) -> str:
    """The GPU's name, or the CPU's model and core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M).group(1).strip()
    except (OSError, AttributeError):
        model = "unknown CPU"
    return f"{model}, {os.cpu_count()} cores"


def commit() -> str:
    """The commit of the genmem that runs (its checkout's, wherever the command was started), marked when the
    working tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", *args], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        return head + (" + uncommitted changes" if git("status", "--porcelain") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


def invoked_command() -> str:
    """The genmem command line this process was started with, quoted so that a shell runs it again."""
    return shlex.join(["genmem", *sys.argv[1:]])


def provenance(devices: list[str], command: str) -> str:
    """The lines that start a section: device, command, date, commit."""
    return "\n".join([f"- device: {'; '.join(devices)}", f"- command: `{command}`",
                      f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", f"- commit: {commit()}"])


class CpuWatch:
    """The share of the machine's CPU time that other processes took since it was made (Linux; None elsewhere).

    A benchmark is only as good as the idle machine under it; this makes a busy one show in the record.
    """

    def __init__(self):
        self.start = self._now()

    @staticmethod
    def _now() -> tuple[float, float, float] | None:
        try:
            fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        except OSError:
            return None
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
        mine = os.times()
        own = mine.user + mine.system + mine.children_user + mine.children_system  # children once waited for
        return time.monotonic(), busy, own

    def others_share(self) -> float | None:
        now = self._now()
        if self.start is None or now is None:
            return None
        wall, busy, own = (b - a for a, b in zip(self.start, now))
        return max(0.0, busy - own) / (wall * os.cpu_count())


def others_note(share: float | None) -> str:
    """The sentence a record carries about the rest of the machine's load (CpuWatch.others_share)."""
    return ("Other processes took " + ("an unknown share" if share is None else f"{share:.0%}") +
            " of the machine's CPU time during the run.")


def record_section(path: str | os.PathLike, title: str, body: str) -> None:
    """Write `## title` with `body` into the file at path, replacing that section if it is there."""
    path = Path(path)
    text = path.read_text() if path.exists() else HEADER
    section = f"## {title}\n\n{body.strip()}\n"
    existing = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.M | re.S)
    if existing.search(text):
        text = existing.sub(lambda _: section + "\n", text, count=1).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The rows of a BENCHMARKS.csv (none if it does not exist), as the strings it holds."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def record_rows(path: str | os.PathLike, rows: list[dict]) -> None:
    """Write `rows` into the CSV at path, replacing any row of the same figure (KEY); the file is replaced whole,
    so a run killed while writing leaves the previous file."""
    new = [{column: _cell(row.get(column)) for column in COLUMNS} for row in rows]
    fresh = {tuple(row[k] for k in KEY) for row in new}
    kept = [row for row in read_rows(path) if tuple(row.get(k, "") for k in KEY) not in fresh]
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept + new)
    os.replace(partial, path)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)
