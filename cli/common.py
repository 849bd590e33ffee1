"""What every genmem command shares: one-line errors, class lists, the device option's help."""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path

import click
import torch

from genmem.augment import parse_policy
from genmem.config import MAX_SEED
from genmem.errors import GenmemError, InvalidSetting

DEVICE_HELP = "Where to compute: auto (the GPU if there is one), cpu, cuda or cuda:N."


class FiniteFloatRange(click.FloatRange):
    """A FloatRange that also refuses NaN and infinity: click's bounds checks let NaN through (every comparison
    with it is false), and a NaN learning rate or weight trains a version of NaN weights."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class AugmentPolicy(click.ParamType):
    """A comma-separated augmentation policy (genmem.augment), checked as the command line is read: a typo
    should not surface only after a data set has loaded."""

    name = "policy"

    def convert(self, value, param, ctx):
        try:
            parse_policy(value)
        except InvalidSetting as exc:
            self.fail(str(exc), param, ctx)
        return value


SEED = click.IntRange(0, MAX_SEED // 2)  # every command's --seed; the rest of torch's 64 bits for what protocols add


def publish(table: str, where: str, record: Path | None, title: str) -> None:
    """Print a benchmark's table, and write it with its provenance as the section `title` of `record`."""
    from genmem.benchmarks.record import record_section

    click.echo(table)
    if record is not None:
        record_section(record, title, where + "\n\n" + table)
        click.echo(f"recorded in {record}")


def run_options(command):
    """--seed, --device, --record and --quiet, which every benchmark run takes alike."""
    options = [
        click.option("--seed", type=SEED, default=0, show_default=True),
        click.option("--device", default="auto", show_default=True, help=DEVICE_HELP),
        click.option("--record", type=click.Path(dir_okay=False, path_type=Path),
                     help="Also write the report as a section of this file (a record in docs/experiments/), with "
                          "device, command, date and commit."),
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
        except (MemoryError, RuntimeError) as exc:
            if not out_of_memory(exc):
                raise
            options = {opt for param in click.get_current_context().command.params for opt in param.opts}
            raise click.ClickException(out_of_memory_message(exc, options)) from None

    return wrapper


def out_of_memory(exc: BaseException) -> bool:
    """Whether an allocation failed: torch's CPU allocator raises a plain RuntimeError, CUDA its own kind."""
    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or "can't allocate memory" in str(exc)


# Options that shrink what a command allocates, in the order the advice names them.
SHRINKING_OPTIONS = ("--width", "--base-width", "--critic-width", "--image-size", "--batch-size", "--count",
                     "--images-per-class", "--size", "--sizes")


def out_of_memory_message(exc: BaseException, options: set[str]) -> str:
    """One line for a failed allocation (a width, image size or batch far too large), naming what the command
    that failed can ask for less of."""
    asked = re.search(r"tried to allocate ([\d.]+ ?[A-Za-z]+)", str(exc), re.IGNORECASE)
    amount = f" ({asked.group(1)} at once)" if asked else ""
    smaller = [option for option in SHRINKING_OPTIONS if option in options]
    advice = f"ask for less (a smaller {', '.join(smaller)})" if smaller else "free memory or use a larger machine"
    return (f"out of memory: the networks or batches asked for do not fit in this machine's memory{amount}; "
            f"{advice}; finished versions are untouched")


def split_classes(text: str | None) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()] if text else []
