"""How fast one task trains on 1 or N data-parallel ranks: images per second and seconds per task.

Each setting is a real torchrun launch (`python -m torch.distributed.run`) of
this module on loopback; every rank learns the same first task (one class
of the built-in MNIST digits, the paper's MNIST recipe at 32 px, no solver
phase) and rank 0 reports the time of `learn_task` alone, after a barrier,
so process start and data loading are not counted. A setting is ranks x
threads per rank, so that 2 ranks of 1 thread can be set against 1 rank of
1 and of 2 threads on the same cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from genmem.benchmarks.record import others_note
from genmem.errors import GenmemError
from genmem.benchmarks.subprocess_server import free_port

RESULT = "genmem-bench-distributed:"  # rank 0's result line starts with this


@dataclass(frozen=True)
class Setting:
    ranks: int
    threads: int  # torch threads per rank


@dataclass
class Result:
    setting: Setting
    seconds: float  # learn_task, one task
    images: int  # images the GAN went through: epochs x images of the task

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds


def parse_settings(text: str) -> list[Setting]:
    """'1x1,1x2,2x1' (ranks x threads) into settings."""
    try:
        pairs = [part.strip().split("x") for part in text.split(",") if part.strip()]
        settings = [Setting(int(ranks), int(threads)) for ranks, threads in pairs]
    except ValueError:
        raise GenmemError(f"{text!r} is not a list of RANKSxTHREADS, e.g. 1x1,1x2,2x1") from None
    if not settings or min(min(s.ranks, s.threads) for s in settings) < 1:
        raise GenmemError("give one or more settings RANKSxTHREADS of at least 1x1")
    return settings


def launch(setting: Setting, images: int, epochs: int, batch_size: int) -> Result:
    """One torchrun launch of `setting`; rank 0's timing."""
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(setting.ranks),
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", __name__,
               "--images", str(images), "--epochs", str(epochs), "--batch-size", str(batch_size)]
    env = {**os.environ, "OMP_NUM_THREADS": str(setting.threads)}
    with tempfile.TemporaryDirectory() as scratch:  # not the checkout: it would shadow the installed genmem.cli
        run = subprocess.run(command, cwd=scratch, env=env, capture_output=True, text=True)
    lines = [line for line in run.stdout.splitlines() if line.startswith(RESULT)]
    if run.returncode != 0 or not lines:
        raise GenmemError(f"the {setting.ranks}-rank run failed: {run.stderr[-2000:]}")
    found = json.loads(lines[-1][len(RESULT):])
    return Result(setting, found["seconds"], found["images"])


def measure(settings: list[Setting], images: int, epochs: int, batch_size: int,
            progress: Callable[[str], None] = lambda line: None) -> list[Result]:
    results = []
    for setting in settings:
        results.append(launch(setting, images, epochs, batch_size))
        progress(f"{setting.ranks} rank(s) x {setting.threads} thread(s): {results[-1].seconds:.1f} s per task, "
                 f"{results[-1].images_per_second:,.0f} images/s")
    return results


def report(results: list[Result], epochs: int, batch_size: int, others: float | None) -> str:
    base = results[0]
    lines = [f"One task: {base.images // epochs} images of one class, {epochs} epochs, global batch {batch_size}, "
             f"the paper's MNIST recipe (DGMw, 32 px), no solver phase.", "",
             "| ranks | threads per rank | seconds per task | images/s | ratio to the first row |",
             "|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.setting.ranks} | {r.setting.threads} | {r.seconds:.1f} | {r.images_per_second:,.0f} | "
                     f"{r.images_per_second / base.images_per_second:.2f} |")
    lines += ["", others_note(others)]
    return "\n".join(lines)


def _rank_main() -> None:
    """One rank of a launch: learn the task and, on rank 0, print the time it took."""
    import torch
    import torch.distributed as dist

    from genmem.data import fit_images, load_source
    from genmem.distributed import from_environment
    from genmem.learn import learn_task
    from genmem.nets import Generator, GeneratorSpec
    from genmem.presets import paper_config
    from genmem.rank_writer import finish

    parser = argparse.ArgumentParser()
    for option in ("--images", "--epochs", "--batch-size"):
        parser.add_argument(option, type=int, required=True)
    args = parser.parse_args()
    parallel = from_environment(torch.device("cpu"))
    data = load_source("builtin").select([0])
    images = fit_images(data.images[: args.images], 1, 32, data.source)
    config = paper_config("mnist", "dgmw", epochs=args.epochs, batch_size=args.batch_size, solver_steps=0)
    generator = Generator(GeneratorSpec.for_images("dgmw", 1, 32), torch.Generator().manual_seed(0))
    if parallel is not None:
        dist.barrier()
    start = time.perf_counter()
    learn_task(generator, images, torch.zeros(len(images), dtype=torch.long), 1, config, progress=False,
               parallel=parallel)
    seconds = time.perf_counter() - start
    if parallel is None or parallel.rank == 0:
        print(RESULT + json.dumps({"seconds": seconds, "images": args.epochs * len(images)}), flush=True)
    finish(parallel)


if __name__ == "__main__":
    _rank_main()
