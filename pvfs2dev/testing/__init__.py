"""pytest plugin: test a client-core against the emulated OrangeFS kernel, without root or a module.

Installed with pvfs2dev (entry point ``pytest11``: ``pvfs2dev = pvfs2dev.testing``),
so any pytest session in that environment has it.  Everything is synchronous
and runs the broker and the client-core as child processes: no async plugin is
needed, and tests are plain functions.

Options (also ``pytest -h``, group "pvfs2dev")::

    --pvfs2-clientcore CMD   the client-core to test, split as a shell would; {rundir}
                             and {store} are replaced [ini: pvfs2_clientcore; default:
                             clientcore --rundir {rundir} --store {store}]
    --pvfs2-broker-arg ARG   one more argument for ``pvfs2dev serve`` (repeatable),
                             e.g. --pvfs2-broker-arg=--op-timeout=5
    --pvfs2-timeout SECS     how long a start-up or a reply may take (default 30)
    --pvfs2-keep             keep a failed test's work directory (logs, store)

Fixtures (function scope; each builds on the ones before)::

    pvfs2_workdir             a fresh directory: run/, store/, broker.log, clientcore.log
    pvfs2_rundir              its run/: the broker's sockets
    pvfs2_store               its store/: {store}, empty
    pvfs2_broker_args         list[str] for ``pvfs2dev serve`` (override to change)
    pvfs2_broker              a running broker (stack.Broker), stopped with SIGTERM
                              at teardown, its exit status checked
    pvfs2_clientcore_command  the command (str or argv) (override to change)
    pvfs2_clientcore          the client-core, in service (stack.ClientCore)
    pvfs2_kernel              a KernelSession: submit upcalls, helpers, control channel
    pvfs2_mounted             the same, after mount()

At teardown the client-core must still be running unless the test ended it
(``kill_clientcore``); a failed test's report gets the end of both logs.
Every process (each in a process group of its own) and socket is gone
afterwards, whatever the test did.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import pytest

from .processes import tail

#: Names importable from here; the modules load on first use so that merely
#: having the plugin installed costs a pytest session nothing.
_EXPORTS = {
    "Reply": "replies", "assert_ok": "replies", "assert_errno": "replies",
    "KernelSession": "session", "maps_full": "session", "quiescent": "session",
    "Broker": "stack", "ClientCore": "stack", "default_clientcore_command": "stack",
    "upcalls": None,
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module = importlib.import_module(f"{__name__}.{_EXPORTS[name] or name}")
    return module if _EXPORTS[name] is None else getattr(module, name)


DEFAULT_TIMEOUT = 30.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pvfs2dev", "pvfs2dev: a client-core against the emulated OrangeFS kernel")
    group.addoption("--pvfs2-clientcore", metavar="CMD", default=None,
                    help="the client-core to test, split as a shell would; {rundir} and {store} are replaced "
                         "(default: clientcore --rundir {rundir} --store {store})")
    group.addoption("--pvfs2-broker-arg", metavar="ARG", action="append", default=[],
                    help="one more argument for 'pvfs2dev serve', repeatable (--pvfs2-broker-arg=--op-timeout=5)")
    group.addoption("--pvfs2-timeout", metavar="SECS", type=float, default=DEFAULT_TIMEOUT,
                    help=f"how long a start-up or a reply may take (default {DEFAULT_TIMEOUT:g})")
    group.addoption("--pvfs2-keep", action="store_true", default=False,
                    help="keep a failed test's work directory (run dir, store, logs)")
    parser.addini("pvfs2_clientcore", "the client-core command, as --pvfs2-clientcore", default="")


# -- the work directory and failure reports ----------------------------------------------------------------


@dataclasses.dataclass
class _Workspace:
    base: Path
    #: A teardown found a problem (a client-core that died, a broker that hung).
    teardown_failed: bool = False


_WORKSPACE = pytest.StashKey[_Workspace]()
_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    workspace = item.stash.get(_WORKSPACE, None)
    if workspace is not None and report.failed and report.when in ("setup", "call"):
        item.stash[_FAILED] = True
        for name in ("broker", "clientcore"):
            log = workspace.base / f"{name}.log"
            if log.exists():
                report.sections.append((f"pvfs2 {name}.log (end)", tail(log)))
        if item.config.getoption("pvfs2_keep"):
            report.sections.append(("pvfs2 work directory", f"kept: {workspace.base}"))
    return report


@pytest.fixture
def pvfs2_workdir(request: pytest.FixtureRequest):
    """A fresh directory for one test: ``run/`` (the broker's), ``store/``, and the logs.

    It lives under the system's temporary directory, not pytest's ``tmp_path``:
    AF_UNIX socket paths must stay under 108 bytes.  Removed at teardown,
    unless the test failed and ``--pvfs2-keep`` was given.
    """
    base = Path(tempfile.mkdtemp(prefix="pvfs2-"))
    workspace = _Workspace(base)
    request.node.stash[_WORKSPACE] = workspace
    yield base
    failed = request.node.stash.get(_FAILED, False) or workspace.teardown_failed
    if failed and request.config.getoption("pvfs2_keep"):
        return
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pvfs2_rundir(pvfs2_workdir: Path) -> Path:
    """The broker's run directory (``{rundir}``): its three sockets appear here."""
    return pvfs2_workdir / "run"


@pytest.fixture
def pvfs2_store(pvfs2_workdir: Path) -> Path:
    """An empty directory for the client-core's state (``{store}``); it survives client-core restarts."""
    store = pvfs2_workdir / "store"
    store.mkdir(exist_ok=True)
    return store


# -- the broker and the client-core ------------------------------------------------------------------------


@pytest.fixture
def pvfs2_broker_args(request: pytest.FixtureRequest) -> list[str]:
    """Extra ``pvfs2dev serve`` arguments: ``--pvfs2-broker-arg`` values; override to set your own."""
    return list(request.config.getoption("pvfs2_broker_arg"))


def _teardown_failed(request: pytest.FixtureRequest, problems: list[str]) -> None:
    if problems:
        workspace = request.node.stash.get(_WORKSPACE, None)
        if workspace is not None:
            workspace.teardown_failed = True
            if request.config.getoption("pvfs2_keep"):
                problems.append(f"(work directory kept: {workspace.base})")
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def pvfs2_broker(request: pytest.FixtureRequest, pvfs2_workdir: Path, pvfs2_rundir: Path,
                 pvfs2_broker_args: list[str]):
    """A running ``pvfs2dev serve --rundir`` (:class:`~pvfs2dev.testing.stack.Broker`), ready when its
    control socket answers.  At teardown: SIGTERM, a clean exit 0 expected (SIGKILL after 10 s)."""
    from .stack import Broker

    timeout = request.config.getoption("pvfs2_timeout")
    try:
        broker = Broker(pvfs2_rundir, pvfs2_broker_args, log=pvfs2_workdir / "broker.log", timeout=timeout)
    except (AssertionError, ValueError) as exc:
        pytest.fail(f"pvfs2dev serve did not start: {exc}", pytrace=False)
    try:
        yield broker
    finally:
        _teardown_failed(request, broker.stop())


@pytest.fixture
def pvfs2_clientcore_command(request: pytest.FixtureRequest) -> list[str] | str:
    """The client-core command: ``--pvfs2-clientcore``, else the ``pvfs2_clientcore`` ini value, else
    ``clientcore --rundir {rundir} --store {store}``.  Override it (or parametrize it) to test another."""
    from .stack import default_clientcore_command

    return request.config.getoption("pvfs2_clientcore") or request.config.getini("pvfs2_clientcore") \
        or default_clientcore_command()


@pytest.fixture
def pvfs2_clientcore(request: pytest.FixtureRequest, pvfs2_broker, pvfs2_clientcore_command, pvfs2_store: Path,
                     pvfs2_workdir: Path):
    """The client-core under test (:class:`~pvfs2dev.testing.stack.ClientCore`), started and in service:
    the device open, MAP done, no mount pending.  At teardown it must still be running (unless the test
    ended it), then it is stopped with SIGTERM, its whole process group with it."""
    from .stack import ClientCore, parse_command

    try:
        argv = parse_command(pvfs2_clientcore_command)
    except ValueError as exc:  # empty, or unbalanced quotes
        pytest.fail(f"bad client-core command {pvfs2_clientcore_command!r}: {exc}", pytrace=False)
    core = ClientCore(pvfs2_broker, argv, pvfs2_store, log=pvfs2_workdir / "clientcore.log",
                      timeout=request.config.getoption("pvfs2_timeout"))
    try:
        core.start()
    except AssertionError as exc:
        core.expect_exit()  # its failure is this message, not a second one at teardown
        core.stop()
        pytest.fail(f"the client-core did not come into service: {exc}", pytrace=False)
    try:
        yield core
    finally:
        _teardown_failed(request, core.stop())


@pytest.fixture
def pvfs2_kernel(request: pytest.FixtureRequest, pvfs2_broker, pvfs2_clientcore):
    """A :class:`~pvfs2dev.testing.session.KernelSession`: one caller of the emulated kernel, with
    ``submit``, the op helpers, ``status``/``ops``/``assert_quiescent`` and ``kill_clientcore``."""
    from .session import KernelSession

    session = KernelSession(pvfs2_broker, pvfs2_clientcore, timeout=request.config.getoption("pvfs2_timeout"))
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def pvfs2_mounted(pvfs2_kernel):
    """:func:`pvfs2_kernel` after ``mount()``: ops default to its fs_id and root."""
    pvfs2_kernel.mount()
    return pvfs2_kernel
