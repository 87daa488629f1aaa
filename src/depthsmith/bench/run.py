"""Inference speed per backend, in one table, with the FLOP floor measured in the same run.

Rows: backend x batch size. Latency is the median of timed calls after one warm-up call
(the warm-up absorbs oneDNN primitive creation, ONNX Runtime's first run and torch.compile's
compilation). The backends are timed round-robin, one call each per round, so that load from
elsewhere on the machine slows them alike and the speed-up ratios hold. The floor is the model's
convolution and matmul FLOPs divided by the rate of a large ``torch.matmul`` measured in this run,
at the row's precision: no backend can beat it by much, so "x floor" says how much is left to
gain. int8 rows use the rate of an OpenVINO int8 convolution measured in the same run
(``runtime.openvino_ir.int8_conv_rate``).

With ``loaded`` every row is timed again while a busy-loop neighbour process runs
(``runtime.load.busy_neighbour``).

Accuracy columns compare each row's output with fp32 eager PyTorch (batch 1) on the accuracy
image plus held-out synthetic rooms, and on real frames when a folder of them is given.
A preset built with random weights outputs a near-constant map on which any precision looks
exact, so for presets the depth head is first fitted by least squares to a depth map (the
caller's, or a synthetic room): a stand-in for trained weights, stated in the table header.
The targets a benchmark checks these numbers against live with the benchmark script
(``benchmarks/bench_inference.py``), not here.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..flops import count_flops
from .inputs import bench_size, load_for_bench, real_frames, synthetic_rooms
from .rows import BACKENDS, default_backends, mean_agreement, row_runner
from ..errors import InputError

__all__ = ["run_bench", "matmul_rate", "BenchRow", "BenchReport", "SMP_SIZE"]

SMP_SIZE = (256, 320)  # smp's Unet needs sides divisible by 32
ROW_TIME_BUDGET_S = 6.0  # timing stops after this long per row (at least 2 rounds)


def matmul_rate(dtype: torch.dtype = torch.float32, n: int = 4096, repeats: int = 3) -> float:
    """GFLOP/s of an n x n @ n x n ``torch.matmul`` on the CPU (best of ``repeats``)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(dtype)
    b = torch.randn(n, n, generator=gen).to(dtype)
    a @ b  # warm-up: thread pool, packing buffers
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


@dataclass
class BenchRow:
    backend: str
    batch: int
    latency_ms: float
    precision: str = "fp32"
    gflops: float = 0.0  # per image
    pixels: int = 0  # per image
    speedup: float = float("nan")
    floor_ms: float = float("nan")
    rel_diff: float = float("nan")  # vs fp32 eager: the accuracy image and held-out synthetic rooms
    delta1: float = float("nan")
    label: str = ""
    rel_diff_real: float = float("nan")  # vs fp32 eager on real frames (NaN: none available)
    delta1_real: float = float("nan")
    loaded_ms: float = float("nan")  # latency with a busy-loop neighbour process (NaN: not measured)

    @property
    def images_per_s(self) -> float:
        return 1000.0 * self.batch / self.latency_ms

    @property
    def ms_per_mp(self) -> float:
        return self.latency_ms / self.batch / (self.pixels / 1e6)


@dataclass
class BenchReport:
    model: str
    height: int
    width: int
    gflops: float
    params_m: float
    rates: dict[str, float]  # GEMM GFLOP/s per precision (int8: OpenVINO int8 convolution GOP/s)
    gemm_size: int = 4096
    rows: list[BenchRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, backend: str, batch: int) -> BenchRow | None:
        return next((r for r in self.rows if r.backend == backend and r.batch == batch), None)


def _time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int, budget_s: float = ROW_TIME_BUDGET_S,
                      warmup: bool = True, min_rounds: int = 2) -> dict[str, float]:
    """Median milliseconds of each ``fns[key]()``, timed round-robin: one call of each per round, so
    that a burst of load from elsewhere on the machine slows every row alike and the ratios between
    rows hold. One warm-up call each first; stops after ``repeats`` rounds, or after 2 rounds once
    the rounds have taken ``budget_s`` per function. ``warmup=False`` and ``min_rounds=1``: for calls
    of minutes (a Depth Pro-shaped model), whose accuracy pass has already warmed them up."""
    for fn in fns.values() if warmup else ():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    spent, rounds = 0.0, 0
    while rounds < max(min_rounds, repeats) and (rounds < min_rounds or spent < budget_s * len(fns)):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
            spent += times[key][-1]
        rounds += 1
    return {k: 1000.0 * statistics.median(v) for k, v in times.items()}


