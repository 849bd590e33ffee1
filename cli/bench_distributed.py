"""`genmem bench distributed`: how learning a task scales with data-parallel processes."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from genmem.cli.common import friendly_errors, publish
from genmem.config import MAX_BATCH_SIZE


@click.command()
@click.option("--settings", default="1x1,1x2,2x1", show_default=True, metavar="RxT,...",
              help="Ranks x torch threads per rank, comma-separated; the first is the baseline of the ratios.")
@click.option("--images", type=click.IntRange(1), default=512, show_default=True,
              help="Images of the task, at most (one class of the built-in MNIST digits has about 400).")
@click.option("--gan-epochs", "epochs", type=click.IntRange(1), default=3, show_default=True,
              help="GAN epochs of the timed task.")
@click.option("--batch-size", type=click.IntRange(2, MAX_BATCH_SIZE), default=64, show_default=True,
              help="The global batch, split over the ranks.")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the table as the '## Data-parallel training' section of this file (a record in "
                   "docs/experiments/).")
@friendly_errors
def distributed(settings, images, epochs, batch_size, record):
    """Seconds per task and images/s of learn-task on 1 and N data-parallel ranks (gloo, this machine's CPU).

    Each setting is a torchrun launch on loopback; only learn_task is timed.

    \b
    Example:
      genmem bench distributed --settings 1x1,1x2,2x1 --record docs/experiments/NEW-RECORD.md
    """
    import torch

    from genmem.benchmarks.distributed import measure, parse_settings, report
    from genmem.benchmarks.record import CpuWatch, machine, provenance

    chosen = parse_settings(settings)
    command = shlex.join(["genmem", "bench", "distributed", "--settings", settings, "--images", str(images),
                          "--gan-epochs", str(epochs), "--batch-size", str(batch_size), "--record", str(record)])
    where = provenance([machine(torch.device("cpu"))], command)
    watch = CpuWatch()
    results = measure(chosen, images, epochs, batch_size, progress=lambda line: click.echo(line, err=True))
    publish(report(results, epochs, batch_size, watch.others_share()), where, record,
            "Data-parallel training")
