"""`evaluate(model, dataset)`: batching, image sizes, flip TTA, input size, devices, the CLI entry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import depthsmith
from depthsmith.commands.evaluate import evaluate_cli
from depthsmith.evaluate import evaluate, evaluate_predictions
from depthsmith.device import resolve_device


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


class ColourDepth(nn.Module):
    """Depth = 1 + 4 * mean RGB: a 'model' whose exact answer the test knows."""

    name = "colour-depth"

    def __init__(self, output: str = "metric") -> None:
        super().__init__()
        self.output = output
        self.scale = nn.Parameter(torch.tensor(4.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 + self.scale * x.mean(dim=1, keepdim=True)


class RampDepth(nn.Module):
    """Depth grows left to right whatever the image: flip TTA must average it to a constant."""

    name = "ramp"
    output = "metric"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(1.0, 3.0, x.shape[-1], device=x.device)
        return ramp.expand(x.shape[0], 1, x.shape[-2], x.shape[-1]).clone()


def _samples(sizes: list[tuple[int, int]], seed: int = 0) -> list[dict]:
    """In-memory dataset in depthsmith's sample format; gt = ColourDepth's exact answer, 10 % holes."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, (h, w) in enumerate(sizes):
        image = torch.rand(3, h, w, generator=g)
        depth = 1.0 + 4.0 * image.mean(dim=0, keepdim=True)
        mask = torch.rand(1, h, w, generator=g) > 0.1
        out.append({"image": image, "depth": torch.where(mask, depth, 0.0), "mask": mask, "name": f"img{i}"})
    return out


def test_exact_model_is_perfect_and_batch_size_does_not_matter() -> None:
    data = _samples([(40, 56)] * 5)
    results = [evaluate(ColourDepth(), data, protocol="none", batch_size=b, progress=False) for b in (1, 2, 5)]
    assert results[0].metrics["abs_rel"] == pytest.approx(0.0, abs=1e-7)
    assert results[0].metrics["d1"] == 1.0
    for r in results[1:]:
        for key in ("abs_rel", "rmse", "d1", "r2"):
            assert r.metrics[key] == pytest.approx(results[0].metrics[key], abs=1e-9)
    assert results[0].settings["eval_size"] == [40, 56]


def test_mixed_image_sizes_in_one_batch() -> None:
    data = _samples([(40, 56), (33, 47), (40, 56), (64, 48)])
    result = evaluate(ColourDepth(), data, protocol="none", batch_size=4, progress=False)
    assert [r["name"] for r in result.rows] == ["img0", "img1", "img2", "img3"]  # dataset order kept
    assert result.metrics["abs_rel"] == pytest.approx(0.0, abs=1e-7)


def test_model_path_equals_prediction_path() -> None:
    """evaluate(model, data) and evaluate_predictions(model outputs) are one code path."""
    data = _samples([(48, 64)] * 3, seed=1)
    model = ColourDepth()
    with torch.no_grad():
        model.scale.fill_(3.0)  # a wrong model, so that the metrics are not trivial
        preds = [model(s["image"][None])[0] for s in data]
    a = evaluate(model, data, protocol="none", progress=False)
    b = evaluate_predictions(preds, [s["depth"] for s in data], protocol="none", masks=[s["mask"] for s in data])
    for key in ("abs_rel", "rmse", "log10", "d1", "r2"):
        assert a.metrics[key] == pytest.approx(b.metrics[key], rel=1e-6)


def test_flip_tta_averages_prediction_and_flipped_prediction() -> None:
    data = _samples([(32, 40)] * 2)
    plain = evaluate(RampDepth(), data, protocol="none", keep_examples=1, progress=False)
    tta = evaluate(RampDepth(), data, protocol="none", flip_tta=True, keep_examples=1, progress=False)
    assert np.ptp(plain.examples[0]["pred"]) == pytest.approx(2.0)
    np.testing.assert_allclose(tta.examples[0]["pred"], 2.0, atol=1e-6)  # (ramp + flipped ramp) / 2
    assert "Flip test-time augmentation: on" in tta.description


