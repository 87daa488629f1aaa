"""The paper-style results table (seed paper Tables 2-3): accuracy next to cost.

Cost is measured, not quoted: parameters counted from the model, FLOPs counted by
torch's FLOP counter at the evaluation size, latency timed on this machine's device.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import torch

from ..evaluate import EvalResult
from ..flops import count_flops
from ..metrics import metrics_in

__all__ = ["ModelCost", "measure_cost", "metrics_table"]



@dataclass
class ModelCost:
    params_m: float
    gflops: float
    latency_ms: float
    size: tuple[int, int]
    device: str


@torch.inference_mode()
def _latency_ms(model: torch.nn.Module, height: int, width: int, device: torch.device, repeats: int, warmup: int) -> float:
    x = torch.rand(1, 3, height, width, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):  # first calls pay for allocation and kernel selection
        model(x)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def measure_cost(model: torch.nn.Module, size: tuple[int, int], device: torch.device | str,
                 repeats: int = 10, warmup: int = 2) -> ModelCost:
    """Parameters (M), GFLOPs and median batch-1 latency (ms per image) at `size` on `device`."""
    device = torch.device(device)
    model = model.to(device).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    try:
        gflops = count_flops(model, *size)
    except Exception:  # a model the counter cannot trace still gets a table row
        gflops = math.nan
    return ModelCost(params, gflops, _latency_ms(model, *size, device, repeats, warmup), tuple(size), str(device))


def _fmt(value: float, digits: int) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def metrics_table(results: dict[str, EvalResult], costs: dict[str, ModelCost]) -> str:
    """Markdown table, one row per model: cost columns, then the metrics of its EvalResult (measured
    here); then the published results under the same protocol, marked "from the paper"."""
    columns = metrics_in("report")
    head = ["model", "architecture", "params (M)", "GFLOPs", "latency (ms/img)", *(m.heading for m in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, result in results.items():
        cost = costs.get(label)
        m = result.metrics
        cells = [label, str(result.settings.get("model", "-")),
                 _fmt(cost.params_m, 2) if cost else "-", _fmt(cost.gflops, 2) if cost else "-",
                 _fmt(cost.latency_ms, 1) if cost else "-",
                 *(_fmt(m.get(c.key, math.nan), 3) for c in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    protocols = dict.fromkeys(r.protocol for r in results.values())
    for protocol in protocols:  # the field's numbers under the same protocol, marked as quoted
        from depthsmith.evaluate import published

        for row in published(protocol):
            cells = [f"{row['method']} (from the paper)", row["backbone"],
                     _fmt(row["params_m"], 2) if row.get("params_m") else "-", "-", "-",
                     *(_fmt(row.get(c.key) if row.get(c.key) is not None else math.nan, 3) for c in columns)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
