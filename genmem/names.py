"""How users name versions and classes, parsed strictly, and how a value a user sent is quoted back to them.

Python's `str.isdigit()` accepts '²' and '①', which `int()` then refuses, and
`int()` refuses digit strings over 4,300 characters; any such text that
reaches `int()` from a request or a command line is a crash. Here a number is
ASCII digits of bounded length, nothing else, so every other text is simply a
name that does not exist.
"""

from __future__ import annotations

import re

LABEL = re.compile(r"-?[0-9]{1,18}", re.ASCII)
VERSION = re.compile(r"v?([0-9]{1,9})", re.ASCII)
SHOWN_LIMIT = 60


def label_number(key: int | str) -> int | None:
    """The label a class key stands for when it is an integer or ASCII integer text ('3', '-1'), else None."""
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    text = str(key).strip()
    return int(text) if LABEL.fullmatch(text) else None


def version_name(text: str) -> str | None:
    """The folder name ('v0003') a version is asked for by ('v0003', 'v3', '3'), or None if it is no such name."""
    match = VERSION.fullmatch(text)
    return f"v{int(match.group(1)):04d}" if match else None


def shown(value: object) -> str:
    """A user's value for an error message: quoted, escaped onto one line, and cut short if long.

    Integers are counted rather than printed past 60 digits (printing one over
    4,300 digits raises in Python itself).
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value) if value.bit_length() <= 190 else f"a number of about {value.bit_length() * 3 // 10} digits"
    text = repr(str(value))
    return text if len(text) <= SHOWN_LIMIT else f"{text[:SHOWN_LIMIT - 5]}...{text[0]} ({len(str(value)):,} chars)"
