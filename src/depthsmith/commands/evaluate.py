"""`depthsmith eval`: evaluate, print the table, write metrics.json + per_image.csv (+ a report).

Several ``--model`` and ``--data`` give one combined table (a row per model and dataset) and one
output folder per pair; each dataset config may name its own protocol and crop mode.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..evaluate.core import check_seed_input, evaluate
from ..evaluate.multi import dataset_entries, summary_table
from ..evaluate.output import format_table, result_to_json, write_result
from ..evaluate.protocols import get_protocol
from ..paths import atomic_write_text, check_output_dir

__all__ = ["evaluate_cli"]


def _as_list(value: str | Path | Sequence) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def evaluate_cli(
    model: str | Sequence[str],
    data: str | dict | Sequence,
    protocol: str = "nyu-eigen",
    flip_tta: bool = False,
    align: str = "auto",
    batch_size: int = 8,
    device: str = "auto",
    out_dir: str | Path = "eval_out",
    report_dir: str | Path | None = None,
    min_depth: float | None = None,
    max_depth: float | None = None,
    seed_input: str = "model",
    crop_mode: str = "exact",
    temporal: str = "none",
    working_size: Any = None,
) -> int:
    """Returns the process exit code: 0 on success, 2 for arguments that do not fit the protocol."""
    from ..report import model_label  # matplotlib: only when a command runs
    check_output_dir(out_dir)  # a file or a read-only folder fails now, not after the whole evaluation
    if report_dir:
        check_output_dir(report_dir, "--report")
    models, entries = _as_list(model), dataset_entries(data)
    try:  # argument mistakes get one line, not a traceback
        for entry in entries:
            check_seed_input(get_protocol(entry.protocol or protocol, min_depth, max_depth), seed_input)
    except ValueError as err:
        print(f"depthsmith eval: error: {err}", file=sys.stderr)
        return 2
    single = len(models) == 1 and len(entries) == 1
    keep = 4 if report_dir else 0
    rows = []
    labels = {str(m): model_label(m) for m in models}
    for m in models:
        for entry in entries:
            result = evaluate(m, entry.config, protocol=entry.protocol or protocol, flip_tta=flip_tta, align=align,
                              batch_size=batch_size, device=device, min_depth=min_depth, max_depth=max_depth,
                              keep_examples=keep, seed_input=seed_input, crop_mode=entry.crop_mode or crop_mode,
                              working_size=working_size)
            _add_temporal(result, m, entry.config, temporal, device)
            print(format_table(result))
            folder = Path(out_dir) if single else Path(out_dir) / f"{labels[str(m)]}__{entry.label}"
            json_path, csv_path = write_result(result, folder)
            print(f"wrote {json_path} and {csv_path}")
            rows.append((labels[str(m)], entry.label, result))
    if not single:
        table = summary_table(rows)
        print("\n" + table)
        out = Path(out_dir)
        atomic_write_text(out / "summary.md", table + "\n")
        atomic_write_text(out / "summary.json", json.dumps(
            [{"model": m, "dataset": d, **result_to_json(r)} for m, d, r in rows], indent=2) + "\n")
        print(f"wrote {out / 'summary.md'} and {out / 'summary.json'}")
    if report_dir:
        from ..report import write_report

        # A model saved by `depthsmith train` sits in <run>/model: show that run's curves too.
        runs = [Path(m).parent for m in models if (Path(m).parent / "metrics.csv").is_file()]
        results = {(label if single else f"{label} on {data}"): (m, r)
                   for m, (label, data, r) in zip([m for m in models for _ in entries], rows)}
        path = write_report(results, runs=runs, out_dir=report_dir, device=rows[0][2].settings.get("device", device))
        print(f"report written to {path}")
    return 0


def _add_temporal(result, model: str, config, temporal: str, device: str) -> None:
    """TAE and flicker beside the per-frame metrics when the dataset is a video with poses."""
    from ..data import DATASETS, build_dataset, load_dataset_config
    from ..evaluate.temporal import is_video_dataset, temporal_metrics

    if not is_video_dataset(config):
        kind = DATASETS.get(load_dataset_config(config).get("type")) if isinstance(config, (str, Path, dict)) else None
        if kind is None or not callable(getattr(kind, "pose", None)):
            return  # not a video: nothing is built a second time
    data = config if is_video_dataset(config) else build_dataset(config)
    scores = temporal_metrics(model, data, temporal, device)
    result.metrics.update(tae=scores["tae"], flicker=scores["flicker"])
    result.description += "\n" + scores["description"]
