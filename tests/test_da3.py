"""Depth Anything 3's monocular models: a random upstream ``DepthAnything3Net`` (PyPI ``depth-anything-3``, built
from its own ``da3mono-large`` / ``da3metric-large`` configs at ViT-S size), saved in the published layout,
converted by ``depthsmith.load_model`` and compared with the upstream forward (sky fill included) on the same
images; DA3Metric's metres with upstream's ``apply_metric_scaling``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import depthsmith
from depthsmith.errors import InputError
from depthsmith.models.da3 import metric_depth
from helpers import DA3_MEAN as MEAN, DA3_STD as STD, edited_da3_folder, save_da3 as _save, tiny_da3 as _reference

pytest.importorskip("depth_anything_3")
from depth_anything_3.utils.alignment import apply_metric_scaling  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = [(56, 70), (98, 126)]  # multiples of 14: upstream's InputProcessor resizes to them


def _normalise(x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    return (x - mean) / std


def _upstream(net: nn.Module, x: torch.Tensor, mean=MEAN, std=STD) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream's depth and sky, one image per call (B = 1, one view: as ``inference`` on one image, whose
    sky fill pools its batch)."""
    with torch.no_grad():
        outs = [net(_normalise(image[None], mean, std)[:, None]) for image in x]
    return torch.cat([o.depth[:, 0] for o in outs]), torch.cat([o.sky[:, 0] for o in outs])  # B x H x W


def _difference(ours: nn.Module, net: nn.Module, x: torch.Tensor, mean=MEAN, std=STD) -> float:
    """max |ours - upstream| / std(upstream); depthsmith takes RGB in [0, 1] and normalises inside."""
    expected = _upstream(net, x, mean, std)[0]
    with torch.no_grad():
        got = ours(x)[:, 0]
    assert got.shape == expected.shape == (x.shape[0], *x.shape[-2:])
    assert expected.std() > 0.1  # a varied output, not a constant that any wiring would reproduce
    return float((got - expected).abs().max() / expected.std())


@pytest.fixture(scope="module", params=["da3mono-large", "da3metric-large"])
def converted(request, tmp_path_factory):
    net = _reference(request.param)
    folder = _save(net, request.param, tmp_path_factory.mktemp(request.param))
    return request.param, net, folder, depthsmith.load_model(folder)


def test_converted_checkpoint_matches_upstream_at_two_sizes_sky_fill_included(converted):
    name, net, _, ours = converted
    for h, w in SIZES:
        x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h))
        sky = _upstream(net, x)[1] >= 0.3
        assert (sky.flatten(1).sum(1) > 10).all() and ((~sky).flatten(1).sum(1) > 10).all()  # the fill runs
        assert _difference(ours, net, x) < 1e-4, (h, w)
    if name == "da3metric-large":  # metres: upstream's apply_metric_scaling with intrinsics at the input size
        fx, fy = 60.0, 50.0
        intrinsics = torch.tensor([[fx, 0, w / 2], [0, fy, h / 2], [0, 0, 1.0]]).expand(1, 2, 3, 3)
        expected = apply_metric_scaling(_upstream(net, x)[0][None], intrinsics)[0]
        with torch.no_grad():
            got = metric_depth(ours(x)[:, 0], (fx + fy) / 2)
        assert float((got - expected).abs().max() / expected.std()) < 1e-4