def test_network_input_size_then_upsampling_to_ground_truth() -> None:
    data = _samples([(48, 64)] * 2)
    result = evaluate(ColourDepth(), data, protocol="none", input_size=(24, 32), keep_examples=1, progress=False)
    assert result.examples[0]["pred"].shape == (48, 64)
    assert result.settings["eval_size"] == [24, 32] and "resized to 24x32" in result.description
    assert 0 < result.metrics["abs_rel"] < 0.2  # blurred by the round trip, not broken


def test_relative_model_under_the_seed_protocol_gets_the_fixed_7_5() -> None:
    data = _samples([(240, 320)])
    # 240 x 320 ground truth: the seed's 480 x 640 crop scaled (it must be asked for).
    relative = evaluate(ColourDepth("relative"), data, protocol="seed", keep_examples=1, progress=False,
                        crop_mode="scaled")
    metric = evaluate(ColourDepth("metric"), data, protocol="seed", keep_examples=1, progress=False,
                      crop_mode="scaled")
    with torch.no_grad():
        raw = ColourDepth()(data[0]["image"][None])[0, 0].numpy()
    np.testing.assert_allclose(relative.examples[0]["pred"], 7.5 * raw, rtol=1e-5)
    np.testing.assert_allclose(metric.examples[0]["pred"], 0.75 * raw, rtol=1e-5)
    assert "7.5 * network output" in relative.description and "0.75 * predicted metres" in metric.description
    with pytest.raises(ValueError, match="align"):
        evaluate(ColourDepth("relative"), data, protocol="nyu-eigen", align="none", progress=False)
    # Left to its default, the alignment comes from the output kind: least squares for relative depth.
    auto = evaluate(ColourDepth("relative"), data, protocol="nyu-eigen", crop_mode="scaled", progress=False)
    assert auto.settings["align"] == "lstsq" and "least-squares" in auto.description.lower()


def test_device_selection(monkeypatch) -> None:
    assert resolve_device("cpu").type == "cpu"
    for available, expected in ((True, "cuda"), (False, "cpu")):  # both branches, whatever this machine has
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        assert resolve_device("auto").type == expected
    with pytest.raises(RuntimeError):
        resolve_device("not-a-device")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run manually on a GPU machine)")
def test_cpu_and_gpu_give_the_same_numbers() -> None:
    torch.manual_seed(0)
    model = depthsmith.create_model("test_resnet", decoder="unet").eval()
    data = _samples([(96, 128)] * 4)
    cpu = evaluate(model, data, protocol="none", device="cpu", progress=False)
    gpu = evaluate(model, data, protocol="none", device="cuda", progress=False)
    for key in ("abs_rel", "rmse", "log10", "d1", "r2"):
        assert gpu.metrics[key] == pytest.approx(cpu.metrics[key], rel=1e-4, abs=1e-5)


def test_evaluate_cli_on_a_saved_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    depthsmith.create_model("test_resnet", decoder="unet").save_pretrained(tmp_path / "model")
    out = tmp_path / "eval"
    code = evaluate_cli(str(tmp_path / "model"), _samples([(48, 64)] * 3), protocol="none", out_dir=out,
                        device="cpu", batch_size=2)
    assert code == 0
    printed = capsys.readouterr().out
    assert "protocol 'none'" in printed and "AbsRel" in printed
    data = json.loads((out / "metrics.json").read_text())
    assert data["status"] == "standard" and data["metrics"]["n_images"] == 3
    assert data["settings"]["model"] == "test_resnet-unet"
    lines = (out / "per_image.csv").read_text().splitlines()
    assert lines[0].startswith("name,abs_rel") and len(lines) == 4


def test_evaluate_cli_rejects_a_range_for_a_fixed_protocol(capsys: pytest.CaptureFixture) -> None:
    code = evaluate_cli("unused", _samples([(8, 8)]), protocol="nyu-eigen", max_depth=80.0)
    assert code == 2 and "protocol 'none'" in capsys.readouterr().err
