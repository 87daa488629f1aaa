"""`depthsmith eval`: evaluate, print the table, write metrics.json + per_image.csv (+ a report)."""

from __future__ import annotations

import sys
from pathlib import Path

from .core import check_seed_input, evaluate
from .output import format_table, write_result
from .protocols import get_protocol

__all__ = ["evaluate_cli"]


def evaluate_cli(
    model: str,
    data: str,
    protocol: str = "nyu-eigen",
    flip_tta: bool = False,
    align: str = "none",
    batch_size: int = 8,
    device: str = "auto",
    out_dir: str | Path = "eval_out",
    report_dir: str | Path | None = None,
    min_depth: float | None = None,
    max_depth: float | None = None,
    seed_input: str = "model",
    crop_mode: str = "exact",
) -> int:
    """Returns the process exit code: 0 on success, 2 for arguments that do not fit the protocol."""
    try:  # argument mistakes get one line, not a traceback
        check_seed_input(get_protocol(protocol, min_depth, max_depth), seed_input)
    except ValueError as err:
        print(f"depthsmith eval: error: {err}", file=sys.stderr)
        return 2
    keep = 4 if report_dir else 0
    result = evaluate(model, data, protocol=protocol, flip_tta=flip_tta, align=align, batch_size=batch_size,
                      device=device, min_depth=min_depth, max_depth=max_depth, keep_examples=keep,
                      seed_input=seed_input, crop_mode=crop_mode)
    print(format_table(result))
    json_path, csv_path = write_result(result, out_dir)
    print(f"wrote {json_path} and {csv_path}")
    if report_dir:
        from depthsmith.report import write_report

        # A model saved by `depthsmith train` sits in <run>/model: show that run's curves too.
        run = Path(model).parent
        runs = [run] if (run / "metrics.csv").is_file() else []
        path = write_report({_model_label(model): (model, result)}, runs=runs, out_dir=report_dir,
                            device=result.settings.get("device", device))
        print(f"report written to {path}")
    return 0


def _model_label(model: str | Path) -> str:
    from depthsmith.report import model_label

    return model_label(model)
