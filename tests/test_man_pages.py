"""Each man page documents exactly the options its command's --help lists."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from clientcore.cli import command as clientcore_command
from pvfs2dev.cli import main as pvfs2dev_main

MAN = Path(__file__).resolve().parent.parent / "man"


def _help_options(command: click.Command) -> set[str]:
    return {opt for param in command.params if isinstance(param, click.Option) for opt in param.opts
            if opt.startswith("--") and opt != "--help"}


def _man_options(page: Path) -> set[str]:
    # troff writes a hyphen as "\-"; undo that, then take every --option.
    text = page.read_text().replace("\\-", "-")
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))


@pytest.mark.parametrize(
    ("page", "command"), [("pvfs2dev.1", pvfs2dev_main.commands["serve"]), ("clientcore.1", clientcore_command)]
)
def test_man_page_lists_the_same_options_as_help(page, command):
    """STYLE §10: a man page mirrors --help, option for option."""
    assert _man_options(MAN / page) == _help_options(command)
