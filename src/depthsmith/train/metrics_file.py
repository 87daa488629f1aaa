"""The run's ``metrics.csv`` (Lightning's CSVLogger): the one reader, and the resume truncation.

Lightning writes one row per logging call, with empty cells for the columns not logged
in that call; ``read_metrics`` keeps each row's non-empty cells as floats. The summary
(``best_metrics``) and the report's training curves (``epoch_curves``) both start from it.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from ..paths import atomic_write_text

__all__ = ["read_metrics", "epoch_curves", "best_metrics", "truncate_metrics"]


def read_metrics(path: str | Path) -> list[dict[str, float]]:
    """One dict per row: {column: value} for the row's non-empty cells; [] if the file is missing."""
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]


def epoch_curves(rows: list[dict[str, float]]) -> dict[str, dict[int, float]]:
    """Per-epoch values: {column: {epoch: value}}, finite values only.

    The last value of each column within an epoch is that epoch's value. A column logged
    both per step and per epoch appears as ``name_epoch``, which is preferred (as ``name``).
    """
    curves: dict[str, dict[int, float]] = {}
    for row in rows:
        epoch = row.get("epoch", math.nan)
        if not math.isfinite(epoch):
            continue
        for key, value in row.items():
            if key not in ("epoch", "step") and math.isfinite(value):
                curves.setdefault(key.removesuffix("_epoch"), {})[int(epoch)] = value
    return curves


def best_metrics(rows: list[dict[str, float]], monitor: str, mode: str) -> dict[str, Any]:
    """The validation row with the best monitored value (or the last epoch's train row)."""
    scored = [r for r in rows if monitor in r and math.isfinite(r[monitor])]
    if scored:
        row = (min if mode == "min" else max)(scored, key=lambda r: r[monitor])
        best = {k: v for k, v in row.items() if k.startswith("val/")}
        best["epoch"] = int(row.get("epoch", -1))
        return best
    epochs = [r for r in rows if "train/loss" in r]
    if epochs:
        best = {k: v for k, v in epochs[-1].items() if k.startswith("train/") and not k.endswith("_step")}
        best["epoch"] = int(epochs[-1].get("epoch", -1))
        return best
    return {}


def truncate_metrics(path: Path, global_step: int) -> None:
    """Drop rows logged after the checkpoint a run resumes from (they will be logged again).

    Works on the raw text cells, not ``read_metrics``' floats, so the kept rows are written
    back exactly as Lightning wrote them.
    """
    if not path.is_file():
        return
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields, rows = reader.fieldnames or [], list(reader)
    keep = [r for r in rows if not r.get("step") or float(r["step"]) < global_step]
    if len(keep) == len(rows):
        return
    with io.StringIO() as buffer:
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(keep)
        atomic_write_text(path, buffer.getvalue())
