"""Inference speed per backend, in one table, with the FLOP floor measured in the same run.

Rows: backend x batch size. Latency is the median of timed calls after one warm-up call
(the warm-up absorbs oneDNN primitive creation, ONNX Runtime's first run and torch.compile's
compilation). The backends are timed round-robin, one call each per round, so that load from
elsewhere on the machine slows them alike and the speed-up ratios hold. The floor is the model's convolution and matmul FLOPs divided by the rate of a
large ``torch.matmul`` measured in this run, at the row's precision: no backend can beat it by
much, so "x floor" says how much is left to gain. int8 rows use the rate of an OpenVINO int8
convolution measured in the same run (``runtime.openvino.int8_conv_rate``).

Rows are the eager references, every backend of ``depthsmith.runtime`` and predict's default
path (backend auto, which says what it chose). With ``loaded`` every row is timed again while a
busy-loop neighbour process runs (``runtime.load.busy_neighbour``).

Accuracy columns compare each row's output with fp32 eager PyTorch (batch 1) on the accuracy
image plus held-out synthetic rooms, and on real frames when a folder of them is given.
A preset built with random weights outputs a near-constant map on which any precision looks
exact, so for presets the depth head is first fitted by least squares to a depth map (the
caller's, or a synthetic room): a stand-in for trained weights, stated in the table header.
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

# agreement, fit_depth_head and synthetic_scene live in bench_sets; imported from here by callers.
from .bench_sets import _load_for_bench, _mean_agreement, _runners, agreement, fit_depth_head, synthetic_scene

__all__ = ["count_flops", "matmul_rate", "fit_depth_head", "synthetic_scene", "agreement", "run_bench",
           "format_table", "bench_cli", "ceilings", "default_backends", "BACKENDS", "BenchRow", "BenchReport"]


def _backends() -> dict[str, str]:
    from .runtime import list_backends
    from .runtime.base import _REGISTRY

    eager = {"fp32": "PyTorch fp32 eager", "channels_last": "fp32 channels_last", "bf16": "bf16 autocast",
             "bf16_cl": "bf16 autocast + channels_last"}
    # Every registered backend is a row (the registry's description is its label), then the public path.
    return {**eager, **{n: f"{n}: {_REGISTRY[n].description}" for n in list_backends()},
            "predict": "predict() default path (backend auto)"}


BACKENDS = _backends()


def default_backends() -> list[str]:
    """The rows run when none are named: installed backends suited to this CPU; torch.compile
    (minutes of compilation per size) only when asked for."""
    from .runtime.base import _REGISTRY

    def wanted(name: str) -> bool:
        spec = _REGISTRY.get(name)
        return spec is None or (name != "torch-compile" and spec.installed() and spec.suits_hardware())

    return [n for n in BACKENDS if wanted(n)]
SMP_SIZE = (256, 320)  # smp's Unet needs sides divisible by 32
ROW_TIME_BUDGET_S = 6.0  # timing stops after this long per row (at least 2 rounds)


def count_flops(model: nn.Module, height: int, width: int) -> float:
    """GFLOPs (1e9 floating-point operations, a multiply-add counted as 2) of one forward pass of
    ``model`` on a 1 x 3 x height x width input: convolutions and matrix multiplies, as counted by
    ``torch.utils.flop_counter.FlopCounterMode`` (element-wise ops and resizes are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    param = next(model.parameters(), None)
    x = torch.rand(1, 3, height, width, device=param.device if param is not None else "cpu")
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 1e9


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


Runner = Callable[[torch.Tensor], torch.Tensor]


def _time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int,
                      budget_s: float = ROW_TIME_BUDGET_S) -> dict[str, float]:
    """Median milliseconds of each ``fns[key]()``, timed round-robin: one call of each per round, so
    that a burst of load from elsewhere on the machine slows every row alike and the ratios between
    rows hold. One warm-up call each first; stops after ``repeats`` rounds, or after 2 rounds once
    the rounds have taken ``budget_s`` per function."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    spent, rounds = 0.0, 0
    while rounds < max(2, repeats) and (rounds < 2 or spent < budget_s * len(fns)):
        for key, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - start)
            spent += times[key][-1]
        rounds += 1
    return {k: 1000.0 * statistics.median(v) for k, v in times.items()}


def run_bench(
    model: str | nn.Module = "enc-dec-irv2",
    height: int = 240,
    width: int = 320,
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
) -> BenchReport:
    """Time every backend at every batch size on the CPU; see the module docstring.

    Accuracy: against fp32 eager on the accuracy image plus ``rooms`` held-out synthetic rooms
    (``rel_diff``/``delta1``) and on the real frames under ``real_dir`` (``*_real``).
    ``loaded``: time every row a second time with a busy-loop neighbour process (``loaded_ms``).
    """
    from .bench_sets import real_frames, synthetic_rooms

    backends = list(backends or default_backends())
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backends {unknown}; choose from {', '.join(BACKENDS)}")
    net, x1, note = _load_for_bench(model, image, depth, height, width)
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
        refs = [net(x) for x in synthetic], [net(x) for x in real]
        runners = {}
        for backend in backends:
            run, precision = _runners(net, backend, height, width)
            acc = [_mean_agreement(run, xs, rs) for xs, rs in zip((synthetic, real), refs)]
            runners[backend] = (run, precision() if callable(precision) else precision, acc)
        smp = _smp_reference() if smp_reference else None
        latency: dict[tuple[str, int], float] = {}
        loaded_latency: dict[tuple[str, int], float] = {}
        for b in batch_sizes:
            xb = x1.expand(b, -1, -1, -1).contiguous()
            fns = {name: (lambda run=run: run(xb)) for name, (run, *_) in runners.items()}
            if smp is not None:
                smp_x = torch.rand(b, 3, *SMP_SIZE)
                fns["smp"] = lambda: smp(smp_x)
            latency.update({(name, b): ms for name, ms in _time_interleaved(fns, repeats).items()})
            _note_choice(runners, b, height, width, "quiet")
            if loaded:
                from .runtime.load import busy_neighbour

                for run, *_ in runners.values():  # auto decides afresh, as a process started under load would
                    getattr(getattr(getattr(run, "predictor", None), "runner", None), "chosen", {}).clear()
                with busy_neighbour(seconds=60.0 + 30.0 * len(fns) * b):
                    timed = _time_interleaved(fns, max(2, repeats // 2), budget_s=ROW_TIME_BUDGET_S / 2)
                loaded_latency.update({(name, b): ms for name, ms in timed.items()})
                _note_choice(runners, b, height, width, "loaded")
        for backend, (_, precision, ((rel, d1), (rel_r, d1_r))) in runners.items():
            report.rows += [BenchRow(backend, b, latency[backend, b], precision, gflops, height * width,
                                     rel_diff=rel, delta1=d1, label=_label(backend, b), rel_diff_real=rel_r,
                                     delta1_real=d1_r, loaded_ms=loaded_latency.get((backend, b), float("nan")))
                            for b in batch_sizes]
        if smp is not None:
            smp_gflops = count_flops(smp, *SMP_SIZE)
            label = f"reference: smp Unet tu-inception_resnet_v2, fp32 eager, {SMP_SIZE[0]}x{SMP_SIZE[1]}"
            report.rows += [BenchRow("smp", b, latency["smp", b], "fp32", smp_gflops, SMP_SIZE[0] * SMP_SIZE[1],
                                     label=label, loaded_ms=loaded_latency.get(("smp", b), float("nan")))
                            for b in batch_sizes]
    for r in report.rows:
        base = report.row("fp32", r.batch) if r.backend != "smp" else None
        r.speedup = base.latency_ms / r.latency_ms if base else float("nan")
        r.floor_ms = 1000.0 * r.batch * r.gflops / rates.get(r.precision if r.precision in rates else "fp32", float("nan"))
    return report


def _label(backend: str, batch: int) -> str:
    if backend != "predict":
        return BACKENDS[backend]
    picked = [f"{state}: {_CHOICES[batch, state]}" for state in ("quiet", "loaded") if (batch, state) in _CHOICES]
    return BACKENDS[backend] + (f" -> {', '.join(picked)}" if picked else "")


def _note_choice(runners: dict[str, Any], batch: int, height: int, width: int, state: str) -> None:
    """Remember which backend predict's auto chose for this batch (quiet and loaded)."""
    predictor = getattr(runners.get("predict", (None,))[0], "predictor", None)
    chosen = getattr(getattr(predictor, "runner", None), "chosen", {}).get((batch, height, width))
    if chosen is not None:
        name, threads = chosen
        _CHOICES[batch, state] = name if threads is None else f"{name} ({threads} threads)"


