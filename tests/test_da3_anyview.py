"""Depth Anything 3's any-view DA3-Small on one image: a random upstream ``DepthAnything3Net`` (PyPI
``depth-anything-3``, built from its own ``da3-small`` config at its published size: ViT-S with RoPE,
QK-norm and camera tokens, the DualDPT head, camera encoder and decoder), saved in the published layout,
converted by ``depthsmith.load_model`` and compared with the upstream forward on the same images (one
view per image, no camera given, as ``DepthAnything3.inference`` on one image).

DA3-Base is the same network at ViT-B width (configs/da3-base.yaml differs in widths only): one slow test
at its published size, compared in float64.

Where the float32 difference comes from: with these spread weights the network amplifies any rounding,
and the two float32 steps computed differently here, DINOv2's position-embedding resample (matrices in
models/vit.py, for export) and DualDPT's UV grid (from tensors, for export), differ from upstream's by
about 1e-9 and 6e-8; with upstream's two substituted the outputs were bit-identical (measured on
DA3-Base at 98 x 126). In float64 the remaining difference is about 1e-7 of the output's std."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import depthsmith
from depthsmith.errors import InputError
from helpers import (DA3_MEAN, DA3_STD, edited_da3_folder, hub_snapshot, offline_hub_cache, save_da3, spread_vit_weights,
                     standardise_output)

pytest.importorskip("depth_anything_3")
from depth_anything_3.cfg import create_object, load_config  # noqa: E402
from depth_anything_3.registry import MODEL_REGISTRY  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = [(56, 70), (98, 126)]  # multiples of 14: upstream's InputProcessor resizes to them
MEAN, STD = DA3_MEAN, DA3_STD


def _normalise(x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    return (x - mean) / std


def _random(name: str) -> nn.Module:
    """Upstream's network with weights large enough that every part matters; the camera token at unit
    scale (it replaces the class token from block 4 on), the depth logits at mean 0, std 1."""
    net = create_object(load_config(MODEL_REGISTRY[name])).eval()
    spread_vit_weights(net)
    with torch.no_grad():
        net.backbone.pretrained.camera_token.normal_(0, 1, generator=torch.Generator().manual_seed(3))
    x = torch.rand(1, 3, 56, 70, generator=torch.Generator().manual_seed(1))
    standardise_output(net.head.scratch.output_conv2[2], lambda: net(_normalise(x)[:, None]))
    return net


@pytest.fixture(scope="module")
def reference() -> nn.Module:
    return _random("da3-small")


def _upstream(net: nn.Module, x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    """Upstream's depth, B x H x W: each image one view (B images, S = 1)."""
    with torch.no_grad():
        return net(_normalise(x, mean, std)[:, None]).depth[:, 0]


def _difference(ours: nn.Module, net: nn.Module, x: torch.Tensor, mean=MEAN, std=STD) -> float:
    """max |ours - upstream| / std(upstream); depthsmith takes RGB in [0, 1] and normalises inside."""
    expected = _upstream(net, x, mean, std)
    with torch.no_grad():
        got = ours(x)[:, 0]
    assert got.shape == expected.shape == (x.shape[0], *x.shape[-2:])
    assert expected.std() > 0.1  # a varied output, not a constant that any wiring would reproduce
    return float((got - expected).abs().max() / expected.std())


@pytest.fixture(scope="module")
def converted(reference, tmp_path_factory):
    folder = save_da3(reference, "da3-small", tmp_path_factory.mktemp("da3-small"))
    return folder, depthsmith.load_model(folder)


def test_converted_checkpoint_matches_upstream_at_two_sizes(reference, converted):
    _, ours = converted
    for h, w in SIZES:
        x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h))
        assert _difference(ours, reference, x) < 1e-4, (h, w)


def test_the_comparison_fails_for_a_perturbed_weight_normalisation_or_any_view_part(reference, converted):
    _, ours = converted
    x = torch.rand(2, 3, 56, 70, generator=torch.Generator().manual_seed(2))
    assert _difference(ours, reference, x, mean=0.5, std=0.5) > 1e-3  # the other common normalisation
    vit = ours.encoder.net
    for tensor in (vit.vit.blocks[6].attn.q_norm.weight, vit.camera_token):  # a QK-norm; the camera token
        keep = tensor.detach().clone()
        try:
            with torch.no_grad():
                tensor.mul_(1.01)  # off by 1 %
            assert _difference(ours, reference, x) > 1e-3
        finally:
            with torch.no_grad():
                tensor.copy_(keep)
    for attribute, wrong in (("rope_freq", 10000.0), ("alt_start", 5)):  # RoPE frequencies; where the views alternate
        keep = getattr(vit, attribute)
        setattr(vit, attribute, wrong)
        try:
            assert _difference(ours, reference, x) > 1e-3, attribute
        finally:
            setattr(vit, attribute, keep)
    ours.decoder.pos_ratio = 0.0  # without DualDPT's UV embedding
    try:
        assert _difference(ours, reference, x) > 1e-3
    finally:
        ours.decoder.pos_ratio = 0.1


