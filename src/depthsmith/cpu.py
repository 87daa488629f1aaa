"""What this machine is: CPU model, the instruction-set flags that decide which precision is
fast, the cores this process may use, and whether something else is keeping them busy.

Flags are read from ``/proc/cpuinfo`` because torch's own checks answer what torch *can* run,
not what the hardware runs natively: ``torch.backends.mkldnn.is_bf16_supported()`` says yes on
plain AVX-512 CPUs, where bf16 is emulated and about 4x slower than fp32.
"""

from __future__ import annotations

import hashlib
import os
import platform
from functools import lru_cache
from pathlib import Path

__all__ = ["cpu_flags", "cpu_model", "usable_cores", "has_native_bf16", "has_int8_dot", "relevant_flags",
           "machine_key", "load_average", "machine_busy", "runnable_others", "RELEVANT_FLAGS"]

# The flags that change which backend and precision is fastest, in the order a table names them.
RELEVANT_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")


@lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no flags known, every check below answers "no"
        return ""


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo does not exist)."""
    line = next((ln for ln in _cpuinfo().splitlines() if ln.startswith("flags")), "")
    return frozenset(line.split(":", 1)[1].split()) if ":" in line else frozenset()


def cpu_model() -> str:
    line = next((ln for ln in _cpuinfo().splitlines() if ln.startswith("model name")), "")
    return line.split(":", 1)[1].strip() if ":" in line else (platform.processor() or platform.machine())


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, which containers and taskset narrow)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU computes bf16 in hardware (AVX-512 BF16 or AMX-BF16)."""
    flags = cpu_flags() if flags is None else flags
    return "avx512_bf16" in flags or "amx_bf16" in flags


def has_int8_dot(flags: frozenset[str] | None = None) -> bool:
    """True when the CPU has int8 dot-product instructions (VNNI or AMX-INT8): where int8 pays."""
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & flags)


def relevant_flags(flags: frozenset[str] | None = None) -> list[str]:
    """Which of ``RELEVANT_FLAGS`` this CPU has."""
    flags = cpu_flags() if flags is None else flags
    return [f for f in RELEVANT_FLAGS if f in flags]


def machine_key() -> str:
    """Identifies a machine for cached measurements: CPU model, relevant flags and usable cores
    (a probe on 2 cores says nothing about 32)."""
    text = f"{cpu_model()}|{','.join(relevant_flags())}|{usable_cores()}"
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def load_average() -> float:
    """The 1-minute load average (NaN where the OS has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def _running_threads(stat_files: list[Path]) -> int:
    count = 0
    for f in stat_files:
        try:
            count += f.read_text().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):  # the thread ended meanwhile
            pass
    return count


def runnable_others(samples: int = 10, interval_s: float = 0.01) -> float:
    """Median over ``samples`` of how many threads of *other* processes are runnable right now
    (``/proc/loadavg``'s running count minus this process's running threads, which include
    OpenMP threads still spinning after a call). 0 where /proc is not available."""
    import statistics
    import time

    loadavg, tasks = Path("/proc/loadavg"), Path("/proc/self/task")
    if not loadavg.is_file() or not tasks.is_dir():
        return 0.0
    counts = []
    for _ in range(samples):
        try:
            running = int(loadavg.read_text().split()[3].split("/")[0])
            own = _running_threads([t / "stat" for t in tasks.iterdir()])
        except (OSError, ValueError, IndexError):
            return 0.0
        counts.append(max(0, running - own))
        time.sleep(interval_s)
    return float(statistics.median(counts))


def machine_busy(others: float | None = None) -> bool:
    """True when another process keeps a core busy (``runnable_others() >= 1``).

    Torch's OpenMP threads, one per core, meet at a barrier after every operator; when any core is
    taken by someone else, the whole team waits for the descheduled thread (measured on 2 cores:
    fp32 eager 29x slower with one busy neighbour, ONNX Runtime and OpenVINO about 2x), so
    choices measured on a quiet machine do not carry over. The instantaneous run queue is used
    rather than the load average, which lags by a minute."""
    others = runnable_others() if others is None else others
    return others >= 1
