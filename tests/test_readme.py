"""The README, the guide and docs/your-data.md teach commands that exist: every `genmem` line names a command and
options it has, and the README's Python compiles. (Running them needs data and minutes; the quick start and the
examples run in tests/test_examples.py and CI.)"""

import ast
import re
import shlex
from pathlib import Path

import click
import pytest
from genmem.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "docs" / "guide.md", ROOT / "docs" / "your-data.md"]


def code_blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", page.read_text(), re.S)


def genmem_lines(page: Path) -> list[str]:
    """Each `genmem ...` command of the page's bash blocks, continuation lines joined and comments dropped."""
    lines = []
    for block in code_blocks(page, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == ["genmem"]:
                lines.append(words)
    return lines


def unknown_words(words: list[str]) -> list[str]:
    """What in a `genmem ...` command line names no command or option: [] for a line that parses."""
    command, rest = main, words[1:]
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        command, rest = command.commands[rest[0]], rest[1:]
    if isinstance(command, click.Group):
        return rest[:1] or ["(no command)"]
    known = {opt for param in command.params for opt in param.opts + param.secondary_opts} | {"--help", "-h"}
    return [w.split("=")[0] for w in rest if w.startswith("-") and w.split("=")[0] not in known]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_genmem_command_line_names_a_command_and_options_it_has(page):
    lines = genmem_lines(page)
    assert len(lines) >= 5, "not vacuous: the page shows commands"
    for words in lines:
        assert unknown_words(words) == [], shlex.join(words)


def test_the_readmes_python_compiles():
    blocks = code_blocks(ROOT / "README.md", "python")
    assert blocks, "not vacuous: the README shows Python"
    for block in blocks:
        ast.parse(block)


def test_a_misspelt_option_or_command_is_caught():
    assert unknown_words(shlex.split("genmem learn-task m --gan-epochs 3 --profile=quick")) == []
    assert unknown_words(shlex.split("genmem learn-task m --gan-epoch 3")) == ["--gan-epoch"]
    assert unknown_words(shlex.split("genmem bench protcol --out x")) == ["protcol"]
