"""The metric table (metrics/table.py): a metric registered once shows in every table."""

from __future__ import annotations

import csv
from collections.abc import Iterator

import numpy as np
import pytest

import depthsmith
from depthsmith.evaluate import evaluate_predictions, format_table, summary_table, write_result
from depthsmith.metrics import METRIC_KEYS, METRICS, Metric, compute_metrics, metrics_in, register_metric
from depthsmith.models.card import build_model_card
from depthsmith.report.table import metrics_table


@pytest.fixture
def mae() -> Iterator[Metric]:
    """A throwaway metric: the mean absolute error in metres, one record and nothing else."""
    metric = register_metric(Metric("mae", "MAE", "lower", {"abs_err": lambda p, g: np.abs(p - g)},
                                    lambda s: s["abs_err"] / s["n"], symbol="MAE", unit="m"))
    try:
        yield metric
    finally:
        METRICS.remove("mae")


def _case() -> tuple[np.ndarray, np.ndarray]:
    gt = np.full((4, 5), 2.0)
    gt[0, 0] = 0.0  # a hole: not a valid pixel
    pred = gt + np.arange(20, dtype=float).reshape(4, 5) / 100.0
    return pred, gt


def test_a_registered_metric_is_in_every_table(mae: Metric, tmp_path) -> None:
    pred, gt = _case()
    expected = np.mean(np.arange(1, 20) / 100.0)  # by hand: |pred - gt| on the 19 valid pixels
    assert "mae" in METRIC_KEYS
    assert compute_metrics(pred, gt, max_depth=10.0)["mae"] == pytest.approx(expected, rel=1e-12)

    result = evaluate_predictions([pred], [gt], protocol="none", max_depth=10.0)
    assert result.metrics["mae"] == pytest.approx(expected, rel=1e-12)
    table = format_table(result)
    assert "MAE" in table.splitlines()[1] and f"{expected:8.4f}" in table.splitlines()[2]
    _, csv_path = write_result(result, tmp_path)
    row = next(csv.DictReader(csv_path.open()))
    assert float(row["mae"]) == pytest.approx(expected, rel=1e-12)

    assert "MAE (m) ↓" in metrics_table({"m": result}, {}).splitlines()[0]
    assert f"{expected:.3f}" in metrics_table({"m": result}, {}).splitlines()[2]
    assert "MAE" in summary_table([("m", "d", result)], with_published=False).splitlines()[0]

    model = depthsmith.create_model("test_resnet", decoder="unet", decoder_kwargs={"filters": [8, 8, 8, 8, 8]})
    model.card = {"evaluation": {"dataset": "d", "metrics": result.metrics}}
    card = str(build_model_card(model))
    head, _, values = [line for line in card.splitlines() if line.startswith("|")][:3]
    column = [c.strip() for c in head.strip("|").split("|")].index("mae")
    assert float(values.strip("|").split("|")[column]) == pytest.approx(expected, abs=5e-5)


def test_a_removed_metric_is_gone_from_the_tables(mae: Metric) -> None:
    METRICS.remove("mae")
    try:
        assert "mae" not in METRIC_KEYS and mae not in metrics_in("eval")
        assert "mae" not in compute_metrics(*_case(), max_depth=10.0)
    finally:
        METRICS.add("mae", mae)  # the fixture removes it again


def test_a_shared_term_name_must_keep_its_formula() -> None:
    with pytest.raises(ValueError, match="sq_err"):
        register_metric(Metric("bad", "bad", "lower", {"sq_err": lambda p, g: np.abs(p - g)}, lambda s: 0.0))
    assert "bad" not in METRICS


def test_headings_say_the_better_direction_and_unit() -> None:
    assert METRICS.get("rmse").heading == "RMSE (m) ↓"
    assert METRICS.get("d1").heading == "δ<1.25 ↑"
    assert [m.key for m in metrics_in("report")] == ["abs_rel", "rmse", "log10", "d1", "d2", "d3", "r2"]


def test_unmasked_protocol_counts_holes_only_in_the_metrics_that_say_so() -> None:
    """The seed's unmasked evaluation: holes (gt = 0) inside the crop count in RMSE as pred^2 and in
    delta as failures; AbsRel stays on the valid pixels. Checked by hand on a 2-pixel image."""
    from depthsmith.metrics import MetricAccumulator

    acc = MetricAccumulator(min_depth=0.0, max_depth=np.inf, holes=True)
    row = acc.update(np.array([[2.0, 3.0]]), np.array([[2.0, 0.0]]))
    assert row["rmse"] == pytest.approx(np.sqrt((0.0 + 9.0) / 2)) and row["d1"] == pytest.approx(0.5)
    assert row["abs_rel"] == 0.0 and row["n_valid"] == 2