def run_bench(
    model: str | nn.Module = "enc-dec-irv2",
    height: int | None = None,
    width: int | None = None,
    batch_sizes: Sequence[int] = (1, 8),
    backends: Sequence[str] | None = None,
    repeats: int = 10,
    smp_reference: bool = False,
    image: Any = None,
    depth: Any = None,
    gemm_size: int = 4096,
    rooms: int = 3,
    real_dir: str | Path | None = None,
    loaded: bool = False,
    quick: bool = False,
) -> BenchReport:
    """Time every backend at every batch size on the CPU; see the module docstring.

    Accuracy: against fp32 eager on the accuracy image plus ``rooms`` held-out synthetic rooms
    (``rel_diff``/``delta1``) and on the real frames under ``real_dir`` (``*_real``).
    ``loaded``: time every row a second time with a busy-loop neighbour process (``loaded_ms``).
    ``height`` x ``width``: default, the model's working size (``resize.example_size``).
    ``quick``: no warm-up call and a single timed round per row (the accuracy pass has called every row
    once at this size already), for models whose one call takes minutes.
    """
    backends = list(backends or default_backends())
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise InputError(f"unknown backends {unknown}; choose from {', '.join(BACKENDS)}")
    height, width = bench_size(model, height, width)
    net, x1, note = load_for_bench(model, image, depth, height, width)
    rates = {"fp32": matmul_rate(torch.float32, gemm_size), "bf16": matmul_rate(torch.bfloat16, gemm_size),
             "int8": _int8_rate(backends)}
    gflops = count_flops(net, height, width)
    report = BenchReport(getattr(net, "name", str(model)), height, width, gflops,
                         sum(p.numel() for p in net.parameters()) / 1e6, rates, gemm_size)
    report.notes += [n for n in (note,) if n]
    synthetic = [x1, *synthetic_rooms(rooms, height, width)]
    real, real_note = real_frames(real_dir, height, width)
    report.notes.append(f"accuracy vs fp32 eager on {'the given image' if image is not None else 'a synthetic room'}"
                        f" + {rooms} held-out synthetic rooms; {real_note}")
    with torch.inference_mode():
        runners = _accuracy(net, backends, height, width, synthetic, real)
        smp = _smp_reference() if smp_reference else None
        timing = _Timing()
        for b in batch_sizes:
            _time_batch(timing, runners, smp, x1, b, repeats, loaded, quick)
        for backend, (_, precision, ((rel, d1), (rel_r, d1_r))) in runners.items():
            report.rows += [BenchRow(backend, b, timing.quiet[backend, b], precision, gflops, height * width,
                                     rel_diff=rel, delta1=d1, label=_label(backend, b, timing.choices),
                                     rel_diff_real=rel_r, delta1_real=d1_r,
                                     loaded_ms=timing.loaded.get((backend, b), float("nan")))
                            for b in batch_sizes]
        if smp is not None:
            smp_gflops = count_flops(smp, *SMP_SIZE)
            label = f"reference: smp Unet tu-inception_resnet_v2, fp32 eager, {SMP_SIZE[0]}x{SMP_SIZE[1]}"
            report.rows += [BenchRow("smp", b, timing.quiet["smp", b], "fp32", smp_gflops, SMP_SIZE[0] * SMP_SIZE[1],
                                     label=label, loaded_ms=timing.loaded.get(("smp", b), float("nan")))
                            for b in batch_sizes]
    for r in report.rows:
        base = report.row("fp32", r.batch) if r.backend != "smp" else None
        r.speedup = base.latency_ms / r.latency_ms if base else float("nan")
        r.floor_ms = 1000.0 * r.batch * r.gflops / rates.get(r.precision if r.precision in rates else "fp32", float("nan"))
    return report


