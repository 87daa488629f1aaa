"""``--backend auto``: pick the fastest accurate backend by measuring, once per machine, model and size.

Like cuDNN's benchmark mode: on the first batch of a given B x H x W, each candidate backend
(installed, suited to this CPU, ``auto=True`` in the registry) is built, called once to warm up,
then timed over a few calls on that very batch; its output is compared with fp32 PyTorch on the
same batch, and a candidate whose mean relative difference exceeds ``MAX_REL_DIFF`` is never picked
(int8 is not a candidate at all: its cost is measured at export, on the user's images). The
choice is stored in ``<cache dir>/backend-choices.json`` under a key of the machine (CPU model,
flags, usable cores), the model (hash of weights and config, or file path + mtime), the input size,
the precision asked for and whether the machine was busy (see ``cpu.machine_busy``): under load
torch's OpenMP threads stall on descheduled siblings while ONNX Runtime and OpenVINO degrade
gracefully, so a quiet machine's choice does not carry over; when busy, torch candidates are also
probed with one thread fewer than the cores.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .base import Runner, agreement, get_backend, list_backends, model_meta
from .cache import cache_dir, model_key
from ..cpu import load_average, machine_busy, machine_key, runnable_others, usable_cores

__all__ = ["AutoRunner", "Probe", "choose", "timed_ms", "candidates", "MAX_REL_DIFF", "CACHE_FILE"]

MAX_REL_DIFF = 0.01  # auto never picks a backend further than this from fp32 (mean relative difference)
CACHE_FILE = "backend-choices.json"
PROBE_CALLS = 3
# A warm-up call longer than this is timed by one more call, not PROBE_CALLS: a Depth Pro-sized model
# takes a minute a call on a small CPU, and four calls for each of five candidates would be twenty.
SLOW_CALL_S = 5.0


@dataclass
class Probe:
    backend: str
    threads: int | None
    ms: float
    rel_diff: float
    error: str = ""

    @property
    def label(self) -> str:
        return self.backend if self.threads is None else f"{self.backend} ({self.threads} threads)"

    @property
    def eligible(self) -> bool:
        return not self.error and self.rel_diff <= MAX_REL_DIFF


def timed_ms(runner: Callable[[torch.Tensor], Any], x: torch.Tensor, calls: int = PROBE_CALLS,
             slow_s: float = SLOW_CALL_S) -> float:
    """Median milliseconds of ``calls`` calls after one warm-up call (oneDNN primitive creation,
    OpenVINO's first inference, weight packing for this shape); one call when the warm-up took over
    ``slow_s`` seconds (a call that long is not at the mercy of timer noise)."""
    start = time.perf_counter()
    runner(x)
    if time.perf_counter() - start > slow_s:
        calls = 1
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        runner(x)
        times.append(time.perf_counter() - start)
    return 1000.0 * statistics.median(times)


def candidates(precision: str = "auto", busy: bool = False, cores: int | None = None) -> list[tuple[str, int | None]]:
    """(backend, threads) pairs auto measures: installed, suited to this CPU, allowed by ``precision``."""
    out: list[tuple[str, int | None]] = []
    for name in list_backends():
        b = get_backend_if_installed(name)
        if b is None or not b.auto or not b.suits_hardware():
            continue
        if precision != "auto" and b.precision != precision:
            continue
        out.append((name, None))
        threads = min(torch.get_num_threads(), usable_cores() if cores is None else cores)
        if busy and name.startswith("torch") and threads > 1:
            out.append((name, threads - 1))
    return out


def get_backend_if_installed(name: str) -> Any:
    try:
        return get_backend(name)
    except ValueError:
        return None


def choose(probes: Sequence[Probe]) -> tuple[Probe, str]:
    """The fastest eligible probe and a reason: the timings of the eligible ones, then what was excluded."""
    eligible = sorted((p for p in probes if p.eligible), key=lambda p: p.ms)
    if not eligible:
        raise RuntimeError("backend auto: no candidate ran within the accuracy gate: "
                           + "; ".join(f"{p.label}: {p.error or f'{100 * p.rel_diff:.2f}% from fp32'}" for p in probes))
    best = eligible[0]
    parts = [f"{best.ms:.0f} ms"] + [f"{p.label} {p.ms:.0f} ms" for p in eligible[1:]]
    excluded = [f"{p.label}: {p.error or f'{100 * p.rel_diff:.2f}% from fp32, over the {100 * MAX_REL_DIFF:g}% gate'}"
                for p in probes if not p.eligible]
    reason = parts[0] + (" vs " + ", ".join(parts[1:]) if len(parts) > 1 else "")
    if excluded:
        reason += " (excluded: " + "; ".join(excluded) + ")"
    return best, reason


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):  # missing or corrupt: measure again
        return {}


def _write_cache(path: Path, key: str, entry: dict[str, Any]) -> None:
    data = _read_cache(path)
    data[key] = entry
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)  # atomic: two processes probing at once leave a whole file


class AutoRunner(Runner):
    """Chooses its backend on the first batch of each size (see the module docstring).

    ``probe``: function (runner, batch) -> milliseconds, ``timed_ms`` by default (tests inject fake
    timings). ``cache``: the JSON file, ``<cache dir>/backend-choices.json`` by default.
    ``busy``: force the load state (default: measured by ``cpu.runnable_others()`` at each decision).
    """

    def __init__(self, model: Any, device: Any = "cpu", precision: str = "auto",
                 probe: Callable[[Runner, torch.Tensor], float] = timed_ms, cache: str | Path | None = None,
                 busy: bool | None = None, verbose: bool = True) -> None:
        self.model, self.requested_precision, self.probe = model, precision, probe
        self.cache = Path(cache) if cache is not None else cache_dir() / CACHE_FILE
        self.busy, self.verbose = busy, verbose
        self.name, self.is_metric, self.max_depth = model_meta(model)
        self.model_key = model_key(model)
        self.runners: dict[tuple[str, int | None], Runner] = {}
        self.chosen: dict[tuple[int, ...], tuple[str, int | None]] = {}
        self.current: Runner | None = None
        self.last_reason = ""
        self.last_probes: list[Probe] = []

    @property
    def backend(self) -> str:  # type: ignore[override]
        return self.current.backend if self.current is not None else "auto"

    @property
    def precision(self) -> str:  # type: ignore[override]
        return self.current.precision if self.current is not None else self.requested_precision

    def _runner(self, name: str, threads: int | None) -> Runner:
        key = (name, threads)
        if key not in self.runners:
            options = {"threads": threads} if threads is not None else {}
            self.runners[key] = get_backend(name).factory(self.model, device="cpu", **options)
        return self.runners[key]

    def cache_key(self, shape: tuple[int, ...], busy: bool) -> str:
        return "|".join([machine_key(), self.model_key, "x".join(map(str, shape)), self.requested_precision,
                         "busy" if busy else "quiet"])

    def decide(self, x: torch.Tensor) -> tuple[str, int | None]:
        shape = (x.shape[0], *x.shape[2:])
        others = runnable_others() if self.busy is None else float(self.busy)
        busy = machine_busy(others)
        key = self.cache_key(shape, busy)
        names = candidates(self.requested_precision, busy)
        # Backends that cannot run this model (a declared or recorded export failure, or an export too
        # big for auto to make: cache.export_refusal) are left out before anything is built or timed,
        # and the reason is kept with the choice.
        refused = [(n, t, why) for n, t in names if (why := get_backend(n).why_not(self.model))]
        names = [(n, t) for n, t in names if not any(n == r[0] and t == r[1] for r in refused)]
        entry = _read_cache(self.cache).get(key)
        where = f"{shape[1]}x{shape[2]}" + (f" batch {shape[0]}" if shape[0] > 1 else "")
        state = (f" on a busy machine ({others:g} runnable threads of other processes, load average "
                 f"{load_average():.1f} on {usable_cores()} cores)" if busy and self.busy is None else "")
        if entry and (entry["backend"], entry["threads"]) in [tuple(c) for c in names]:
            choice = (entry["backend"], entry["threads"])
            self.last_reason = (f"backend auto: {Probe(*choice, 0, 0).label} ({entry['reason']}; probed at {where}"
                                f"{state}; cached choice from {self.cache})")
        else:
            start = time.perf_counter()
            reference = self._runner("torch-fp32", None)(x)
            reference_ms = 1000.0 * (time.perf_counter() - start)
            probes = [Probe(n, t, float("inf"), float("inf"), f"not tried: {why.splitlines()[0]}") for n, t, why in refused]
            for name, threads in names:
                try:
                    runner = self._runner(name, threads)
                    if (name, threads) == ("torch-fp32", None) and reference_ms > 1000.0 * SLOW_CALL_S:
                        # A call this slow is timed once (timed_ms), and the reference was that call:
                        # two more would cost Depth Pro's first image 3.5 minutes on 2 cores.
                        ms, rel = reference_ms, 0.0
                    else:
                        rel = agreement(runner(x), reference)[0] if name != "torch-fp32" else 0.0
                        ms = float(self.probe(runner, x))
                    probes.append(Probe(name, threads, ms, rel))
                except Exception as err:  # a backend that cannot run this model is skipped, and said so
                    probes.append(Probe(name, threads, float("inf"), float("inf"), f"{type(err).__name__}: {err}"))
                self._keep_best(probes)
            best, reason = choose(probes)
            choice = (best.backend, best.threads)
            self.last_probes = probes
            _write_cache(self.cache, key, {"backend": best.backend, "threads": best.threads, "reason": reason,
                                           "probes": [asdict(p) for p in probes], "time": time.time()})
            self.last_reason = f"backend auto: {best.label} ({reason}; probed at {where}{state}; cached in {self.cache})"
            # Free what was not chosen: an ONNX Runtime session or a compiled OpenVINO model holds
            # its own copy of the weights.
            for other in [k for k in self.runners if k != choice]:
                del self.runners[other]
        if self.verbose:
            print(self.last_reason)
        return choice

    def _keep_best(self, probes: Sequence[Probe]) -> None:
        """Free the runner just probed unless it is the fastest eligible so far (and free the one it
        beat): an ONNX Runtime session or a compiled OpenVINO model holds its own copy of the weights,
        so keeping every candidate until the end would hold five copies of a 3.8 GB Depth Pro."""
        eligible = [p for p in probes if p.eligible]
        best = min(eligible, key=lambda p: p.ms) if eligible else None
        for p in probes:
            key = (p.backend, p.threads)
            if best is None or key != (best.backend, best.threads):
                self.runners.pop(key, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], *x.shape[2:])
        if shape not in self.chosen:
            self.chosen[shape] = self.decide(x)
        self.current = self._runner(*self.chosen[shape])
        return self.current(x)
