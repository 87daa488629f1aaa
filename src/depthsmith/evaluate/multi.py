"""Several models on several datasets in one call: one table with a row per (model, dataset),
as the zero-shot papers print it. Each dataset brings its protocol (a dataset config may say
``protocol: kitti-garg`` and ``crop_mode: literal`` beside its reader options)."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..metrics import metrics_in
from .scorer import EvalResult

__all__ = ["DatasetEntry", "dataset_entry", "dataset_entries", "summary_table", "published"]


@dataclass
class DatasetEntry:
    label: str
    config: Any  # a build_dataset config dict, or a dataset object
    protocol: str | None
    crop_mode: str | None


def dataset_entries(data: Any) -> list[DatasetEntry]:
    """One entry per dataset: a list of configs (paths, or dicts with a 'type') is several datasets;
    anything else (one config, or a dataset object, which may itself be a list of samples) is one."""
    def is_config(d: Any) -> bool:
        return isinstance(d, (str, Path)) or (isinstance(d, Mapping) and "type" in d)

    several = isinstance(data, (list, tuple)) and data and all(is_config(d) for d in data)
    return [dataset_entry(d) for d in (data if several else [data])]


def dataset_entry(data: Any) -> DatasetEntry:
    """A dataset argument (YAML path, config dict or dataset object) with its evaluation keys split off."""
    if isinstance(data, (str, Path)):
        from depthsmith.data import load_dataset_config

        label, cfg = Path(data).stem, dict(load_dataset_config(data))
    elif isinstance(data, Mapping):
        cfg = copy.deepcopy(dict(data))
        label = str(cfg.get("label") or cfg.get("type", "data"))
    else:
        return DatasetEntry(getattr(data, "name", type(data).__name__), data, None, None)
    label = str(cfg.pop("label", label))
    return DatasetEntry(label, cfg, cfg.pop("protocol", None), cfg.pop("crop_mode", None))


def published(protocol: str) -> list[dict[str, Any]]:
    """The field's published numbers under ``protocol`` (package data ``depthsmith/results/<protocol>.csv``),
    one dict per method with float metrics (None where the paper gives none) and its ``source``."""
    import csv
    from importlib import resources

    path = resources.files("depthsmith") / "results" / f"{protocol}.csv"
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            rows.append({k: (float(v) if v else None) if k not in ("method", "backbone", "source") else v
                         for k, v in row.items()})
    return rows


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) else "nan"
    return str(value)


def summary_table(rows: Sequence[tuple[str, str, EvalResult]], with_published: bool = True) -> str:
    """Markdown table, one row per (model, dataset), marked "measured here"; below them, for each
    protocol used, the published results of the field marked "from the paper". NON-STANDARD
    protocols say so in their rows."""
    columns = [m.key for m in metrics_in("summary")]  # the metrics every zero-shot table prints
    head = ["model", "dataset", "protocol", "images", *(m.title for m in metrics_in("summary")), "numbers"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model, data, result in rows:
        status = "" if result.standard else " (NON-STANDARD)"
        values = [_cell(result.metrics.get(k, math.nan)) for k in columns]
        lines.append("| " + " | ".join([model, data, f"{result.protocol}{status}",
                                        str(int(result.metrics["n_images"])), *values, "measured here"]) + " |")
    if with_published:
        for protocol in dict.fromkeys(r.protocol for _, _, r in rows):
            for row in published(protocol):
                values = ["-" if row.get(k) is None else f"{row[k]:.3f}" for k in columns]
                lines.append("| " + " | ".join([f"{row['method']} ({row['backbone']})", "-", protocol, "-", *values,
                                                "from the paper"]) + " |")
    return "\n".join(lines)
