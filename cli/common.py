"""What every genmem command shares: one-line errors, class lists, the device option's help."""

from __future__ import annotations

import functools

import click

from genmem.errors import GenmemError

DEVICE_HELP = "Where to compute: auto (the GPU if there is one), cpu, cuda or cuda:N."


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
