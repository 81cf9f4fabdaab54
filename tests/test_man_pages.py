"""Each man page documents exactly the options of its command, with their defaults, and renders cleanly."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from clientcore.cli import command as clientcore_command
from pvfs2ctl.cli import main as pvfs2ctl_main
from pvfs2dev.cli import main as pvfs2dev_main

MAN = Path(__file__).resolve().parent.parent / "man"

#: page → the click command it documents (groups include all their subcommands).
PAGES = {
    "pvfs2dev.8": pvfs2dev_main,
    "clientcore.8": clientcore_command,
    "pvfs2ctl.1": pvfs2ctl_main,
}


def _commands(command: click.Command):
    yield command
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            yield from _commands(sub)


def _help_options(command: click.Command) -> set[str]:
    return {opt for cmd in _commands(command) for param in cmd.params if isinstance(param, click.Option)
            for opt in param.opts + param.secondary_opts if opt.startswith("--") and opt not in ("--help", "--version")}


def _text(page: str) -> str:
    # troff writes a hyphen as "\-" and switches fonts with \fB, \fI, \fR, \fP;
    # undo both to read the page as text.
    return re.sub(r"\\f[BIRP]", "", (MAN / page).read_text()).replace("\\-", "-")


def _man_options(page: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", _text(page)))


@pytest.mark.parametrize("page", sorted(PAGES))
def test_man_page_lists_the_same_options_as_help(page):
    """Issue 5: a man page documents every option of its command and no other."""
    assert _man_options(page) == _help_options(PAGES[page])


@pytest.mark.parametrize("page", sorted(PAGES))
def test_man_page_gives_every_default(page):
    """Issue 5: every option's default appears in its page."""
    text = _text(page)
    for cmd in _commands(PAGES[page]):
        for param in cmd.params:
            if (isinstance(param, click.Option) and not param.is_flag and not param.required
                    and param.default not in (None, "")):
                assert str(param.default) in text, f"{page}: default {param.default!r} of {param.opts[0]}"


@pytest.mark.parametrize("page", sorted(p.name for p in MAN.glob("*.[0-9]")))
def test_man_page_renders_without_warnings(page):
    """Issue 5: every page renders with groff, all warnings on, and none is emitted."""
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed (./dev installs groff-base)")
    done = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", str(MAN / page)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stderr == ""


@pytest.mark.parametrize("page", sorted(p.name for p in MAN.glob("*.[0-9]")))
def test_man_page_reads_with_man_l(page):
    """Issue 5: every page is readable with ``man -l``."""
    if shutil.which("man") is None:
        pytest.skip("man is not installed (./dev installs man-db)")
    done = subprocess.run(["man", "-l", str(MAN / page)], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "80"})
    assert done.returncode == 0 and done.stdout.strip() and "warning" not in done.stderr
