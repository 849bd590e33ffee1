"""`genmem bench page`: regenerate the results page's tables from BENCHMARKS.csv."""

from __future__ import annotations

from pathlib import Path

import click

from genmem.cli.common import friendly_errors


@click.command()
@click.option("--csv", "table_csv", type=click.Path(dir_okay=False, path_type=Path), default=Path("BENCHMARKS.csv"),
              show_default=True, help="The figures: one row per measured figure (genmem bench ... --csv writes it).")
@click.option("--page", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=Path("BENCHMARKS.md"), show_default=True,
              help="The results page; its tables stand between <!-- table: NAME --> and <!-- end table -->.")
@click.option("--plots", type=click.Path(file_okay=False, path_type=Path), default=Path("docs"), show_default=True,
              help="Where to write the page's plots: accuracy against the bytes kept (bytes-DATA-TASKS.png) and DP "
                   "accuracy against epsilon (dp-accuracy-against-epsilon.png).")
@click.option("--check", is_flag=True, help="Write nothing; fail if the page's tables differ from the CSV's (the "
                                            "plots are not compared: their bytes vary with matplotlib's version).")
@friendly_errors
def page(table_csv, page, plots, check):
    """Rewrite the tables of the results page, and its plots, from the figures in BENCHMARKS.csv.

    The prose around the tables is people's; every figure in a table comes
    from the CSV, so the page and the CSV never disagree.
    """
    from genmem.benchmarks.page import page_plots, refresh_page
    from genmem.benchmarks.record import read_rows

    text = refresh_page(page, table_csv)
    if check:
        if text != page.read_text():
            raise click.ClickException(f"{page}'s tables differ from {table_csv}; run `genmem bench page`")
        click.echo(f"{page} matches {table_csv}")
        return
    page.write_text(text)
    plots.mkdir(parents=True, exist_ok=True)
    for name, png in page_plots(read_rows(table_csv)).items():
        (plots / name).write_bytes(png)
    click.echo(f"wrote the tables of {page} and its plots in {plots} from {table_csv}")
