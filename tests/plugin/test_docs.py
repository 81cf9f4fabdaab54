"""The plugin's documentation lists what the plugin has: pvfs2dev.7 its options and fixtures."""

from __future__ import annotations

import re
from pathlib import Path

import pvfs2dev.testing as plugin

ROOT = Path(__file__).resolve().parents[2]


def _man_text() -> str:
    text = (ROOT / "man" / "pvfs2dev.7").read_text()
    section = text.split(".SH TESTING A CLIENT-CORE", 1)[1].split("\n.SH ", 1)[0]
    return re.sub(r"\\f[BIRP]", "", section).replace("\\-", "-")


class _Recorder:
    """Stands in for pytest's option parser: records what the plugin declares."""

    def __init__(self) -> None:
        self.options: set[str] = set()
        self.ini: set[str] = set()

    def getgroup(self, *args, **kwargs) -> "_Recorder":
        return self

    def addoption(self, *names, **kwargs) -> None:
        self.options.update(names)

    def addini(self, name, *args, **kwargs) -> None:
        self.ini.add(name)


def _declared() -> _Recorder:
    recorder = _Recorder()
    plugin.pytest_addoption(recorder)
    return recorder


def test_man_page_lists_every_option():
    """pvfs2dev.7, TESTING A CLIENT-CORE, documents each --pvfs2-* option, and no other."""
    assert set(re.findall(r"--pvfs2-[a-z-]+", _man_text())) == _declared().options


def test_man_page_lists_every_fixture_and_ini_key():
    """Every pvfs2_ fixture and ini key of the plugin is in the page, and the page names no other."""
    fixtures = {name for name in vars(plugin) if name.startswith("pvfs2_")}
    assert set(re.findall(r"\bpvfs2_[a-z_]+", _man_text())) == fixtures | _declared().ini
