"""Writing an EvalResult: the printed table, metrics.json and per_image.csv.

Every output carries the protocol's label; the seed protocol's says NON-STANDARD in the
table title, in the JSON and in a column of every CSV row, so no number of it can be
copied without the warning. Files are written atomically (``paths.atomic_write``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from ..metrics import metrics_in
from ..paths import atomic_write, atomic_write_text
from .scorer import EvalResult

__all__ = ["format_table", "write_result", "result_to_json"]


def _title(result: EvalResult) -> str:
    status = "standard" if result.standard else "NON-STANDARD"
    return f"{status} protocol '{result.protocol}' [{result.label}]"


def format_table(result: EvalResult) -> str:
    """The metric table as plain text, with the protocol in its title and description below."""
    m, columns = result.metrics, metrics_in("eval")
    head = " ".join(f"{c.title:>8s}" for c in columns)
    vals = " ".join(f"{m[c.key]:8.4f}" if math.isfinite(m.get(c.key, math.nan)) else f"{'nan':>8s}" for c in columns)
    lines = [_title(result), head, vals,
             f"{int(m['n_images'])} images, {int(m['n_valid'])} evaluated pixels"
             + (f", {m['r2_dropped']} images with R^2 outside [0, 1] dropped from R^2" if "r2_dropped" in m else "")
             + (f", {m['n_skipped']} images SKIPPED (no valid ground-truth pixel)" if m.get("n_skipped") else "")]
    if "tae" in m:  # a video dataset (evaluate/temporal.py)
        flick = m.get("flicker", math.nan)
        lines.append(f"TAE {m['tae']:.3f} %, flicker " + (f"{flick:.3f} %" if math.isfinite(flick) else "-"))
    if not result.standard:
        lines.insert(0, "!" * 8 + " NON-STANDARD EVALUATION: not comparable with published results " + "!" * 8)
    lines.append(result.description)
    return "\n".join(lines)


def _clean(value: Any) -> Any:
    """JSON has no NaN: write null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def result_to_json(result: EvalResult) -> dict[str, Any]:
    return {
        "protocol": result.protocol,
        "status": "standard" if result.standard else "NON-STANDARD",
        "label": result.label,
        "description": result.description,
        "metrics": {k: _clean(v) for k, v in result.metrics.items()},
        "settings": result.settings,
    }


def write_result(result: EvalResult, out_dir: str | Path) -> tuple[Path, Path]:
    """Write metrics.json and per_image.csv into out_dir; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, csv_path = out / "metrics.json", out / "per_image.csv"
    atomic_write_text(json_path, json.dumps(result_to_json(result), indent=2) + "\n")
    protocol_cell = f"{result.protocol} ({'standard' if result.standard else 'NON-STANDARD'})"
    columns = ["name", *(c.key for c in metrics_in("eval")), "n_valid", "protocol"]
    with atomic_write(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in result.rows:
            writer.writerow({**{k: _clean(v) for k, v in row.items()}, "protocol": protocol_cell})
    return json_path, csv_path
