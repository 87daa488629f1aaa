"""Fine-tuning from the zoo: ``train --set model.init_from=<zoo id or converted folder>``, the recipe's
``init_parts`` choosing what is copied. The copied tensors must equal the source's before any step,
the rest must not, and the trained model keeps the recipe's output kind. The zoo id is read from a
local Hub cache with the network off (tests/helpers.py ``offline_hub_cache``)."""

from __future__ import annotations

import pytest
import torch

import depthsmith
from depthsmith.train import train
from depthsmith.train.config import resolve_config
from depthsmith.train.module import build_model
from helpers import (DPT_VARIANTS, ZOE_BINS, hub_snapshot, offline_hub_cache, save_hf_depth_pro, save_hf_dpt,
                     save_hf_zoedepth, tiny_hf_depth_anything, tiny_hf_depth_pro, tiny_hf_dpt, tiny_hf_zoedepth)

pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

RECIPE = "depth-anything-v2-metric-nyu"
SOURCE = "depth-anything/Depth-Anything-V2-Small-hf"  # the recipe's own init_from
RUN = [  # a step or two on synthetic scenes, fp32 on one CPU process
    "data.train={type: synthetic, num_samples: 8, size: [28, 42], seed: 0}",
    "data.val={type: synthetic, num_samples: 4, size: [28, 42], seed: 1}", "data.val_fraction=0",
    "data.transforms=[hflip]", "data.batch_size=4", "data.num_workers=0", "trainer.max_epochs=1",
    "trainer.precision=fp32", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.strategy=auto",
    "trainer.log_every_n_steps=1", "logging.progress_bar=false",
]
TINY = RUN + [  # the tiny DINOv2 + DPT of tiny_hf_depth_anything
    "model.encoder_kwargs={embed_dim: 32, depth: 4, num_heads: 2, img_size: 56, out_indices: [0, 1, 2, 3]}",
    "model.decoder_kwargs={features: 16, out_channels: [8, 16, 32, 32], head_features: 8}",
]


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture()
def cached_zoo_id(tmp_path, monkeypatch):
    """The recipe's zoo id, in a Hub cache of this test only, offline."""
    snapshot = hub_snapshot(tmp_path / "hub", SOURCE)
    tiny_hf_depth_anything("relative").save_pretrained(snapshot)
    (snapshot / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny relative Depth Anything\n")
    offline_hub_cache(monkeypatch, tmp_path / "hub")
    return snapshot


@pytest.mark.slow  # two training steps through Lightning: about 10 s on a busy core
def test_recipe_init_from_a_zoo_id_in_the_offline_cache(cached_zoo_id, tmp_path):
    donor = depthsmith.load_model(cached_zoo_id)
    cfg = resolve_config(RECIPE, TINY)
    assert cfg.model["init_from"] == SOURCE and cfg.model["init_parts"] == ["encoder"]
    model = build_model(cfg.model)  # what training starts from
    assert _same(model.encoder, donor.encoder)
    assert not _same(model.decoder, donor.decoder)  # the recipe's choice: a new DPT, as DA-V2's metric_depth
    assert donor.output == "disparity" and model.output == "metric" and model.max_depth == 10.0

    result = train(RECIPE, TINY + ["trainer.max_steps=2"], run_dir=tmp_path / "run")
    assert result.ok, result.error
    trained = depthsmith.load_model(result.model_dir)
    assert trained.output == "metric" and trained.max_depth == 10.0
    assert trained.card["training"]["init_from"] == SOURCE
    assert "license: apache-2.0" in (result.model_dir / "README.md").read_text()  # the source's, from the cache
    assert not _same(trained.encoder, donor.encoder)  # it did train


def test_a_zoo_id_missing_from_the_offline_cache_is_named(tmp_path, monkeypatch):
    offline_hub_cache(monkeypatch, tmp_path / "empty-hub")
    with pytest.raises(ValueError, match=f"{SOURCE}.*not in the local Hub cache"):
        build_model(resolve_config(RECIPE, TINY).model)


def test_init_from_a_converted_metric_folder_keeps_encoder_decoder_and_output(tmp_path):
    folder = tmp_path / "metric-indoor"
    tiny_hf_depth_anything("metric").save_pretrained(folder)  # a Depth-Anything-V2-Metric-*-hf layout, 20 m
    donor = depthsmith.load_model(folder)
    parts = [f"model.init_from={folder}", "model.init_parts=[encoder, decoder]", "model.max_depth=20.0"]
    model = build_model(resolve_config(RECIPE, TINY + parts).model)
    assert _same(model.encoder, donor.encoder) and _same(model.decoder, donor.decoder)
    x = torch.rand(1, 3, 42, 56, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the same model before training: same kind, same range, same metres
        assert (model.output, model.max_depth) == (donor.output, donor.max_depth) == ("metric", 20.0)
        torch.testing.assert_close(model(x), donor(x), rtol=1e-5, atol=1e-5)
    result = train(RECIPE, TINY + parts + ["trainer.max_steps=1"], run_dir=tmp_path / "run")
    assert result.ok, result.error
    trained = depthsmith.load_model(result.model_dir)
    assert (trained.output, trained.max_depth) == ("metric", 20.0)


def test_a_zoo_model_of_another_family_is_refused_naming_the_source(tmp_path):
    """The recipe builds DINOv2 + DPT; a MiDaS DPT (another ViT, another normalisation) cannot start it."""
    from depthsmith.errors import InputError
    from helpers import DPT_VARIANTS, save_hf_dpt, tiny_hf_dpt

    save_hf_dpt(tiny_hf_dpt(**DPT_VARIANTS["project"]), tmp_path / "dpt")  # an Intel/dpt-large layout
    with pytest.raises(InputError, match=f"init_from {tmp_path / 'dpt'}: its input normalisation mean"):
        build_model(resolve_config(RECIPE, TINY + [f"model.init_from={tmp_path / 'dpt'}"]).model)


# The other zoo families, built as they were published (transformers layouts, tests/helpers.py), with the loss
# their output kind trains with: MiDaS's affine-invariant loss for DPT's disparity, SILog for the metric heads.
FAMILIES = {
    "dpt": (lambda f: save_hf_dpt(tiny_hf_dpt(**DPT_VARIANTS["project"]), f), "loss=midas"),
    "zoedepth": (lambda f: save_hf_zoedepth(tiny_hf_zoedepth(ZOE_BINS[:1]), f), "loss={silog: 1.0}"),
    "depth-pro": (lambda f: save_hf_depth_pro(tiny_hf_depth_pro(), f), "loss={silog: 1.0}"),
}
SAME = {"model": {"name": "init_from", "init_parts": ["encoder", "decoder"], "encoder_weights": None},
        "optim": {"name": "adamw", "lr": 1.0e-4}}


@pytest.mark.slow  # one training step through Lightning: 2-6 s a family on one core
@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_zoo_family_fine_tunes_as_its_own_architecture(family, tmp_path):
    """``model.name: init_from`` rebuilds the source's network (same output before any step, input
    normalisation and output kind included), then one step trains it and the result reloads."""
    build, loss = FAMILIES[family]
    folder = tmp_path / family
    build(folder)
    donor = depthsmith.load_model(folder).float()
    overrides = RUN + [f"model.init_from={folder}", loss]
    model = build_model(resolve_config(SAME, overrides).model)
    assert _same(model.encoder, donor.encoder) and _same(model.decoder, donor.decoder)
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert model.output == donor.output and float(donor(x).std()) > 0
        torch.testing.assert_close(model(x), donor(x), rtol=1e-5, atol=1e-5)
    result = train(SAME, overrides + ["trainer.max_steps=1"], run_dir=tmp_path / "run")
    assert result.ok, result.error
    trained = depthsmith.load_model(result.model_dir)
    assert trained.output == donor.output and trained.card["training"]["init_from"] == str(folder)
    assert not _same(trained.decoder, donor.decoder)  # it did train
    with torch.no_grad():
        assert torch.isfinite(trained(x)).all()


def test_init_from_as_architecture_needs_a_source():
    from depthsmith.errors import InputError

    with pytest.raises(InputError, match="model.name: init_from builds the architecture of model.init_from"):
        build_model(resolve_config(SAME, RUN).model)


def test_a_depth_anything_3_source_is_refused_naming_its_exp_head(tmp_path):
    """DA3's exp head (output kind exp_depth) has no loss here: train says so before any step."""
    pytest.importorskip("depth_anything_3")
    from depthsmith.errors import InputError
    from helpers import save_da3, tiny_da3

    folder = save_da3(tiny_da3("da3mono-large"), "da3mono-large", tmp_path / "da3")
    with pytest.raises(InputError, match="'exp_depth' cannot be trained here: a scale-invariant depth loss for an exp"):
        train(SAME, RUN + [f"model.init_from={folder}"], run_dir=tmp_path / "run")
