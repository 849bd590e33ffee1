"""`genmem bench serve-load`: many clients against one `genmem serve`, optionally while the memory changes under it.

N client threads, each a ReplayClient (so with its retries), draw batches of
random classes as fast as the server answers, for a bounded time. Meanwhile,
optionally, `genmem learn-task` writes a new version of the memory and a byte
of an older version's weights is flipped on disk: the server must keep
answering, pick the new version up, and name the damaged one. The memory is
copied first; the one given is never changed. Reported: requests, errors by
kind, images per second, p50/p99 latency, and the server process's peak
resident memory (VmHWM).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genmem.client import ReplayClient
from genmem.memory import Memory
from genmem.subprocess_server import serving_process


@dataclass
class LoadResult:
    clients: int
    seconds: float
    requests: int = 0
    images: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    events: list[str] = field(default_factory=list)
    peak_rss_mib: float | None = None
    versions_served: set[str] = field(default_factory=set)


def peak_rss_mib(pid: int) -> float | None:
    """The peak resident memory of a process so far (Linux's VmHWM), in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def client_loop(url: str, batch: int, deadline: float, result: LoadResult, lock: threading.Lock, seed: int,
                retries: int) -> None:
    """One client: connect, then draw `batch` images of a random class until the deadline; count everything."""
    rng = random.Random(seed)
    try:
        replay = ReplayClient(url, retries=retries)
    except Exception as exc:  # a client that cannot connect is an error of the run, by kind
        with lock:
            result.errors[f"connect: {type(exc).__name__}"] += 1
        return
    labels = [c.label for c in replay.classes]
    with replay:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                images, _ = replay.sample({rng.choice(labels): batch}, seed=rng.randrange(2**31))
            except Exception as exc:
                with lock:
                    result.requests += 1
                    result.errors[f"{type(exc).__name__}: {str(exc)[:80]}"] += 1
                continue
            elapsed = time.perf_counter() - start
            with lock:
                result.requests += 1
                result.images += len(images)
                result.latencies.append(elapsed)
                result.versions_served.add(replay.version)


def run(memory: Path, clients: int, seconds: float, batch: int, learn_args: list[str] | None, damage: bool,
        retries: int = 5, progress=print) -> LoadResult:
    """Load a copy of `memory` served on a free port; see the module's docstring."""
    result = LoadResult(clients, seconds)
    with tempfile.TemporaryDirectory() as scratch:
        copy = Path(shutil.copytree(memory, Path(scratch) / Path(memory).name, symlinks=True))
        versions = Memory(copy).versions()
        options = ["--device", "cpu", "--watch-interval", "1"]
        with serving_process(copy, options) as (url, server):
            progress(f"serving a copy of {memory} ({versions[-1]}) at {url}; {clients} clients for {seconds:g} s")
            lock = threading.Lock()
            deadline = time.monotonic() + seconds
            threads = [threading.Thread(target=client_loop, args=(url, batch, deadline, result, lock, i, retries),
                                        daemon=True) for i in range(clients)]
            for thread in threads:
                thread.start()
            writer = None
            if learn_args is not None:
                writer = subprocess.Popen([sys.executable, "-m", "genmem.cli.main", "learn-task", str(copy),
                                           *learn_args, "--device", "cpu", "--quiet"], cwd=scratch,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                result.events.append(f"learn-task {' '.join(learn_args)} started at 0 s")
            if damage and len(versions) > 1:
                time.sleep(seconds / 3)
                flip_a_byte(copy / "versions" / versions[0] / "generator.safetensors")
                result.events.append(f"{versions[0]}'s weights damaged on disk at {seconds / 3:.0f} s")
            for thread in threads:
                thread.join()
            if writer is not None:
                output, _ = writer.communicate()
                status = "wrote " + Memory(copy).versions()[-1] if writer.returncode == 0 else \
                    f"failed ({output.strip().splitlines()[-1] if output.strip() else writer.returncode})"
                result.events.append(f"learn-task {status}")
            result.peak_rss_mib = peak_rss_mib(server.pid)
            with ReplayClient(url) as probe:
                info = probe.http.get("/genmem/info").json()
            result.events.append(f"after the run the server serves {info['version']}; damaged: "
                                 f"{', '.join(info['damaged']) or 'none'}")
    return result


def report(result: LoadResult, others_share: float | None) -> str:
    latencies = np.array(result.latencies) * 1e3 if result.latencies else np.array([np.nan])
    errors = sum(result.errors.values())
    rss = f"{result.peak_rss_mib:,.0f}" if result.peak_rss_mib is not None else "n/a"
    lines = [
        "| clients | seconds | requests | errors | images/s | p50 ms | p99 ms | server peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|",
        f"| {result.clients} | {result.seconds:g} | {result.requests:,} | {errors} | "
        f"{result.images / result.seconds:,.0f} | {np.percentile(latencies, 50):,.1f} | "
        f"{np.percentile(latencies, 99):,.1f} | {rss} |",
        "",
        "Errors by kind: " + ("; ".join(f"{kind} x{n}" for kind, n in result.errors.most_common()) or "none"),
        "",
        "During the run: " + "; ".join(result.events or ["nothing changed on disk"]) + ". Versions the clients "
        f"drew from: {', '.join(sorted(result.versions_served)) or 'none'}.",
    ]
    if others_share is not None:
        lines += ["", f"Other processes used {others_share:.0%} of the machine's CPU time during the run."]
    return "\n".join(lines)
