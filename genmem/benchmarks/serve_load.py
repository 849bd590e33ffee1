"""`genmem bench serve-load`: many clients against one `genmem serve`, optionally while the memory changes under it.

N client threads, each a ReplayClient (so with its retries), draw batches of
random classes as fast as the server answers, for a bounded time. Meanwhile,
optionally, `genmem learn-task` writes a new version of the memory, and a
third of the way in a damaged version appears on disk (a copy of the newest
with a flipped byte, as the next version) and a byte of the oldest version's
weights is flipped: the server must keep answering, skip the damaged version,
pick the learned one up, and name the damage. The memory is copied first; the
one given is never changed. Reported: requests, errors by
kind, images per second, p50/p99 latency, and the server process's peak
resident memory (VmHWM).
"""

from __future__ import annotations

import contextlib
import random
import re
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
from genmem.benchmarks.subprocess_server import serving_process


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


def damage(memory: Path) -> list[str]:
    """Flip a byte of the oldest version's weights, and make a damaged copy of the newest appear as the next."""
    versions = Memory(memory).versions()
    flip_a_byte(memory / "versions" / versions[0] / "generator.safetensors")
    staging = Path(shutil.copytree(memory / "versions" / versions[-1], memory / "versions" / ".incomplete-damage"))
    flip_a_byte(staging / "generator.safetensors")
    copy = f"v{int(versions[-1][1:]) + 1:04d}"
    staging.rename(memory / "versions" / copy)  # appears at once, as a version being copied in would
    return [f"{versions[0]}'s weights damaged", f"a damaged copy of {versions[-1]} appeared as {copy}"]


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


def finished(writer: subprocess.Popen) -> str:
    """What a finished learn-task did, in a few words (the version it names: another may have appeared since)."""
    output = writer.communicate()[0].strip()
    written = re.search(r" as (v[0-9]+) in ", output)
    if writer.returncode == 0 and written:
        return f"learn-task had written {written.group(1)}"
    return f"learn-task failed ({output.splitlines()[-1] if output else writer.returncode})"


def run(memory: Path, clients: int, seconds: float, batch: int, learn_args: list[str] | None, damage_versions: bool,
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
            start = time.monotonic()

            def note(event: str) -> None:
                result.events.append(f"{event} at {time.monotonic() - start:.0f} s")

            writer = None
            if learn_args is not None:
                writer = subprocess.Popen([sys.executable, "-m", "genmem.cli.main", "learn-task", str(copy),
                                           *learn_args, "--device", "cpu", "--quiet"], cwd=scratch,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                note(f"learn-task {' '.join(learn_args)} started")
            if damage_versions:
                # A writer builds on the newest version and stops at a damaged one, so the damage waits for it
                # (up to two thirds of the run), and comes at a third of the run at the earliest.
                if writer is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        writer.wait(timeout=seconds * 2 / 3)
                    if writer.returncode is not None:
                        note(finished(writer))
                time.sleep(max(0.0, start + seconds / 3 - time.monotonic()))
                for event in damage(copy):
                    note(event)
            for thread in threads:
                thread.join()
            if writer is not None and not any(event.startswith("learn-task ") and " started " not in event
                                              for event in result.events):
                writer.wait()
                note(finished(writer))
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
