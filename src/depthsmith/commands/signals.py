"""Ctrl-C and SIGTERM for batch commands: stop between whole files and say how far it got.

SIGINT already raises ``KeyboardInterrupt`` in the main thread; SIGTERM (``kill``, a job
scheduler's stop) would end the process at once, so inside :func:`stop_on_signals` it raises
``KeyboardInterrupt`` too and the command can print its one line. Every output file is written
through ``paths.atomic_write``, whose temp file is deleted when the interrupt passes through it,
so what is on disk is complete. Exit code: 128 + the signal number (130 / 143, the shell's rule).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["stop_on_signals", "Stopped"]


class Stopped:
    """Whether a signal arrived (``fired``) and which: SIGINT unless SIGTERM.

    A signal that lands inside C code (safetensors, numpy, torch converting a buffer) can come
    out as that code's own error, say a ValueError, instead of KeyboardInterrupt: callers treat
    any error raised after ``fired`` as the interrupt.
    """

    fired: bool = False
    signum: int = int(signal.SIGINT)


@contextmanager
def stop_on_signals() -> Iterator[Stopped]:
    stopped = Stopped()
    if threading.current_thread() is not threading.main_thread():  # signal handlers: main thread only
        yield stopped
        return

    def on_signal(signum: int, frame: object) -> None:
        stopped.fired, stopped.signum = True, signum
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one stop is enough while it unwinds
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in before:
        signal.signal(sig, on_signal)
    try:
        yield stopped
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
