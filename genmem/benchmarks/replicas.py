"""How replay over HTTP scales with server replicas: `genmem serve --workers N` and Ray Serve replicas.

Every setting serves the same memory on a loopback port and is loaded by the
same clients: `clients` threads, each with its own connection, asking for
the same request (safetensors, read but not decoded) again and again for a
while; throughput is the images all of them received per second. One
process (`genmem serve`, no workers) is the baseline. The clients run on the
same machine as the servers, so they share its cores.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from genmem.benchmarks.record import others_note
from genmem.benchmarks.sampling import SERVER_START_SECONDS
from genmem.replay import balanced_counts
from genmem.benchmarks.subprocess_server import free_port, is_ready, serving

OPTIONS = ["--device", "cpu", "--watch-interval", "0"]


@dataclass
class Result:
    setting: str
    images_per_second: float
    answered_by: int  # distinct processes that answered (X-Genmem-Worker)


def load(url: str, request: dict, images: int, clients: int, seconds: float) -> tuple[float, int]:
    """Images per second that `clients` threads receive for `seconds`, and how many server processes answered."""
    done, workers, failures = [0] * clients, set(), []
    stop = time.perf_counter() + seconds

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=120) as http:
            try:
                while time.perf_counter() < stop:
                    response = http.post("/genmem/sample", json=request)
                    response.raise_for_status()
                    workers.add(response.headers.get("X-Genmem-Worker"))
                    done[index] += images
            except httpx.HTTPError as exc:
                failures.append(exc)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return sum(done) / (time.perf_counter() - start), len(workers)


@contextlib.contextmanager
def on_ray(memory: Path, replicas: int) -> Iterator[str]:
    """A local Ray instance serving `replicas` replicas of the app; yields its URL once it answers."""
    import ray
    from ray import serve

    from genmem.server.ray_app import deployment, init_ray

    port = free_port()
    init_ray(num_cpus=max(replicas, 2), include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(deployment(replicas, memory_path=memory, device="cpu", watch_interval=0), name="genmem",
                  route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + SERVER_START_SECONDS
        while not is_ready(url) and time.monotonic() < deadline:
            time.sleep(0.5)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


def measure(memory: Path, workers: list[int], ray_replicas: list[int], size: int, clients: int, seconds: float,
            progress: Callable[[str], None] = lambda line: None) -> list[Result]:
    """Throughput of one process, then of each worker count and each Ray replica count."""
    from genmem.memory import Memory

    labels = [c.label for c in Memory(memory).sampler().classes]
    request = {"counts": {str(k): v for k, v in balanced_counts(labels, size, 0).items()}, "seed": 0}
    settings = [("1 process", lambda: serving(memory, OPTIONS, SERVER_START_SECONDS))]
    settings += [(f"--workers {n}", lambda n=n: serving(memory, [*OPTIONS, "--workers", str(n)],
                                                         SERVER_START_SECONDS)) for n in workers]
    settings += [(f"Ray Serve, {n} replica(s)", lambda n=n: on_ray(memory, n)) for n in ray_replicas]
    results = []
    for name, start in settings:
        with start() as url:
            load(url, request, size, clients, min(seconds, 2.0))  # warm-up: every worker loads and runs once
            rate, answered = load(url, request, size, clients, seconds)
        results.append(Result(name, rate, answered))
        progress(f"{name}: {rate:,.0f} images/s from {answered} process(es)")
    return results


def report(results: list[Result], size: int, clients: int, others: float | None) -> str:
    base = results[0].images_per_second
    lines = [f"{clients} client threads on the same machine, each asking for {size} images (safetensors, float "
             f"noise to uint8 on the CPU) over and over.", "",
             "| server | images/s | ratio to one process | processes that answered |", "|---|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.setting} | {r.images_per_second:,.0f} | {r.images_per_second / base:.2f} | "
                     f"{r.answered_by} |")
    lines += ["", others_note(others)]
    return "\n".join(lines)
