"""Reports: the figures one by one, the cost table, and a report end to end from two trained models."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from depthsmith import load_model
from torch import nn

from depthsmith.commands.evaluate import evaluate_cli
from depthsmith.evaluate import evaluate_predictions
from depthsmith.report import make_report, model_label, read_curves
from depthsmith.report.figures import curves_figure, qualitative_figure, r2_figure
from depthsmith.flops import count_flops
from depthsmith.report.table import measure_cost, metrics_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Lightning CSVLogger layout: lr rows without epoch, step rows, then the epoch's val and train rows.
METRICS_CSV = """epoch,lr/encoder,step,train/loss,train/loss_step,train/rmse,train/ssim,val/abs_rel,val/d1,val/loss,val/rmse,val/ssim
,0.002,0,,,,,,,,,
0,,0,,0.9,,,,,,,
0,,1,,,,,0.5,0.3,0.8,2.0,0.5
0,,1,0.7,,2.2,0.45,,,,,
1,,2,,0.5,,,,,,,
1,,3,,,,,0.4,0.4,0.6,1.5,0.6
1,,3,0.5,,1.6,0.6,,,,,
2,,5,,,,,0.35,0.5,0.55,1.4,0.65
2,,5,0.4,,1.3,0.7,,,,,
"""


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000


def _fake_results() -> dict:
    """Two 'models' on 5 synthetic scenes, with images kept for the qualitative grid."""
    rng = np.random.default_rng(0)
    gts = [np.where(rng.random((48, 64)) > 0.05, np.linspace(1, 5, 64)[None] + rng.random((48, 1)), 0.0)
           for _ in range(5)]
    images = [rng.random((3, 48, 64)) for _ in gts]
    results = {}
    for label, noise in (("good", 0.05), ("noisy", 0.3)):
        preds = [g.clip(1, None) * np.exp(rng.normal(0, noise, g.shape)) for g in gts]
        results[label] = evaluate_predictions(preds, gts, protocol="none", masks=[g > 0 for g in gts],
                                              images=images, keep_examples=3)
    return results


def test_read_curves_takes_the_epoch_values_of_a_lightning_csv(tmp_path: Path) -> None:
    (tmp_path / "metrics.csv").write_text(METRICS_CSV)
    curves = read_curves(tmp_path)
    assert curves["train/loss"] == {0: 0.7, 1: 0.5, 2: 0.4}
    assert curves["val/rmse"] == {0: 2.0, 1: 1.5, 2: 1.4}
    assert curves["train/loss_step"] == {0: 0.9, 1: 0.5}  # step values stay under their own name
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        read_curves(tmp_path / "missing")


def test_figures_are_written(tmp_path: Path) -> None:
    results = _fake_results()
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.csv").write_text(METRICS_CSV)
    assert _is_png(r2_figure(results, tmp_path / "r2.png"))
    assert _is_png(qualitative_figure(results, tmp_path / "q.png", error_maps=True))
    assert _is_png(qualitative_figure(results, tmp_path / "q_plain.png"))
    assert _is_png(curves_figure([tmp_path / "a", tmp_path / "b"], tmp_path / "curves.png"))


def test_flop_count_matches_a_hand_count() -> None:
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False))
    # 2 FLOPs per multiply-add x 8 output channels x 16 x 16 positions x 3 x 3 x 3 weights
    assert count_flops(conv, 16, 16) == pytest.approx(2 * 8 * 16 * 16 * 27 / 1e9)
    cost = measure_cost(conv, (16, 16), "cpu", repeats=2, warmup=1)
    assert cost.params_m == pytest.approx(8 * 27 / 1e6) and cost.latency_ms > 0


def test_metrics_table_rows() -> None:
    results = _fake_results()
    table = metrics_table(results, {})
    lines = table.splitlines()
    assert len(lines) == 4 and "AbsRel" in lines[0] and "params (M)" in lines[0]
    assert lines[2].startswith("| good |") and lines[3].startswith("| noisy |")


def test_model_label(tmp_path: Path) -> None:
    (tmp_path / "run-a" / "model").mkdir(parents=True)
    assert model_label(tmp_path / "run-a" / "model") == "run-a"
    assert model_label("user/some-depth-model") == "user/some-depth-model"


def test_report_needs_something_to_report(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to report"):
        make_report([], None, [], tmp_path)
    with pytest.raises(ValueError, match="dataset"):
        make_report(["some/model"], None, [], tmp_path)


@pytest.fixture(scope="module")
def trained_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two quickstart runs with tiny settings (a few seconds each on a CPU)."""
    from depthsmith.train import train

    root = tmp_path_factory.mktemp("runs")
    tiny = ["model.name=test_resnet", "data.train.num_samples=48", "data.train.size=[48,64]",
            "data.val.num_samples=8", "data.val.size=[48,64]", "data.batch_size=8", "trainer.max_epochs=3",
            "trainer.precision=32-true", "trainer.log_every_n_steps=1", "final_eval=null",
            "logging.tensorboard=false", "logging.progress_bar=false"]
    runs = []
    for seed in (0, 1):
        result = train("quickstart", overrides=[*tiny, f"trainer.seed={seed}"], run_dir=root / f"quick{seed}")
        assert result.ok, result.error
        runs.append(Path(result.run_dir))
    return runs


