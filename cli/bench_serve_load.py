"""`genmem bench serve-load`: concurrent clients against `genmem serve` while the memory changes under it."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from genmem.cli.common import FiniteFloatRange, friendly_errors, publish


@click.command("serve-load")
@click.argument("memory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--clients", type=click.IntRange(1), default=50, show_default=True, help="Concurrent clients.")
@click.option("--seconds", type=FiniteFloatRange(1), default=30.0, show_default=True, help="Length of the run.")
@click.option("--batch", type=click.IntRange(1), default=64, show_default=True, help="Images per request.")
@click.option("--learn", "learn", metavar="ARGS",
              help="Also run `genmem learn-task COPY ARGS` during the run, e.g. \"--data builtin --classes 5 "
                   "--epochs 1\": a new version is written while the clients draw.")
@click.option("--damage", is_flag=True, help="A third of the way in, also flip a byte of the oldest version's weights "
                                            "and make a damaged copy of the newest appear as the next version.")
@click.option("--retries", type=click.IntRange(0), default=5, show_default=True,
              help="Retries of each client on a dropped connection or a 503 (0 shows the raw errors).")
@click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the result as the '## Serving under load' section of this file (a record in "
                   "docs/experiments/).")
@friendly_errors
def serve_load(memory, clients, seconds, batch, learn, damage, retries, record):
    """Requests, errors by kind, images/s, p50/p99 latency and the server's peak memory under CLIENTS clients.

    MEMORY is copied first and served by `genmem serve` on a free loopback
    port; the copy may be written to and damaged, MEMORY never is.

    \b
    Example (200 clients while a version is written and another damaged):
      genmem bench serve-load digits.mem --clients 200 --seconds 60 \\
          --learn "--data builtin --classes 7 --gan-epochs 1" --damage --record docs/experiments/NEW-RECORD.md
    """
    import torch

    from genmem.benchmarks.record import CpuWatch, machine, provenance
    from genmem.benchmarks.serve_load import report, run

    command = shlex.join(["genmem", "bench", "serve-load", str(memory), "--clients", str(clients), "--seconds",
                          f"{seconds:g}", "--batch", str(batch), *(["--learn", learn] if learn else []),
                          *(["--damage"] if damage else []), "--retries", str(retries)])
    where = provenance([f"cpu: {machine(torch.device('cpu'))} (server, clients and learn-task on one machine)"],
                       command)
    watch = CpuWatch()
    result = run(memory, clients, seconds, batch, shlex.split(learn) if learn else None, damage, retries,
                 progress=lambda line: click.echo(line, err=True))
    publish(report(result, watch.others_share()), where, record, "Serving under load")
