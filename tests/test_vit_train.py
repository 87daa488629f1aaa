"""Training ViT + DPT models: the quickstart recipe on a tiny ViT, fine-tuning a converted Depth
Anything checkpoint with the DA-V2 metric recipe, the model card of a run, and torch.hub."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import depthsmith
from depthsmith.train import train
from depthsmith.train.config import resolve_config
from depthsmith.train.module import build_model

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [
    "data.train={type: synthetic, num_samples: 16, size: [32, 48], seed: 0}",
    "data.val={type: synthetic, num_samples: 8, size: [32, 48], seed: 1}",
    "data.val_fraction=0",
    "data.transforms=[hflip]", "data.batch_size=4", "data.num_workers=0",
    "trainer.precision=fp32", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.strategy=auto",
    "trainer.log_every_n_steps=1", "logging.progress_bar=false", "model.encoder_weights=null",
]
FINAL_EVAL = "final_eval={type: synthetic, num_samples: 4, size: [32, 48], seed: 2}"
# The tiny DINOv2-shaped ViT and DPT of the conversion tests (tests/helpers.py).
TINY_DA = ["model.encoder_kwargs={embed_dim: 32, depth: 4, num_heads: 2, img_size: 56, out_indices: [0, 1, 2, 3]}",
           "model.decoder_kwargs={features: 16, out_channels: [8, 16, 32, 32], head_features: 8}"]


def _val_losses(run: Path) -> list[float]:
    with open(run / "metrics.csv", newline="") as handle:
        return [float(r["val/loss"]) for r in csv.DictReader(handle) if r.get("val/loss")]


def test_quickstart_switches_to_a_tiny_vit_with_one_set_and_its_held_out_loss_falls(tmp_path):
    # One --set: the recipe's unet widths do not apply to DPT, so decoder_kwargs is reset with it.
    switch = "model={name: test_vit, decoder: dpt, decoder_kwargs: null}"
    result = train("quickstart", TINY + [switch, "trainer.max_epochs=4", FINAL_EVAL], run_dir=tmp_path / "run")
    assert result.ok, result.error
    model = depthsmith.load_model(result.model_dir)
    assert model.encoder.name == "test_vit" and type(model.decoder).__name__ == "DPTDecoder"
    losses = _val_losses(tmp_path / "run")
    assert len(losses) == 4 and losses[-1] < 0.85 * losses[0], losses
    card = (result.model_dir / "README.md").read_text()
    assert "## Training data" in card and "quickstart" in card and "## Evaluation" in card
    assert "| abs_rel |" in card and "More Information Needed" not in card
    with torch.no_grad():
        assert model(torch.rand(1, 3, 45, 61)).shape == (1, 1, 45, 61)  # any size after training too


@pytest.fixture(scope="module")
def tiny_hf_folder(tmp_path_factory):
    from helpers import tiny_hf_depth_anything

    folder = tmp_path_factory.mktemp("hf-small")
    tiny_hf_depth_anything("relative").save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny relative Depth Anything\n")
    return folder


def test_init_from_copies_the_encoder_only_as_depth_anything_v2_does(tiny_hf_folder):
    cfg = resolve_config("depth-anything-v2-metric-nyu", TINY + TINY_DA + [f"model.init_from={tiny_hf_folder}"])
    model, donor = build_model(cfg.model), depthsmith.load_model(tiny_hf_folder)
    assert model.output == "metric" and donor.output == "disparity"
    for (name, a), b in zip(model.encoder.state_dict().items(), donor.encoder.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(model.decoder.layer_rn[0].weight, donor.decoder.layer_rn[0].weight)
    both = build_model({**cfg.model, "init_parts": ["encoder", "decoder"]})
    assert torch.equal(both.decoder.layer_rn[0].weight, donor.decoder.layer_rn[0].weight)
    with pytest.raises(ValueError, match="init_parts"):
        build_model({**cfg.model, "init_parts": ["head"]})


def test_recipe_fine_tunes_a_converted_checkpoint_and_the_card_keeps_its_licence(tiny_hf_folder, tmp_path):
    overrides = TINY + TINY_DA + [f"model.init_from={tiny_hf_folder}", "trainer.max_epochs=1", FINAL_EVAL]
    result = train("depth-anything-v2-metric-nyu", overrides, run_dir=tmp_path / "run")
    assert result.ok, result.error
    card = (result.model_dir / "README.md").read_text()
    assert "license: apache-2.0" in card and str(tiny_hf_folder) in card and "depth-anything-v2-metric-nyu" in card
    saved = json.loads((result.model_dir / "config.json").read_text())
    assert saved["card"]["license"] == "apache-2.0" and saved["card"]["evaluation"]["n_images"] == 4
    model = depthsmith.load_model(result.model_dir)
    assert model.card["training"]["init_from"] == str(tiny_hf_folder) and model.output == "metric"


def test_a_disparity_model_is_not_trained_silently():
    with pytest.raises(ValueError, match="disparity"):
        from depthsmith.train.module import DepthTrainModule

        DepthTrainModule(resolve_config("quickstart", TINY + ["model={name: test_vit, decoder: dpt, "
                                                               "decoder_kwargs: null, output: disparity}"]))


def test_card_of_an_untrained_model_says_what_is_unknown(tmp_path):
    depthsmith.create_model("test_vit").save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "Not recorded" in card and "More Information Needed" not in card and "DPTDecoder" in card


def test_torch_hub_entry_points(tmp_path):
    repo = str(Path(__file__).resolve().parents[1])
    hubconf = torch.hub._import_module("hubconf", str(Path(repo) / "hubconf.py"))  # what torch.hub.load imports
    assert {"depth_anything_v2_small", "depth_anything_v2_metric_indoor_large", "enc_dec_irv2"} <= set(dir(hubconf))
    model = torch.hub.load(repo, "depth_anything_v2_small", source="local", pretrained=False)
    assert model.output == "disparity" and abs(model.num_parameters() - 24.8e6) / 24.8e6 < 0.01
    outdoor = torch.hub.load(repo, "depth_anything_v2_metric_outdoor_small", source="local", pretrained=False)
    assert outdoor.output == "metric" and outdoor.max_depth == 80.0
