"""`genmem report`: one self-contained HTML page about a memory."""

from __future__ import annotations

from pathlib import Path

import click

from genmem.cli.common import SEED, friendly_errors


@click.command()
@click.argument("memory", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The HTML file to write.")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Seed of the sample grids.")
@friendly_errors
def report(memory, output, seed):
    """Write one HTML page about MEMORY that opens offline in any browser.

    It shows every class from the latest version, the replay quality
    measured when each class was learned, the growth and capacity plot, and
    per task a grid of the classes it learned, drawn from the version it
    wrote. Images are embedded, so the page is one file to send or archive.

    \b
    Example:
      genmem report digits.mem -o digits.html
    """
    from genmem.memory import Memory
    from genmem.report import render_report

    output.write_text(render_report(Memory(memory), seed), encoding="utf-8")
    click.echo(f"wrote {output}")
