"""What every genmem command shares: one-line errors, class lists, the device option's help."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from genmem.errors import GenmemError

DEVICE_HELP = "Where to compute: auto (the GPU if there is one), cpu, cuda or cuda:N."


def run_options(command):
    """--seed, --device, --record and --quiet, which every benchmark run takes alike."""
    options = [
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--device", default="auto", show_default=True, help=DEVICE_HELP),
        click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
                     help="Also write the results as a section of this file (BENCHMARKS.md), with device, command, "
                          "date and commit."),
        click.option("--quiet", is_flag=True, help="No progress bars."),
    ]
    for option in reversed(options):  # applied bottom-up, as stacked decorators are
        command = option(command)
    return command


def friendly_errors(command):
    """Turn genmem's errors into one clear line and a non-zero exit, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except GenmemError as exc:
            raise click.ClickException(str(exc)) from None

    return wrapper


def split_classes(text: str | None) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()] if text else []
