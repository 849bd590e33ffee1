"""`genmem bench replicas`: how serving scales with worker processes and Ray Serve replicas."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from genmem.cli.common import FiniteFloatRange, friendly_errors, publish


def counts(text: str, option: str) -> list[int]:
    """'1,2,4' into [1, 2, 4]; '' into []."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a comma-separated list of numbers", param_hint=option) from None
    if any(value < 1 for value in values):
        raise click.BadParameter("every number must be 1 or more", param_hint=option)
    return values


@click.command()
@click.argument("memory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--workers", default="2,4", show_default=True, help="Worker counts of `genmem serve --workers`.")
@click.option("--ray-replicas", default="1,2", show_default=True,
              help="Ray Serve replica counts on a local Ray instance ('' for none; needs genmem[ray]).")
@click.option("--size", type=click.IntRange(1), default=256, show_default=True, help="Images per request.")
@click.option("--clients", type=click.IntRange(1), default=8, show_default=True,
              help="Client threads, each with its own connection.")
@click.option("--seconds", type=FiniteFloatRange(0, min_open=True), default=5.0, show_default=True,
              help="Time each setting is loaded for, after a warm-up.")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table as the '## Replicated serving' section of this file (a record in "
                   "docs/experiments/).")
@friendly_errors
def replicas(memory, workers, ray_replicas, size, clients, seconds, record):
    """Images/s over HTTP from one server process, from N workers, and from N Ray Serve replicas, on loopback.

    \b
    Example:
      genmem bench replicas runs/quickstart.mem --workers 2,4 --ray-replicas 1,2 --record docs/experiments/NEW-RECORD.md
    """
    import torch

    from genmem.benchmarks.record import CpuWatch, machine, provenance
    from genmem.benchmarks.replicas import measure, report

    worker_counts, ray_counts = counts(workers, "--workers"), counts(ray_replicas, "--ray-replicas")
    if ray_counts:
        try:
            import ray.serve  # noqa: F401
        except ImportError:
            raise click.ClickException("Ray Serve is not installed: pip install 'genmem[ray]', or pass "
                                       "--ray-replicas ''") from None
    command = shlex.join(["genmem", "bench", "replicas", str(memory), "--workers", workers, "--ray-replicas",
                          ray_replicas, "--size", str(size), "--clients", str(clients), "--seconds", f"{seconds:g}",
                          "--record", str(record)])
    where = provenance([machine(torch.device("cpu"))], command)
    watch = CpuWatch()
    results = measure(memory, worker_counts, ray_counts, size, clients, seconds,
                      progress=lambda line: click.echo(line, err=True))
    publish(report(results, size, clients, watch.others_share()), where, record, "Replicated serving")
