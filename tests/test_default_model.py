"""``depthsmith predict`` without --model: the default Hub model from the local Hub cache, offline,
and a named error when it is neither cached nor downloadable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import depthsmith
from depthsmith.cli import main
from depthsmith.inference import Predictor
from depthsmith.models.zoo import DEFAULT_MODEL
from helpers import offline_hub_cache

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _tiny_depth_anything():
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(0)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, image_size=56, patch_size=14,
                            out_indices=[1, 2, 3, 4], reshape_hidden_states=False, apply_layernorm=True)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                                 fusion_hidden_size=16, head_hidden_size=8, depth_estimation_type="relative")
    model = DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():
        for p in model.parameters():  # weights large enough that the output varies across the image
            p.copy_(torch.randn_like(p) * 0.3)
    return model


@pytest.fixture()
def photo(tmp_path):
    rgb = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    return tmp_path / "photo.png"


def test_predict_without_model_reads_the_default_from_the_hub_cache(tmp_path, monkeypatch, photo):
    # The cache layout huggingface_hub writes: models--owner--name/{refs/main, snapshots/<revision>/...}.
    repo = tmp_path / "hub" / ("models--" + DEFAULT_MODEL.replace("/", "--"))
    snapshot = repo / "snapshots" / REVISION
    _tiny_depth_anything().save_pretrained(snapshot)
    (snapshot / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "do_normalize": True,
         "size": {"height": 56, "width": 56}, "keep_aspect_ratio": True, "ensure_multiple_of": 14}))
    (snapshot / "README.md").write_text("---\nlicense: apache-2.0\n---\n")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(REVISION)
    offline_hub_cache(monkeypatch, tmp_path / "hub")

    out = tmp_path / "out"
    assert main(["predict", str(photo), "--out", str(out), "--save", "npy", "--backend", "torch-fp32"]) == 0
    depth = np.load(next(out.glob("*.npy")))
    info = json.loads((out / "depth_info.json").read_text())
    assert info["working_size"] == {"height": 56, "width": 56, "keep_aspect": True, "multiple_of": 14}
    # The same as the cached checkpoint loaded by path: the default is that model, at its working size.
    expected = Predictor(depthsmith.load_model(snapshot), backend="torch-fp32").predict(str(photo))
    assert depth.shape == (60, 80) and depth.std() > 1e-3
    np.testing.assert_allclose(depth, expected, rtol=1e-5, atol=1e-6)


def test_predict_without_model_offline_and_uncached_names_the_hub_id(tmp_path, monkeypatch, photo, capsys):
    offline_hub_cache(monkeypatch, tmp_path / "empty-hub")
    assert main(["predict", str(photo), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert DEFAULT_MODEL in err and "--model" in err and "huggingface-cli download" in err
