"""`genmem bench sampling`: images per second drawn from a memory, in process and over HTTP."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from genmem.cli.common import FiniteFloatRange, friendly_errors, publish


@click.command()
@click.argument("memory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--device", "devices", multiple=True, default=["auto"], show_default=True,
              help="cpu, cuda, cuda:N, or auto (the CPU, and CUDA when there is one); repeat for several. The CPU "
                   "is measured in auto (float32, folded) and float32 (exact), CUDA in float16, bfloat16 and float32.")
@click.option("--precision", "precisions", multiple=True,
              help="Measure only this precision (auto, float32, float16, bfloat16); repeat for several.")
@click.option("--sizes", default="1,16,256,4096,65536", show_default=True,
              help="Images per request, comma-separated; the largest is also split into where its time goes.")
@click.option("--seconds", type=FiniteFloatRange(0, min_open=True), default=3.0, show_default=True,
              help="Time spent timing each point after its warm-up (3 repeats at least); the median is reported.")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the report as the '## Sampling throughput' section of this file (a record in "
                   "docs/experiments/).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results as rows of this CSV (BENCHMARKS.csv), a row per point and way; a "
                   "rerun replaces the rows of the same figures.")
@friendly_errors
def sampling(memory, devices, precisions, sizes, seconds, record, csv_path):
    """Images per second drawn from MEMORY, in process and over HTTP.

    In process is Sampler.sample (uint8, images left on the device); over
    HTTP is `genmem serve` started on a free loopback port and asked for
    safetensors by the Python client. Keep the machine otherwise idle.

    \b
    Example:
      genmem bench sampling runs/quickstart.mem --seconds 2 --csv BENCHMARKS.csv
    """
    import torch

    from genmem.benchmarks.record import CpuWatch, machine, provenance, record_rows
    from genmem.benchmarks.sampling import csv_rows, measure, report, settings_for
    from genmem.device import resolve_device

    chosen = []
    for name in devices:
        if name == "auto":
            chosen += [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
        else:
            chosen.append(resolve_device(name))
    settings = settings_for(list(dict.fromkeys(chosen)), list(precisions))
    if not settings:
        raise click.BadParameter(f"none of the devices is measured in {', '.join(precisions)}",
                                 param_hint="--precision")
    try:
        size_list = sorted({int(part) for part in sizes.split(",") if part.strip()})
    except ValueError:
        raise click.BadParameter(f"{sizes!r} is not a comma-separated list of numbers", param_hint="--sizes")
    if not size_list or size_list[0] < 1:
        raise click.BadParameter("give one or more sizes of 1 or more", param_hint="--sizes")

    command = shlex.join(["genmem", "bench", "sampling", str(memory), *(a for d in devices for a in ("--device", d)),
                          *(a for p in precisions for a in ("--precision", p)), "--sizes", sizes,
                          "--seconds", f"{seconds:g}"])
    where = provenance([f"{d}: {machine(d)}" for d in dict.fromkeys(s.device for s in settings)], command)
    watch = CpuWatch()
    points, splits, same = measure(memory, settings, size_list, seconds,
                                   progress=lambda line: click.echo(line, err=True))
    table = report(points, splits, same, size_list, watch.others_share())
    publish(table, where, record, "Sampling throughput")
    if csv_path is not None:
        record_rows(csv_path, csv_rows(points, memory, command))
        click.echo(f"rows in {csv_path}")

