"""A busy neighbour: a bounded busy-loop subprocess, for measuring how backends behave when
another process shares the cores (the common case on a shared server or a laptop in use).

The child spins in pure Python for at most ``seconds`` and then exits by itself, so a crashed
or interrupted parent never leaves it running; leaving the ``with`` block also stops it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["busy_neighbour"]

_LOOP = """
import os, sys, time
cpu = int(sys.argv[2])
if cpu >= 0 and hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {cpu})
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    pass
"""


@contextmanager
def busy_neighbour(seconds: float = 120.0, cpu: int | None = None) -> Iterator[subprocess.Popen]:
    """Run one busy-loop process for the duration of the block (at most ``seconds``), pinned to
    core ``cpu`` if given, else free to move between cores (as an unrelated process would)."""
    proc = subprocess.Popen([sys.executable, "-c", _LOOP, str(float(seconds)), str(-1 if cpu is None else cpu)])
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
