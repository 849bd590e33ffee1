"""Recording a benchmark in BENCHMARKS.md: one section per benchmark, saying where, how and on what code it ran;
and as rows of BENCHMARKS.csv.

A number without its machine, command and commit cannot be compared or
reproduced, so every section carries them; recording again replaces the
section and leaves the others as they are.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

CSV_COLUMNS = ("data", "tasks", "method", "profile", "metric", "value", "joint", "seconds", "hardware", "commit",
               "seeds", "command")
HEADER = ("# Benchmarks\n\n"
          "Each section records the device, the exact command, the date and the commit it was measured on.\n")


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
    """The checked-out commit, marked when the working tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", *args], capture_output=True, text=True,
                              check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        return head + (" + uncommitted changes" if git("status", "--porcelain") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


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


def append_rows(path: str | os.PathLike, rows: list[dict]) -> None:
    """Append rows (dicts with the CSV_COLUMNS) to a CSV file, writing the header line first if the file is new."""
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as file:
        writer = csv.DictWriter(file, CSV_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerows(rows)
