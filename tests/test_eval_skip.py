"""``on_error: skip`` in evaluation: an unreadable sample is dropped and counted, never
replaced by a good one (which would score that image twice and bias the metrics)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from depthsmith.data import PairedDataset
from depthsmith.evaluate import evaluate


class Ramp(torch.nn.Module):
    """A fixed 'model': the same depth ramp for every image (metric, in metres)."""

    output = "metric"

    def forward(self, x):
        ramp = torch.linspace(1.0, 4.0, x.shape[-1], dtype=x.dtype)
        return ramp.expand(x.shape[0], 1, x.shape[-2], x.shape[-1]).clone()


def _pairs(folder, depths_m):
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    rows = ["rgb,depth"]
    for k, metres in enumerate(depths_m):
        Image.fromarray(np.full((24, 32, 3), 40 * k, np.uint8)).save(folder / "rgb" / f"{k}.png")
        Image.fromarray(np.full((24, 32), metres * 1000, np.uint16)).save(folder / "depth" / f"{k}.png")
        rows.append(f"rgb/{k}.png,depth/{k}.png")
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    return folder / "pairs.csv"


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_skipped_sample_is_dropped_and_counted(tmp_path, num_workers):
    csv = _pairs(tmp_path / "all", [1.5, 3.0, 2.0])
    (tmp_path / "all" / "depth" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = _pairs(tmp_path / "good", [1.5, 2.0])  # the same data without the bad sample
    data = PairedDataset(csv_path=csv, encoding="png_mm", on_error="skip")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "skipping bad sample" (printed by the worker when there is one)
        skipped = evaluate(Ramp(), data, protocol="none", batch_size=2, progress=False, num_workers=num_workers)
    clean = evaluate(Ramp(), PairedDataset(csv_path=good, encoding="png_mm"), protocol="none", batch_size=2,
                     progress=False)
    assert skipped.metrics["n_skipped"] == 1 and skipped.metrics["n_images"] == 2
    assert [Path(r["name"]).name for r in skipped.rows] == ["0.png", "2.png"]
    for key in ("abs_rel", "rmse", "d1"):
        assert skipped.metrics[key] == pytest.approx(clean.metrics[key], rel=1e-12), key
    assert data.substitute_skipped is False  # evaluate() set it; training keeps the default


def test_training_keeps_the_substitute(tmp_path):
    csv = _pairs(tmp_path, [1.5, 3.0, 2.0])
    (tmp_path / "depth" / "1.png").write_bytes(b"junk")
    data = PairedDataset(csv_path=csv, encoding="png_mm", on_error="skip")
    with pytest.warns(UserWarning, match="1.png"):
        assert data[1]["name"].endswith("rgb/2.png")
