"""Published Depth Anything checkpoints: a tiny random transformers model, saved with
``save_pretrained``, converted by ``depthsmith.load_model`` and compared with transformers' own
forward on the same normalised tensor (no download anywhere)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import depthsmith
from depthsmith.models import WeightFileError
from helpers import copy_with_weights, read_weights, tiny_hf_depth_anything

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = [(56, 70), (100, 130)]  # 100 x 130: neither side a multiple of 14


def _reference(hf, ours, x):
    """transformers on the same normalised tensor, zero-padded to a multiple of 14 as depthsmith pads
    inside its ViT, cropped back to H x W (the HF processor would resize instead)."""
    h, w = x.shape[-2:]
    normalised = ours.input_norm(x)
    with torch.no_grad():
        out = hf(pixel_values=F.pad(normalised, (0, (-w) % 14, 0, (-h) % 14))).predicted_depth
    return out[:, None, :h, :w]


@pytest.fixture(scope="module", params=["relative", "metric"])
def converted(request, tmp_path_factory):
    hf = tiny_hf_depth_anything(request.param)
    folder = tmp_path_factory.mktemp(f"hf-{request.param}")
    hf.save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\ntags: [depth]\n---\n# tiny\n")
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "do_normalize": True,
         "rescale_factor": 1 / 255, "size": {"height": 518, "width": 518}, "ensure_multiple_of": 14,
         "keep_aspect_ratio": True}))
    return request.param, hf, folder, depthsmith.load_model(folder)


def test_converted_model_matches_transformers_at_two_sizes(converted):
    kind, hf, _, ours = converted
    assert ours.output == ("disparity" if kind == "relative" else "metric")
    for h, w in SIZES:
        x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h))
        ref = _reference(hf, ours, x)
        with torch.no_grad():
            got = ours.forward_normalized(x) if kind == "relative" else ours(x)
        assert got.shape == ref.shape == (2, 1, h, w)
        assert ref.std() > 0.05  # a varied output, not a constant that any wiring would reproduce
        assert (got - ref).abs().max() < 1e-4, (kind, h, w, float((got - ref).abs().max()))


def test_the_comparison_can_fail(converted):
    # Antialiased position-embedding resampling (timm's default for other ViTs) is a plausible
    # mistake; the comparison above must see it.
    kind, hf, _, ours = converted
    x = torch.rand(1, 3, 100, 130)
    ref = _reference(hf, ours, x)
    ours.encoder.net.antialias = True
    try:
        with torch.no_grad():
            got = ours.forward_normalized(x) if kind == "relative" else ours(x)
    finally:
        ours.encoder.net.antialias = False
    assert (got - ref).abs().max() > 1e-3


def test_processor_normalisation_and_metadata(converted):
    kind, _, folder, ours = converted
    # The processor's mean/std on x / 255 is InputNorm's (x - mean) / std on RGB in [0, 1].
    torch.testing.assert_close(ours.input_norm.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    torch.testing.assert_close(ours.input_norm.std.flatten(), torch.tensor([0.229, 0.224, 0.225]))
    assert ours.card["license"] == "apache-2.0"
    # The processor's resize is the working size predict and eval resize to.
    assert ours.working_size == {"height": 518, "width": 518, "keep_aspect": True, "multiple_of": 14}
    assert ours.is_metric == (kind == "metric")
    if kind == "metric":
        assert ours.max_depth == 20.0


def test_converted_model_saves_reloads_and_writes_its_licence(converted, tmp_path):
    kind, _, _, ours = converted
    ours.save_pretrained(tmp_path)
    card = (tmp_path / "README.md").read_text()
    assert "license: apache-2.0" in card and "More Information Needed" not in card
    again = depthsmith.load_model(tmp_path)
    x = torch.rand(1, 3, 50, 60)
    with torch.no_grad():
        torch.testing.assert_close(again(x), ours(x), rtol=0, atol=0)
    assert again.card["license"] == "apache-2.0" and again.output == ours.output


def test_transformers_4_key_names_load_the_same(converted, tmp_path):
    kind, hf, folder, ours = converted
    names = {"attention.q_proj.": "attention.attention.query.", "attention.k_proj.": "attention.attention.key.",
             "attention.v_proj.": "attention.attention.value.", "attention.o_proj.": "attention.output.dense."}
    state = read_weights(folder)
    renamed = {}
    for key, value in state.items():
        for new, old in names.items():
            key = key.replace(new, old)
        renamed[key] = value
    assert any(".attention.attention.query." in k for k in renamed)
    legacy = depthsmith.load_model(copy_with_weights(folder, tmp_path, renamed))
    for a, b in zip(legacy.state_dict().values(), ours.state_dict().values()):
        assert torch.equal(a, b)


def test_a_tensor_that_does_not_fit_is_named(converted, tmp_path):
    _, _, folder, _ = converted
    state = read_weights(folder)
    state["neck.convs.2.weight"] = torch.zeros(16, 31, 3, 3)
    with pytest.raises(WeightFileError, match=r"decoder\.layer_rn\.2\.weight.*\(16, 31, 3, 3\)"):
        depthsmith.load_model(copy_with_weights(folder, tmp_path, state))
    del state["neck.convs.2.weight"]
    copy_with_weights(folder, tmp_path, state)
    with pytest.raises(WeightFileError, match=r"no tensor for 'decoder\.layer_rn\.2\.weight'"):
        depthsmith.load_model(tmp_path)


@pytest.mark.parametrize("stages", [(3, 4, 5, 6), (1, 2, 3, 4)])
def test_tap_layouts_and_truncation(stages, tmp_path):
    # (3..6): V1's last four blocks of six. (1..4): taps end before the last blocks, which the
    # encoder then does not build and the conversion skips.
    hf = tiny_hf_depth_anything("relative", out_indices=stages, layers=6)
    hf.save_pretrained(tmp_path)
    ours = depthsmith.load_model(tmp_path)
    assert ours.encoder.net.out_indices == [s - 1 for s in stages]
    assert len(ours.encoder.net.vit.blocks) == stages[-1] and ours.card["license"] is None
    x = torch.rand(1, 3, 44, 90)
    with torch.no_grad():
        assert (ours.forward_normalized(x) - _reference(hf, ours, x)).abs().max() < 1e-4


def test_dpt_checkpoints_are_refused_by_name(tmp_path):
    tiny_hf_depth_anything("relative").save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["model_type"] = "dpt"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="config.json.*DPTForDepthEstimation"):
        depthsmith.load_model(tmp_path)
