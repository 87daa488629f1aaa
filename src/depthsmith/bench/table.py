"""The benchmark report as a Markdown table, headed by the run's conditions (CPU, flags, load,
measured GEMM rates), and what the measured rates allow (the bf16 ceiling)."""

from __future__ import annotations

import torch

from ..cpu import RELEVANT_FLAGS, cpu_flags, cpu_model, load_average, relevant_flags, usable_cores
from .run import BenchReport

__all__ = ["bench_table", "ceilings"]


def _fmt(v: float, spec: str) -> str:
    return "-" if v != v else format(v, spec)  # NaN -> "-"


def bench_table(report: BenchReport) -> str:
    """The report as a Markdown table with a header of the run's conditions, then the bf16 ceilings."""
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
    lines += ["", *ceilings(report)]
    return "\n".join(lines)


def ceilings(report: BenchReport) -> list[str]:
    """What the measured GEMM rates allow: a bf16 path running exactly at its floor would be
    ``fp32 eager latency / bf16 floor`` times faster than fp32 eager, whatever the software. A
    speed-up target near that ceiling cannot be met in bf16; it takes fewer operations (int8,
    Winograd) or faster bf16 hardware (AMX)."""
    out = []
    for base in (r for r in report.rows if r.backend == "fp32"):
        bf16_floor = 1000.0 * base.batch * base.gflops / report.rates["bf16"]
        out.append(
            f"ceiling, batch {base.batch}: fp32 eager runs at {base.latency_ms / base.floor_ms:.2f}x its floor; a bf16 "
            f"path at exactly its floor would be {base.latency_ms / bf16_floor:.2f}x fp32 eager")
    return out