def test_output_kind_licence_and_working_size_recorded(converted):
    _, ours = converted
    assert ours.output == "exp_depth" == ours.card["output"] and not ours.is_metric
    assert ours.card["license"] == "apache-2.0" and "da3-small" in ours.card["converted_from"]
    assert ours.encoder.name == "vit_small_patch14_dinov2" and ours.encoder.net.out_indices == [5, 7, 9, 11]
    assert type(ours.decoder).__name__ == "DualDPTDepthDecoder" and ours.encoder.channels == [768] * 4
    assert ours.working_size == {"long_side": 504, "multiple_of": 14}  # upstream process_res=504, upper_bound_resize


def test_reload_gives_the_same_model_and_the_licence_comes_from_the_card(reference, converted, tmp_path):
    folder, ours = converted
    x = torch.rand(1, 3, 42, 56)
    ours.save_pretrained(tmp_path / "saved")
    saved = depthsmith.load_model(tmp_path / "saved")
    assert saved.card == ours.card
    with torch.no_grad():
        torch.testing.assert_close(saved(x), ours(x), rtol=0, atol=0)
    bare = _edited(folder, tmp_path)  # no README.md: the DA3 README's table (DA3-Small: Apache-2.0)
    assert depthsmith.load_model(bare).card["license"] == "apache-2.0"


def test_the_zoo_id_loads_from_the_hub_cache(converted, tmp_path, monkeypatch):
    """``load_model("depth-anything/DA3-SMALL")`` (the zoo's id) with the published files in an offline Hub cache."""
    from depthsmith.models.zoo import ZOO, converter_present

    folder, ours = converted
    entry = ZOO.get("depth-anything/DA3-SMALL")
    assert converter_present(entry) and entry.output == "exp_depth" and entry.licence == "apache-2.0"
    snapshot = hub_snapshot(tmp_path / "hub", entry.id)
    for name in ("config.json", "model.safetensors", "README.md"):
        (snapshot / name).symlink_to(folder / name)  # the cache's snapshots are links to its blobs as well
    offline_hub_cache(monkeypatch, tmp_path / "hub")
    hub = depthsmith.load_model(entry.id)
    assert hub.card["base_model"] == entry.id and hub.card["license"] == "apache-2.0"
    x = torch.rand(1, 3, 42, 56)
    with torch.no_grad():
        torch.testing.assert_close(hub(x), ours(x), rtol=0, atol=0)


def _edited(folder: Path, tmp_path: Path, change=None, name: str | None = None) -> Path:
    return edited_da3_folder(folder, tmp_path / "edited", change, name)


def test_a_wrong_shape_a_missing_or_an_unknown_key_or_width_is_named(converted, tmp_path):
    folder, _ = converted
    key = "model.backbone.pretrained.blocks.6.attn.k_norm.weight"
    bad = _edited(folder, tmp_path, lambda s: s.update({key: torch.zeros(65)}))
    with pytest.raises(InputError, match=rf"model\.safetensors: '{key}' has shape \(65,\)"):
        depthsmith.load_model(bad)
    token = "model.backbone.pretrained.camera_token"
    bad = _edited(folder, tmp_path, lambda s: s.pop(token))
    with pytest.raises(InputError, match=rf"model\.safetensors: no tensor '{token}'"):
        depthsmith.load_model(bad)
    sky = "model.head.scratch.sky_output_conv2.0.weight"  # the monocular models' sky head: not in DualDPT
    bad = _edited(folder, tmp_path, lambda s: s.update({sky: torch.zeros(1)}))
    with pytest.raises(InputError, match=rf"key '{sky}' has no place"):
        depthsmith.load_model(bad)
    bad = _edited(folder, tmp_path, name="da3-base")  # ViT-S weights under ViT-B's name
    with pytest.raises(InputError, match=r"cls_token' has width 384, but config\.json's 'da3-base' is a vitb"):
        depthsmith.load_model(bad)
    bad = _edited(folder, tmp_path, name="da3-large")  # not converted: named, with what is
    with pytest.raises(InputError, match=r"model_name 'da3-large' is a Depth Anything 3 any-view.*da3-small, da3-base"):
        depthsmith.load_model(bad)


@pytest.mark.slow  # about 15 s on one core: DA3-Base at its published size (135 M parameters with its camera parts)
def test_da3_base_matches_upstream_in_float64(tmp_path):
    net = _random("da3-base")
    ours = depthsmith.load_model(save_da3(net, "da3-base", tmp_path))
    assert ours.encoder.name == "vit_base_patch14_dinov2" and ours.card["license"] == "apache-2.0"
    net.cam_dec = None  # its pose head casts to float32; depth does not use it (DepthAnything3Net.forward)
    net.double(), ours.double()
    for h, w in SIZES:
        x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h), dtype=torch.float64)
        assert _difference(ours, net, x, MEAN.double(), STD.double()) < 1e-4, (h, w)
