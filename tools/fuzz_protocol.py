"""Coverage-guided fuzzing of the ``pvfs2proto`` decoders with atheris (libFuzzer).

    python -m tools.fuzz_protocol [LIBFUZZER ARGS...] [CORPUS_DIR...]
    python -m tools.fuzz_protocol -runs=100000 -max_len=17000 corpus/

The hypothesis fuzzers in tests/protocol/test_fuzz.py run in CI; this is the
deeper, coverage-guided run for an afternoon.  Every decoder gets the input:
each must return or raise :class:`pvfs2proto.ProtocolError` (an ``OSError``
carrying the kernel's errno) — anything else is a crash libFuzzer reports
with the input that caused it.  The first byte chooses which op type the
downcall-body decoders are told to expect and which ioctl command an argument
belongs to, so one corpus reaches every union case.

atheris is installed with the test extras where a wheel exists (x86-64
Linux); :func:`one_input` itself needs nothing but ``pvfs2proto``, and the
tests feed it a seed corpus without atheris.
"""

from __future__ import annotations

import sys
from typing import Callable

#: The decoders, built on first use so that ``main`` can import pvfs2proto
#: under atheris's instrumentation (only it: instrumenting everything loaded,
#: construct included, takes half a minute).
_DECODERS: Callable[[bytes], tuple] | None = None


def _decoders() -> Callable[[bytes], tuple]:
    global _DECODERS
    if _DECODERS is None:
        import pvfs2proto as proto
        from pvfs2proto import IoctlCommand, OpCode, ProtocolError
        from pvfs2proto.debug import decode_client_debug_string

        ops = [int(op) for op in OpCode]
        ioctls = [int(cmd) for cmd in IoctlCommand]

        def for_input(data: bytes) -> tuple:
            choice = data[0] if data else 0
            op_type = ops[choice % len(ops)]
            body = data[1:]
            return ProtocolError, (
                lambda: proto.decode_read_frame(data),
                lambda: proto.decode_write_head(data),
                lambda: proto.decode_write_frame(data),
                lambda: proto.decode_write_frame(body, op_type),
                lambda: proto.decode_write_body(body, op_type),
                lambda: proto.decode_upcall(data),
                lambda: proto.decode_downcall(data),
                lambda: proto.decode_downcall(body, op_type),
                lambda: proto.decode_readdir_trailer(data),
                lambda: proto.decode_readdir_trailer(data, strict=True),
                lambda: proto.decode_ioctl_arg(ioctls[choice % len(ioctls)], body),
                lambda: proto.check_ioctl_command(int.from_bytes(data[:4].ljust(4, b"\0"), "little")),
                lambda: decode_client_debug_string(data),
            )

        _DECODERS = for_input
    return _DECODERS


def one_input(data: bytes) -> None:
    """Feed ``data`` to every decoder; only ProtocolError may come out."""
    allowed, decoders = _decoders()(data)
    for decode in decoders:
        try:
            decode()
        except allowed:
            pass


def main(argv: list[str] | None = None) -> None:
    try:
        import atheris
    except ImportError:
        sys.exit("tools.fuzz_protocol needs atheris (pip install atheris; x86-64 Linux wheels exist)")
    with atheris.instrument_imports(include=["pvfs2proto"]):
        _decoders()
    atheris.Setup(list(sys.argv if argv is None else argv), one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
