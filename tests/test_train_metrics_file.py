"""The one reader of a run's metrics.csv: rows, per-epoch curves, best row, resume truncation."""

from __future__ import annotations

import math

from depthsmith.train.metrics_file import best_metrics, epoch_curves, read_metrics, truncate_metrics

# As Lightning's CSVLogger writes it: one row per logging call, empty cells for the other columns.
CSV = """epoch,step,train/loss_step,train/loss_epoch,val/rmse
0,0,0.9,,
0,1,0.8,,
0,1,,0.85,
0,1,,,0.5
1,2,0.7,,
1,3,0.6,,
1,3,,0.65,
1,3,,,nan
"""


def test_rows_curves_and_best(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(CSV)
    rows = read_metrics(path)
    assert len(rows) == 8 and rows[2] == {"epoch": 0.0, "step": 1.0, "train/loss_epoch": 0.85}
    assert math.isnan(rows[-1]["val/rmse"])
    curves = epoch_curves(rows)
    # the last value within an epoch wins; name_epoch appears as name; NaN is left out
    assert curves["train/loss_step"] == {0: 0.8, 1: 0.6}
    assert curves["train/loss"] == {0: 0.85, 1: 0.65}
    assert curves["val/rmse"] == {0: 0.5}
    assert best_metrics(rows, "val/rmse", "min") == {"val/rmse": 0.5, "epoch": 0}
    assert read_metrics(tmp_path / "missing.csv") == []


def test_truncate_keeps_the_earlier_rows_as_written(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text(CSV)
    truncate_metrics(path, 2)
    assert path.read_text() == "".join(CSV.splitlines(keepends=True)[:5])
