"""How fast replay is: images per second in process and over HTTP, and where an HTTP request's time goes.

In process is `Sampler.sample` (uint8 images left on the device). Over HTTP is
the real `genmem serve` in a subprocess on a loopback port, asked for
safetensors by `ReplayClient`, images decoded on the client's CPU. Each point
is warmed up, then timed repeatedly for a while, and the median is reported.
For the largest request the HTTP time is split into parts that are each
measured: sampling and encoding by the server (its Server-Timing header),
the rest of the server's answer, the transfer of the body, and decoding.
Each setting also checks the sampler's promise that a class's images do not
depend on the request: its first images alone equal those in the largest one.
Rows for BENCHMARKS.csv come from `csv_rows`.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from genmem.benchmarks.record import commit, machine
from genmem.client import ReplayClient, decode_samples
from genmem.memory import Memory
from genmem.replay import balanced_counts
from genmem.benchmarks.subprocess_server import serving

TARGETS = ("in process on an H100: at least 1,000,000 MNIST-size images/s",
           "over HTTP: at least 100,000 images/s in large requests",
           "on 2 idle CPU cores (10-task MNIST memory, auto): at least 25,000 images/s in process for requests of "
           "4,096 and 65,536; over HTTP at least 0.9 of that, 0.7 for requests of 256")
PARTS = ("sampling", "encoding", "rest of the server's answer", "transfer", "decoding")
SERVER_START_SECONDS = 180


PRECISIONS = {"cpu": ("auto", "float32"), "cuda": ("float16", "bfloat16", "float32")}


@dataclass(frozen=True)
class Setting:
    device: torch.device
    precision: str

    def __str__(self) -> str:
        return f"{self.device} {self.precision}"


@dataclass
class Point:
    setting: Setting
    size: int
    in_process: float  # seconds per request (median)
    http: float


def settings_for(devices: list[torch.device], precisions: list[str] | None = None) -> list[Setting]:
    """Per device, what `auto` serves and the exact float32 (the CPU); float16, bfloat16 and float32 (CUDA).
    precisions: only these, where the device has them."""
    return [Setting(device, precision) for device in devices for precision in PRECISIONS[device.type]
            if not precisions or precision in precisions]


def median_parts(measure: Callable[[], dict[str, float]], seconds: float) -> dict[str, float]:
    """Call `measure` once to warm up, then for `seconds` (3 times at least); the median of each named duration."""
    measure()
    runs = []
    deadline = time.perf_counter() + seconds
    while len(runs) < 3 or time.perf_counter() < deadline:
        runs.append(measure())
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


def elapsed(call: Callable[[], object]) -> dict[str, float]:
    start = time.perf_counter()
    call()
    return {"total": time.perf_counter() - start}


@contextlib.contextmanager
def served(memory: Path, setting: Setting, max_samples: int) -> Iterator[str]:
    """The real `genmem serve` for this setting; yields its URL once ready."""
    with serving(memory, ["--device", str(setting.device), "--precision", setting.precision,
                          "--max-samples", str(max_samples), "--watch-interval", "0"],
                 SERVER_START_SECONDS) as url:
        yield url


def http_parts(client: ReplayClient, counts: dict[int, int]) -> dict[str, float]:
    """One sample request over HTTP, its time split into measured parts (seconds)."""
    start = time.perf_counter()
    with client.http.stream("POST", "/genmem/sample", json=client.sample_request(counts)) as response:
        answered = time.perf_counter()  # the headers are here: the server has sampled and encoded
        body = response.read()
    received = time.perf_counter()
    decode_samples(body)
    decoded = time.perf_counter()
    server = {name: float(value) / 1e3 for name, value in
              (part.strip().split(";dur=") for part in response.headers["Server-Timing"].split(","))}
    return {"sampling": server["sample"], "encoding": server["encode"],
            "rest of the server's answer": answered - start - server["sample"] - server["encode"],
            "transfer": received - answered, "decoding": decoded - received, "total": decoded - start}


def in_process(memory: Path, setting: Setting, sizes: list[int], seconds: float,
               progress: Callable[[str], None]) -> tuple[dict[int, float], bool]:
    """Median seconds of `Sampler.sample` per request size, and whether a class's images were the same in requests
    of every size; the sampler is freed on return, before a server loads."""
    sampler = Memory(memory).sampler(device=setting.device, precision=setting.precision)
    labels = [c.label for c in sampler.classes]
    sync = torch.cuda.synchronize if setting.device.type == "cuda" else (lambda: None)
    times, first = {}, {}
    for size in sizes:
        counts = balanced_counts(labels, size, 0)
        times[size] = median_parts(lambda: elapsed(lambda: (sampler.sample(counts), sync())), seconds)["total"]
        first[size] = sampler.sample(counts)[0][:counts[labels[0]]].cpu()
        progress(f"{setting}, requests of {size:,}, in process: {size / times[size]:,.0f} images/s")
    alone = sampler.sample({labels[0]: max(len(images) for images in first.values())})[0].cpu()
    return times, all(torch.equal(images, alone[:len(images)]) for images in first.values())


def measure(memory: Path, settings: list[Setting], sizes: list[int], seconds: float,
            progress: Callable[[str], None] = lambda line: None
            ) -> tuple[list[Point], dict[Setting, dict], dict[Setting, bool]]:
    """Seconds per request in process and over HTTP for every setting and size, the HTTP time split for the largest
    size, and whether each setting's class images were the same whatever the request's size."""
    points, splits, same = [], {}, {}
    for setting in settings:
        local, same[setting] = in_process(memory, setting, sizes, seconds, progress)
        with served(memory, setting, max(sizes)) as url, ReplayClient(url) as client:
            labels = [c.label for c in client.classes]
            for size in sizes:
                counts = balanced_counts(labels, size, 0)
                remote = median_parts(lambda: elapsed(lambda: client.sample(counts)), seconds)["total"]
                points.append(Point(setting, size, local[size], remote))
                progress(f"{setting}, requests of {size:,}, over HTTP: {size / remote:,.0f} images/s")
            splits[setting] = median_parts(lambda: http_parts(client, balanced_counts(labels, max(sizes), 0)),
                                           seconds)
    return points, splits, same


def csv_rows(points: list[Point], memory: Path, command: str) -> list[dict]:
    """One BENCHMARKS.csv row per point and way (sampling-in-process, sampling-http); profile: size and precision."""
    manifest = Memory(memory).manifest()
    data = manifest["tasks"][0]["data"]["source"].split()[0].lower()
    per_task = {len(task["classes"]) for task in manifest["tasks"]}
    tasks = f"{len(manifest['tasks'])}x{per_task.pop()}" if len(per_task) == 1 else f"{len(manifest['tasks'])}"
    here = commit()
    return [{"data": data, "tasks": tasks, "method": f"sampling-{way}", "profile": f"{p.size} {p.setting.precision}",
             "metric": "images_per_s", "value": f"{p.size / took:.0f}", "joint": "", "seconds": f"{took:.6f}",
             "hardware": machine(p.setting.device), "commit": here, "seeds": "0", "command": command}
            for p in points for way, took in (("in-process", p.in_process), ("http", p.http))]


def report(points: list[Point], splits: dict[Setting, dict], same: dict[Setting, bool], sizes: list[int],
           others: float | None) -> str:
    """The markdown tables, the HTTP/in-process ratio, the time split, the size check, other processes' CPU share
    and the targets."""
    lines = ["| device | precision | images per request | in process (images/s) | over HTTP (images/s) | "
             "HTTP / in process |", "|---|---|---:|---:|---:|---:|"]
    for p in points:
        lines.append(f"| {p.setting.device} | {p.setting.precision} | {p.size:,} | {p.size / p.in_process:,.0f} | "
                     f"{p.size / p.http:,.0f} | {p.in_process / p.http:.2f} |")
    largest = max(sizes)
    lines += ["", f"Where the time of one HTTP request for {largest:,} images goes (median milliseconds; sampling and "
                  f"encoding as the server measured them, the rest as the client did):", "",
              "| device | precision | " + " | ".join(PARTS) + " | total |", "|---|---|" + "---:|" * (len(PARTS) + 1)]
    for setting, split in splits.items():
        cells = " | ".join(f"{split[part] * 1e3:,.1f}" for part in (*PARTS, "total"))
        lines.append(f"| {setting.device} | {setting.precision} | {cells} |")
    lines += ["", "HTTP / in process for the largest request: " + "; ".join(
        f"{p.setting}: {p.in_process / p.http:.2f}" for p in points if p.size == largest) + ".", "",
              "A class's images the same in requests of every size: " + "; ".join(
                  f"{setting}: {'yes' if ok else 'NO'}" for setting, ok in same.items()) + ".", "",
              "Other processes took " + ("an unknown share" if others is None else f"{others:.0%}") +
              " of the machine's CPU time during the run (more than a few per cent lowers every figure).", "",
              "Targets: " + "; ".join(TARGETS) + "."]
    return "\n".join(lines)