def test_float64_matches_upstream_to_rounding(converted):
    """In float64 nothing but the arithmetic's order separates the two: the final LayerNorm's eps 1e-5
    (upstream's plain nn.LayerNorm, not timm's 1e-6) was a 2e-5 std difference float32 tests hid."""
    import copy

    _, net, _, ours = converted
    x = torch.rand(1, 3, *SIZES[0], dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    twin, ours64 = copy.deepcopy(net).double(), copy.deepcopy(ours).double()
    assert _difference(ours64, twin, x, MEAN.double(), STD.double()) < 1e-6


def test_the_comparison_fails_for_a_perturbed_weight_normalisation_or_sky_fill(converted):
    _, net, _, ours = converted
    x = torch.rand(2, 3, 56, 70, generator=torch.Generator().manual_seed(2))
    assert _difference(ours, net, x, mean=0.5, std=0.5) > 1e-3  # the other common normalisation
    qkv = ours.encoder.net.vit.blocks[5].attn.qkv.weight
    keep = qkv.detach().clone()
    try:
        with torch.no_grad():
            qkv.mul_(1.01)  # one weight tensor off by 1 %
        assert _difference(ours, net, x) > 1e-3
    finally:
        with torch.no_grad():
            qkv.copy_(keep)
    ours.decoder.sky_threshold = 2.0  # no pixel is sky: the raw exp head without upstream's fill
    try:
        assert _difference(ours, net, x) > 1e-3
    finally:
        ours.decoder.sky_threshold = 0.3
    ours.encoder.net.offset = 0.0  # timm's resample to the grid size instead of DINOv2's interpolate_offset
    try:
        assert _difference(ours, net, x) > 1e-3
    finally:
        ours.encoder.net.offset = 0.1


def test_output_kind_licence_and_working_size_recorded(converted):
    name, _, folder, ours = converted
    assert ours.output == "exp_depth" == ours.card["output"] and not ours.is_metric
    assert ours.card["license"] == "apache-2.0" and name in ours.card["converted_from"]
    assert ("focal_normalised" in ours.card) == (name == "da3metric-large")
    assert ours.encoder.name == "vit_small_patch14_dinov2" and ours.encoder.net.out_indices == [2, 5, 8, 11]
    assert ours.working_size == {"long_side": 504, "multiple_of": 14}  # upstream process_res=504, upper_bound_resize
    from depthsmith.resize import working_size_for

    assert working_size_for(ours.working_size, 480, 640) == (378, 504)


def test_file_and_reload_give_the_same_model(converted, tmp_path):
    _, _, folder, ours = converted
    x = torch.rand(1, 3, 42, 56)
    again = depthsmith.load_model(folder / "model.safetensors")  # the weights file names its folder
    ours.save_pretrained(tmp_path)
    saved = depthsmith.load_model(tmp_path)
    assert saved.card == ours.card and saved.decoder.sky_threshold == 0.3
    with torch.no_grad():
        torch.testing.assert_close(again(x), ours(x), rtol=0, atol=0)
        torch.testing.assert_close(saved(x), ours(x), rtol=0, atol=0)


def test_licence_from_the_card_else_the_readme_table(converted, tmp_path):
    name, net, _, _ = converted
    other = depthsmith.load_model(_save(net, name, tmp_path / "a", licence="cc-by-nc-4.0"))
    assert other.card["license"] == "cc-by-nc-4.0"  # the card wins
    bare = depthsmith.load_model(_save(net, name, tmp_path / "b", licence=None))
    assert bare.card["license"] == "apache-2.0"  # DA3 README "Model Cards": Mono-Large, Metric-Large Apache-2.0


def _edited(folder: Path, tmp_path: Path, change=None, name: str | None = None) -> Path:
    return edited_da3_folder(folder, tmp_path / "edited", change, name)


def test_any_view_models_are_refused_by_name(converted, tmp_path):
    _, _, folder, _ = converted
    bad = _edited(folder, tmp_path, name="da3-large")
    with pytest.raises(InputError, match=r"config\.json: model_name 'da3-large' is a Depth Anything 3 any-view"):
        depthsmith.load_model(bad)


def test_a_wrong_shape_a_missing_or_an_unknown_key_is_named(converted, tmp_path):
    _, _, folder, _ = converted
    key = "model.backbone.pretrained.blocks.4.mlp.fc2.weight"
    bad = _edited(folder, tmp_path, lambda s: s.update({key: torch.zeros(384, 1535)}))
    with pytest.raises(InputError, match=rf"model\.safetensors: '{key}' has shape \(384, 1535\)"):
        depthsmith.load_model(bad)
    sky = "model.head.scratch.sky_output_conv2.2.weight"
    bad = _edited(folder, tmp_path, lambda s: s.pop(sky))
    with pytest.raises(InputError, match=rf"model\.safetensors: no tensor '{sky}'"):
        depthsmith.load_model(bad)
    bad = _edited(folder, tmp_path, lambda s: s.update({"model.cam_dec.fc.weight": torch.zeros(1)}))
    with pytest.raises(InputError, match=r"key 'model\.cam_dec\.fc\.weight' has no place"):
        depthsmith.load_model(bad)