_CHOICES: dict[tuple[int, str], str] = {}


def _int8_rate(backends: Sequence[str]) -> float:
    """OpenVINO int8 convolution GOP/s when an int8 row is benchmarked (NaN otherwise)."""
    if not any("int8" in b for b in backends):
        return float("nan")
    from .runtime.openvino import int8_conv_rate

    return int8_conv_rate()


def _smp_reference() -> nn.Module:
    """segmentation_models_pytorch Unet on tu-inception_resnet_v2 (random weights), for its speed."""
    import segmentation_models_pytorch as smp

    return smp.Unet("tu-inception_resnet_v2", encoder_weights=None, classes=1).eval()


def _fmt(v: float, spec: str) -> str:
    return "-" if v != v else format(v, spec)  # NaN -> "-"


def format_table(report: BenchReport) -> str:
    """The report as a Markdown table with a header of the run's conditions and the targets."""
    from .runtime.cpu import cpu_flags, cpu_model, load_average, relevant_flags, RELEVANT_FLAGS, usable_cores

    flags = relevant_flags()
    missing = [f for f in RELEVANT_FLAGS if f not in cpu_flags()]
    lines = [
        f"model {report.model} ({report.params_m:.2f}M params), {report.gflops:.1f} GFLOPs per image at "
        f"{report.height}x{report.width}; torch {torch.__version__}, {torch.get_num_threads()} threads",
        f"CPU {cpu_model()}, {usable_cores()} usable cores; flags: {' '.join(flags) or 'none of the relevant'}"
        f" (absent: {' '.join(missing) or 'none'}); load average {load_average():.1f} at the end of the run",
        f"measured GEMM rate ({report.gemm_size}^3 matmul): fp32 {report.rates['fp32']:.0f} GFLOP/s, "
        f"bf16 {report.rates['bf16']:.0f} GFLOP/s; int8 (OpenVINO int8 3x3 convolution, 256 channels) "
        f"{_fmt(report.rates.get('int8', float('nan')), '.0f')} GOP/s; floor = FLOPs / rate at the row's precision",
        *[f"note: {n}" for n in report.notes],
        "",
        "| backend | batch | precision | latency ms | images/s | speed-up vs fp32 eager | floor ms | x floor "
        "| ms/MP | mean rel diff vs fp32 | delta1 agreement | real: rel diff | real: delta1 | loaded ms (x quiet) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.rows:
        loaded = "-" if r.loaded_ms != r.loaded_ms else f"{r.loaded_ms:.1f} ({r.loaded_ms / r.latency_ms:.1f}x)"
        lines.append(
            f"| {r.label or r.backend} | {r.batch} | {r.precision} | {r.latency_ms:.1f} | {r.images_per_s:.2f} | "
            f"{_fmt(r.speedup, '.2f')} | {_fmt(r.floor_ms, '.1f')} | {_fmt(r.latency_ms / r.floor_ms, '.2f')} | "
            f"{r.ms_per_mp:.0f} | {_fmt(100 * r.rel_diff, '.3f')}% | {_fmt(r.delta1, '.4f')} | "
            f"{_fmt(100 * r.rel_diff_real, '.3f')}% | {_fmt(r.delta1_real, '.4f')} | {loaded} |"
        )
    lines += ["", *verdicts(report)]
    return "\n".join(lines)


def verdicts(report: BenchReport) -> list[str]:
    """The issue's targets for predict's default path, each with its measured numbers."""
    out = []
    for r in (r for r in report.rows if r.backend == "predict"):
        checks = [
            (r.speedup >= 2.5, f"speed-up {r.speedup:.2f}x vs fp32 eager (target >= 2.5x)"),
            (r.rel_diff <= 0.01, f"mean rel diff {100 * r.rel_diff:.3f}% (target <= 1%)"),
            (r.delta1 >= 0.99, f"delta1 agreement {r.delta1:.4f} (target >= 0.99)"),
            (r.latency_ms <= 1.5 * r.floor_ms, f"{r.latency_ms / r.floor_ms:.2f}x the floor (target <= 1.5x)"),
        ]
        text = "; ".join(f"{'MET' if ok else 'NOT MET'}: {msg}" for ok, msg in checks)
        out.append(f"targets, predict default path, batch {r.batch}: {text}")
    out += ceilings(report)
    return out


def ceilings(report: BenchReport, target: float = 2.5) -> list[str]:
    """What the measured GEMM rates allow: a bf16 path running exactly at its floor would be
    ``fp32 eager latency / bf16 floor`` times faster than fp32 eager, whatever the software.
    Where that ceiling is near the target, no bf16 path can meet it; it takes fewer operations
    (int8, Winograd) or faster bf16 hardware (AMX)."""
    out = []
    for base in (r for r in report.rows if r.backend == "fp32"):
        bf16_floor = 1000.0 * base.batch * base.gflops / report.rates["bf16"]
        ceiling = base.latency_ms / bf16_floor
        out.append(
            f"ceiling, batch {base.batch}: fp32 eager runs at {base.latency_ms / base.floor_ms:.2f}x its floor; a bf16 "
            f"path at exactly its floor would be {ceiling:.2f}x fp32 eager, so {target:g}x needs bf16 within "
            f"{ceiling / target:.2f}x of its floor")
    return out


def bench_cli(*args: Any, extra: Callable[[BenchReport], list[str]] | None = None, **kwargs: Any) -> int:
    """``depthsmith bench``: prints the table of ``run_bench`` (same arguments), then the lines of
    ``extra(report)`` (the benchmark script's targets); 0 on success."""
    report = run_bench(*args, **kwargs)
    print(format_table(report))
    for line in extra(report) if extra is not None else []:
        print(line)
    return 0
