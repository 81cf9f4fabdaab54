"""tools/fuzz_protocol.py: the atheris entry point for the decoders (issue 7, Fuzzing).

``one_input`` must let only ProtocolError out of any decoder, for valid
frames, their truncations and bit flips; where atheris is installed a short
coverage-guided run must finish clean.
"""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys

import pytest

import pvfs2proto as proto
from pvfs2proto import OpCode
from tools.fuzz_protocol import one_input

from ..fuzzing import budget

pytestmark = pytest.mark.fuzz


def _seeds() -> list[bytes]:
    up = proto.encode_upcall({"type": OpCode.LOOKUP, "req": {"lookup": {"d_name": b"name", "sym_follow": 0}}})
    read_frame = proto.encode_read_frame(7, {"type": OpCode.GETATTR})
    write_frame = proto.encode_write_frame(7, {"type": OpCode.GETATTR, "status": 0})
    trailer = proto.encode_readdir_trailer([(b"a", bytes(16)), (b"bb", bytes(range(16)))])
    readdir = proto.encode_write_frame(8, {"type": OpCode.READDIR, "status": 0}, trailer)
    return [b"", b"\0", up, read_frame, write_frame, trailer, readdir, b"none 0 0\nall ffffffff ffffffff\n"]


def test_one_input_lets_only_protocol_errors_out_of_valid_truncated_and_flipped_frames():
    rng = random.Random(7)
    for seed in _seeds():
        cases = [seed] + [seed[:n] for n in sorted({0, 1, 8, 16, 24, len(seed) // 2, max(0, len(seed) - 1)})]
        for _ in range(40):
            flipped = bytearray(seed or b"\0")
            for _ in range(rng.randrange(1, 8)):
                i = rng.randrange(len(flipped))
                flipped[i] ^= 1 << rng.randrange(8)
            cases.append(bytes(flipped))
        for prefix in range(0, 256, 17):  # the first byte picks the op type and ioctl
            cases.append(bytes([prefix]) + seed)
        for case in cases:
            one_input(case)


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                    reason="atheris is not installed here (./dev installs it where a wheel exists: x86-64 Linux)")
def test_a_short_coverage_guided_run_finishes_clean():
    """20,000 guided inputs in CI (about a second); a million under --long, from a fresh seed (-seed=0)."""
    runs = budget(20_000, 1_000_000)
    seed = 0 if runs > 20_000 else 1
    done = subprocess.run([sys.executable, "-m", "tools.fuzz_protocol", f"-runs={runs}", "-max_len=9000", f"-seed={seed}"],
                          capture_output=True, text=True, timeout=120 + runs // 2_000)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"Done {runs} runs" in done.stderr and " cov: " in done.stderr  # instrumented: coverage is reported