def _accuracy(net: nn.Module, backends: Sequence[str], height: int, width: int, synthetic: list[torch.Tensor],
              real: list[torch.Tensor]) -> dict[str, tuple[Any, str, list[tuple[float, float]]]]:
    """Each row's runner, its precision and its agreement with fp32 eager on the synthetic and real sets."""
    refs = [net(x) for x in synthetic], [net(x) for x in real]
    runners = {}
    for backend in backends:
        run, precision = row_runner(net, backend, height, width)
        # fp32 eager is the reference itself: (0, 1) without running it again
        acc = [((0.0, 1.0) if xs else (float("nan"), float("nan"))) if backend == "fp32" else
               mean_agreement(run, xs, rs) for xs, rs in zip((synthetic, real), refs)]
        runners[backend] = (run, precision() if callable(precision) else precision, acc)
    return runners


@dataclass
class _Timing:
    quiet: dict[tuple[str, int], float] = field(default_factory=dict)  # (row, batch) -> median ms
    loaded: dict[tuple[str, int], float] = field(default_factory=dict)  # the same with a busy neighbour
    choices: dict[tuple[int, str], str] = field(default_factory=dict)  # what predict's auto picked, per batch/state


def _time_batch(timing: _Timing, runners: dict[str, Any], smp: nn.Module | None, x1: torch.Tensor, b: int,
                repeats: int, loaded: bool, quick: bool = False) -> None:
    """Time every row at batch ``b`` round-robin (and again under load when ``loaded``)."""
    height, width = x1.shape[-2:]
    xb = x1.expand(b, -1, -1, -1).contiguous()
    fns = {name: (lambda run=run: run(xb)) for name, (run, *_) in runners.items()}
    if smp is not None:
        smp_x = torch.rand(b, 3, *SMP_SIZE)
        fns["smp"] = lambda: smp(smp_x)
    timed = _time_interleaved(fns, repeats, warmup=not quick, min_rounds=1 if quick else 2)
    timing.quiet.update({(name, b): ms for name, ms in timed.items()})
    _note_choice(runners, b, height, width, "quiet", timing.choices)
    if not loaded:
        return
    from ..runtime.load import busy_neighbour

    for run, *_ in runners.values():  # auto decides afresh, as a process started under load would
        getattr(getattr(getattr(run, "predictor", None), "runner", None), "chosen", {}).clear()
    with busy_neighbour(seconds=60.0 + 30.0 * len(fns) * b):
        timed = _time_interleaved(fns, max(2, repeats // 2), budget_s=ROW_TIME_BUDGET_S / 2)
    timing.loaded.update({(name, b): ms for name, ms in timed.items()})
    _note_choice(runners, b, height, width, "loaded", timing.choices)


def _label(backend: str, batch: int, choices: dict[tuple[int, str], str]) -> str:
    if backend != "predict":
        return BACKENDS[backend]
    picked = [f"{state}: {choices[batch, state]}" for state in ("quiet", "loaded") if (batch, state) in choices]
    return BACKENDS[backend] + (f" -> {', '.join(picked)}" if picked else "")


def _note_choice(runners: dict[str, Any], batch: int, height: int, width: int, state: str,
                 choices: dict[tuple[int, str], str]) -> None:
    """Remember which backend predict's auto chose for this batch (quiet and loaded)."""
    predictor = getattr(runners.get("predict", (None,))[0], "predictor", None)
    chosen = getattr(getattr(predictor, "runner", None), "chosen", {}).get((batch, height, width))
    if chosen is not None:
        name, threads = chosen
        choices[batch, state] = name if threads is None else f"{name} ({threads} threads)"


def _int8_rate(backends: Sequence[str]) -> float:
    """OpenVINO int8 convolution GOP/s when an int8 row is benchmarked (NaN otherwise)."""
    if not any("int8" in b for b in backends):
        return float("nan")
    from ..runtime.openvino_ir import int8_conv_rate

    return int8_conv_rate()


def _smp_reference() -> nn.Module:
    """segmentation_models_pytorch Unet on tu-inception_resnet_v2 (random weights), for its speed."""
    import segmentation_models_pytorch as smp

    return smp.Unet("tu-inception_resnet_v2", encoder_weights=None, classes=1).eval()
