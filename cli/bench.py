"""`genmem bench`: the group of genmem's measurements, one command per module named after it."""

from __future__ import annotations

import click

from genmem.cli.bench_avalanche import avalanche
from genmem.cli.bench_distributed import distributed
from genmem.cli.bench_page import page
from genmem.cli.bench_privacy import privacy
from genmem.cli.bench_quality import quality
from genmem.cli.bench_replay import replay
from genmem.cli.bench_replicas import replicas
from genmem.cli.bench_sampling import sampling
from genmem.cli.bench_protocol import protocol
from genmem.cli.bench_serve_load import serve_load


@click.group()
def bench():
    """Measure genmem; each benchmark prints a table, can write its headline figures into BENCHMARKS.csv
    (--csv) and its report into the experiments log (--record)."""


bench.add_command(sampling)
bench.add_command(protocol)
bench.add_command(replay)
bench.add_command(quality)
bench.add_command(privacy)
bench.add_command(serve_load)
bench.add_command(avalanche)
bench.add_command(distributed)
bench.add_command(replicas)
bench.add_command(page)