EVAL_DATA = {"type": "synthetic", "num_samples": 6, "size": [48, 64], "seed": 2}


def test_report_end_to_end_from_two_quickstart_models(trained_runs: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "report"
    path = make_report([r / "model" for r in trained_runs], EVAL_DATA, trained_runs, out, protocol="none",
                       device="cpu", error_maps=True, progress=False)
    assert path == out / "report.md"
    for name in ("r2.png", "qualitative.png", "curves.png"):
        assert _is_png(out / name), name
        assert f"]({name})" in path.read_text()
    assert (out / "report.html").read_text().count("<img") == 3
    text = path.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| quick")]
    assert [row.split("|")[1].strip() for row in rows] == ["quick0", "quick1"]
    for row, run in zip(rows, trained_runs):
        cells = [c.strip() for c in row.strip("|").split("|")]
        params, gflops, latency, abs_rel, rmse, log10, d1, d2, d3 = map(float, cells[2:11])
        # The table reports the saved model's real size (in millions).
        assert params == pytest.approx(load_model(run / "model").num_parameters() / 1e6, abs=0.006)
        assert 0 < gflops < 5 and latency > 0
        assert 0 < abs_rel < 3 and 0 < rmse < 10 and 0 <= d1 <= d2 <= d3 <= 1
    for run in trained_runs:  # per-model machine-readable results next to the page
        assert (out / "eval" / run.name / "per_image.csv").read_text().count("\n") == 7
    assert "Protocol 'none'" in text and "NON-STANDARD" not in text


def test_report_with_two_datasets_has_a_section_per_protocol_and_the_papers_numbers(trained_runs: list[Path],
                                                                                   tmp_path: Path) -> None:
    nyu_like = {**EVAL_DATA, "protocol": "nyu-eigen", "crop_mode": "scaled", "label": "rooms-nyu"}
    path = make_report([trained_runs[0] / "model"], [EVAL_DATA, nyu_like], [], tmp_path / "r", protocol="none",
                       device="cpu", progress=False)
    text = path.read_text()
    assert "Results (standard protocol 'none')" in text and "Results (standard protocol 'nyu-eigen')" in text
    measured = [line for line in text.splitlines() if line.startswith("| quick0 on ")]
    assert [line.split("|")[1].strip() for line in measured] == ["quick0 on synthetic", "quick0 on rooms-nyu"]
    assert "| BTS (from the paper) | DenseNet-161 | 47.00 |" in text  # the field's numbers, marked as quoted


def test_eval_cli_with_report_and_the_seed_label(trained_runs: list[Path], tmp_path: Path) -> None:
    code = evaluate_cli(str(trained_runs[0] / "model"), EVAL_DATA, protocol="seed", crop_mode="scaled",
                        out_dir=tmp_path / "eval",
                        report_dir=tmp_path / "report", device="cpu", batch_size=4)
    assert code == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "NON-STANDARD PROTOCOL" in text and "Results (NON-STANDARD protocol 'seed')" in text
    assert _is_png(tmp_path / "report" / "curves.png")  # the model's own run folder was found
    metrics = (tmp_path / "eval" / "metrics.json").read_text()
    assert '"status": "NON-STANDARD"' in metrics
    assert not math.isnan(float((tmp_path / "eval" / "per_image.csv").read_text().splitlines()[1].split(",")[1]))
