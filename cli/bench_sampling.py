"""`genmem bench sampling`: images per second drawn from a memory, in process and over HTTP."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from genmem.cli.common import FiniteFloatRange, friendly_errors, publish


@click.command()
@click.argument("memory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--device", "devices", multiple=True, default=["auto"], show_default=True,
              help="cpu, cuda, cuda:N, or auto (the CPU, and CUDA when there is one); repeat for several. CUDA "
                   "is measured in float16 and float32, the CPU in float32.")
@click.option("--sizes", default="1,16,256,4096,65536", show_default=True,
              help="Images per request, comma-separated; the largest is also split into where its time goes.")
@click.option("--seconds", type=FiniteFloatRange(0, min_open=True), default=3.0, show_default=True,
              help="Time spent timing each point after its warm-up (3 repeats at least); the median is reported.")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results as the '## Sampling throughput' section of this file (BENCHMARKS.md).")
@friendly_errors
def sampling(memory, devices, sizes, seconds, record):
    """Images per second drawn from MEMORY, in process and over HTTP.

    In process is Sampler.sample (uint8, images left on the device); over
    HTTP is `genmem serve` started on a free loopback port and asked for
    safetensors by the Python client. Keep the machine otherwise idle.

    \b
    Example:
      genmem bench sampling runs/quickstart.mem --seconds 2 --record BENCHMARKS.md
    """
    import torch

    from genmem.benchmarks.record import CpuWatch, machine, provenance
    from genmem.benchmarks.sampling import measure, report
    from genmem.device import resolve_device

    chosen = []
    for name in devices:
        if name == "auto":
            chosen += [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
        else:
            chosen.append(resolve_device(name))
    chosen = list(dict.fromkeys(chosen))
    try:
        size_list = sorted({int(part) for part in sizes.split(",") if part.strip()})
    except ValueError:
        raise click.BadParameter(f"{sizes!r} is not a comma-separated list of numbers", param_hint="--sizes")
    if not size_list or size_list[0] < 1:
        raise click.BadParameter("give one or more sizes of 1 or more", param_hint="--sizes")

    command = shlex.join(["genmem", "bench", "sampling", str(memory), *(a for d in devices for a in ("--device", d)),
                          "--sizes", sizes, "--seconds", f"{seconds:g}", "--record", str(record)])
    where = provenance([f"{d}: {machine(d)}" for d in chosen], command)  # now: the code that runs
    watch = CpuWatch()
    points, splits = measure(memory, chosen, size_list, seconds, progress=lambda line: click.echo(line, err=True))
    publish(report(points, splits, size_list, watch.others_share()), where, record, "Sampling throughput")
