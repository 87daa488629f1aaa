"""transformers DPT (MiDaS 3.0 ``Intel/dpt-large``, ``Intel/dpt-hybrid-midas``; MiDaS 3.1 ``Intel/dpt-beit-*``
layouts): a tiny random ``DPTForDepthEstimation``,
saved with ``save_pretrained``, converted by ``depthsmith.load_model`` and compared with transformers'
own forward and ``post_process_depth_estimation`` on the processor-normalised tensor (no download)."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F

import depthsmith
from depthsmith.errors import InputError
from depthsmith.models import WeightFileError
from helpers import DPT_MEAN, DPT_STD, DPT_VARIANTS, copy_with_weights, read_weights, save_hf_dpt, tiny_hf_dpt

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

# transformers' ViT and hybrid DPT reshape their tokens to a square grid, so their reference runs on
# square inputs; 90 x 90 is zero-padded to 96 x 96 on both sides (depthsmith pads inside its ViT).
# The BEiT backbone takes any shape.
SIZES = [(64, 64), (90, 90)]
BEIT_SIZES = [(64, 96), (90, 70)]
MEAN, STD = DPT_MEAN, DPT_STD
VARIANTS = DPT_VARIANTS



def _reference(hf, x, mean=MEAN, std=STD):
    """transformers on x normalised as the processor does ((x/255 * 255 - mean) / std), zero-padded to
    a multiple of 32, its output cropped back and post-processed (bicubic to the same size)."""
    h, w = x.shape[-2:]
    normalised = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        out = hf(pixel_values=F.pad(normalised, (0, (-w) % 32, 0, (-h) % 32)))
    out.predicted_depth = out.predicted_depth[:, :h, :w]
    processor = transformers.DPTImageProcessor()
    depth = processor.post_process_depth_estimation(out, target_sizes=[(h, w)] * len(x))
    return torch.stack([d["predicted_depth"] for d in depth])[:, None]


@pytest.fixture(scope="module", params=list(VARIANTS))
def converted(request, tmp_path_factory):
    hf = tiny_hf_dpt(**VARIANTS[request.param])
    folder = tmp_path_factory.mktemp(f"dpt-{request.param}")
    save_hf_dpt(hf, folder)
    return hf, folder, depthsmith.load_model(folder)


def _error(ours, hf, x, ref=None):
    with torch.no_grad():
        got = ours.forward_normalized(x)
    ref = _reference(hf, x) if ref is None else ref
    assert got.shape == ref.shape
    return float((got - ref).abs().max() / ref.std())


def test_converted_dpt_matches_transformers_at_two_sizes(converted):
    hf, _, ours = converted
    assert ours.output == "disparity"
    for h, w in BEIT_SIZES if hf.config.backbone_config and not hf.config.is_hybrid else SIZES:
        x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h))
        ref = _reference(hf, x)
        assert ref.std() > 0.1 and (ref > 0).float().mean() > 0.2  # a varied output, not all cut by the ReLU
        assert _error(ours, hf, x, ref) < 1e-4, (h, w, _error(ours, hf, x, ref))


def test_the_comparison_can_fail(converted, tmp_path):
    # A perturbed weight, and the wrong input normalisation, must both be seen.
    hf, folder, ours = converted
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    wrong_norm = _reference(hf, x, mean=[0.5] * 3, std=[0.5] * 3)
    assert _error(ours, hf, x, wrong_norm) > 1e-2
    state = read_weights(folder)
    # One entry of a backbone weight: the MLP, or for BEiT its relative position bias table.
    key = next(k for k in sorted(state) if re.search(r"layers?\.1\.(relative_position_bias\.relative_position_bias_table"
                                                      r"|intermediate\.dense\.weight)", k))
    state[key].view(-1)[197] += 0.1
    assert _error(depthsmith.load_model(copy_with_weights(folder, tmp_path, state)), hf, x) > 1e-3


def test_card_records_licence_output_kind_and_working_size(converted, tmp_path):
    _, _, ours = converted
    assert ours.card["license"] == "apache-2.0" and "DPTForDepthEstimation" in ours.card["converted_from"]
    assert ours.card["working_size"] == {"height": 384, "width": 384, "keep_aspect_ratio": True, "ensure_multiple_of": 32}
    assert ours.working_size == {"height": 384, "width": 384, "keep_aspect": True, "multiple_of": 32}
    assert "disparity" in ours.card["output_kind"]
    torch.testing.assert_close(ours.input_norm.mean.flatten(), torch.tensor(MEAN))
    ours.save_pretrained(tmp_path)
    again = depthsmith.load_model(tmp_path)
    x = torch.rand(1, 3, 50, 70)
    with torch.no_grad():
        torch.testing.assert_close(again(x), ours(x), rtol=0, atol=0)


def test_a_tensor_that_does_not_fit_is_named(converted, tmp_path):
    _, folder, _ = converted
    state = read_weights(folder)
    state["neck.convs.2.weight"] = torch.zeros(32, 63, 3, 3)
    with pytest.raises(WeightFileError, match=r"model\.safetensors.*'neck\.convs\.2\.weight' has shape \(32, 63, 3, 3\)"):
        depthsmith.load_model(copy_with_weights(folder, tmp_path, state))


@pytest.mark.parametrize("variant, key, value, named", [
    ("project", "is_hybrid", True, "backbone_config.model_type=None"),  # a hybrid without its BiT config
    ("project", "backbone_config", {"model_type": "swinv2"}, "backbone_config.model_type='swinv2'"),
    ("project", "reassemble_factors", [1, 1, 1, 0.5], "reassemble_factors"),
    ("hybrid", "backbone_config.depths", [3, 4, 6], r"backbone_config.depths=\[3, 4, 6\]"),
    ("beit", "backbone_config.use_absolute_position_embeddings", True, "backbone_config.use_absolute_position_emb"),
    ("beit", "backbone_config.reshape_hidden_states", True, "backbone_config.reshape_hidden_states=True"),
])
def test_unsupported_layouts_are_refused_by_key(variant, key, value, named, tmp_path):
    tiny_hf_dpt(**VARIANTS[variant]).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    if key.startswith("backbone_config."):
        config["backbone_config"][key.split(".")[1]] = value
    else:
        config[key] = value
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(InputError, match=f"config.json: {named}"):
        depthsmith.load_model(tmp_path)


def test_keys_left_out_of_config_json_take_transformers_defaults(converted, tmp_path):
    # Older config.json files omit keys at their default value; the conversion must not change.
    _, folder, ours = converted
    config = json.loads((folder / "config.json").read_text())
    defaults = transformers.DPTConfig().to_dict()
    for key in ("readout_type", "qkv_bias", "layer_norm_eps", "head_in_index", "hidden_act", "patch_size"):
        if config.get(key) == defaults[key]:
            del config[key]
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    again = depthsmith.load_model(tmp_path)
    assert again.encoder.net.readout_mode == ours.encoder.net.readout_mode
    for (name, a), b in zip(again.state_dict().items(), ours.state_dict().values()):
        assert torch.equal(a, b), name


def test_beit_position_bias_made_in_inference_mode_still_trains():
    """The BEiT position index is cached per grid for the process: first made while predicting
    (inference mode), it must still serve a backward pass when the model is then fine-tuned."""
    from depthsmith.models.beit import relative_position_bias, relative_position_index

    grid = (3, 5)  # a grid no other test uses, so this call builds the cached index
    relative_position_index.cache_clear()
    table = torch.randn((2 * 2 - 1) * (2 * 2 - 1) + 3, 2, requires_grad=True)
    with torch.inference_mode():
        relative_position_bias(table.detach(), (2, 2), grid)
    relative_position_bias(table, (2, 2), grid).square().sum().backward()
    assert table.grad is not None and table.grad.abs().sum() > 0
