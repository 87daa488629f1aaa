"""``depthsmith bench``: the benchmark table of ``depthsmith.bench.run_bench``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..bench import BenchReport, bench_table, run_bench

__all__ = ["bench_cli"]


def bench_cli(*args: Any, extra: Callable[[BenchReport], list[str]] | None = None, **kwargs: Any) -> int:
    """``depthsmith bench``: prints the table of ``run_bench`` (same arguments), then the lines of
    ``extra(report)`` (the benchmark script's targets); 0 on success."""
    report = run_bench(*args, **kwargs)
    print(bench_table(report))
    for line in extra(report) if extra is not None else []:
        print(line)
    return 0
