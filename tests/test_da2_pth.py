"""Original Depth Anything V2 checkpoints (.pth): a random upstream ``DepthAnythingV2`` (PyPI
``jkp-depth-anything-v2``, the upstream ``depth_anything_v2`` package), saved with ``torch.save``,
converted by ``depthsmith.load_model`` and compared with the upstream forward on the same images."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import depthsmith
from depthsmith.errors import InputError
from depthsmith.models.da2_pth import da2_model_kwargs
from helpers import spread_vit_weights, standardise_output

da2 = pytest.importorskip("depth_anything_v2.dpt")
pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = [(56, 70), (98, 126)]  # multiples of 14: upstream's patch embedding drops any remainder
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)  # upstream image2tensor's NormalizeImage
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
VITS = dict(encoder="vits", features=64, out_channels=[48, 96, 192, 384])  # upstream run.py model_configs


class MetricReference(da2.DepthAnythingV2):
    """Upstream's metric model (metric_depth/depth_anything_v2/dpt.py in DepthAnything/Depth-Anything-V2),
    which the PyPI package does not ship, made from the relative class by its two documented
    differences, not by copying: its ``output_conv2`` ends in ``nn.Sigmoid()`` where the relative one
    has ``nn.ReLU(True), nn.Identity()`` (index 3 is replaced; the Identity after it does nothing), and
    its ``forward`` returns the head times ``max_depth`` where the relative one applies ``F.relu``
    (relu(sigmoid(t)) = sigmoid(t), so calling the relative forward and multiplying is the same).
    Both hold the same state-dict keys, as the published files do."""

    def __init__(self, max_depth: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.max_depth = max_depth
        self.depth_head.scratch.output_conv2[3] = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * self.max_depth


def _randomise(model: nn.Module) -> None:
    """Weights large enough that every part matters (the default init leaves attention nearly uniform and
    the output nearly constant), then the last conv set so that the logits have mean 0 and std 1."""
    spread_vit_weights(model)
    x = torch.rand(2, 3, 56, 70, generator=torch.Generator().manual_seed(1))
    standardise_output(model.depth_head.scratch.output_conv2[2], lambda: model(_normalise(x)))


def _normalise(x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    return (x - mean) / std


def _difference(ours: nn.Module, reference: nn.Module, kind: str, x: torch.Tensor, mean=MEAN, std=STD) -> float:
    """max |ours - upstream| / std(upstream), in upstream's output space: disparity (depthsmith's ReLU
    head, ``forward_normalized``) for the relative model, metres (``forward``) for the metric one.
    depthsmith takes RGB in [0, 1] and normalises inside; upstream takes the normalised tensor."""
    with torch.no_grad():
        expected = reference(_normalise(x, mean, std))[:, None]
        got = ours.forward_normalized(x) if kind == "relative" else ours(x)
    assert got.shape == expected.shape == (x.shape[0], 1, *x.shape[-2:])
    assert expected.std() > 0.1  # a varied output, not a constant that any wiring would reproduce
    return float((got - expected).abs().max() / expected.std())


@pytest.fixture(scope="module")
def relative_file(tmp_path_factory):
    reference = da2.DepthAnythingV2(**VITS).eval()
    _randomise(reference)
    path = tmp_path_factory.mktemp("da2") / "depth_anything_v2_vits.pth"
    torch.save(reference.state_dict(), path)
    return reference, path


@pytest.fixture(scope="module", params=["relative", "metric"])
def converted(request, relative_file, tmp_path_factory):
    reference, path = relative_file
    if request.param == "metric":
        reference = MetricReference(max_depth=20.0, **VITS).eval()
        _randomise(reference)
        path = tmp_path_factory.mktemp("da2-metric") / "depth_anything_v2_metric_hypersim_vits.pth"
        torch.save(reference.state_dict(), path)
    return request.param, reference, path, depthsmith.load_model(path)


def test_converted_checkpoint_matches_upstream_at_two_sizes(converted):
    kind, reference, _, ours = converted
    for h, w in SIZES:
        x = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(h))
        assert _difference(ours, reference, kind, x) < 1e-4, (kind, h, w)


def test_the_comparison_fails_for_a_perturbed_weight_or_normalisation(converted):
    kind, reference, _, ours = converted
    x = torch.rand(2, 3, 56, 70, generator=torch.Generator().manual_seed(2))
    # upstream fed the other common normalisation ((x - 0.5) / 0.5, e.g. DPT-BEiT's)
    assert _difference(ours, reference, kind, x, mean=0.5, std=0.5) > 1e-3
    qkv = ours.encoder.net.vit.blocks[5].attn.qkv.weight
    keep = qkv.detach().clone()
    try:
        with torch.no_grad():
            qkv.mul_(1.01)  # one weight tensor off by 1 %
        assert _difference(ours, reference, kind, x) > 1e-3
    finally:
        with torch.no_grad():
            qkv.copy_(keep)
    # timm's / transformers' resample to the grid size instead of upstream DINOv2's interpolate_offset
    ours.encoder.net.offset = 0.0
    try:
        assert _difference(ours, reference, kind, x) > 1e-3
    finally:
        ours.encoder.net.offset = 0.1


def test_output_kind_licence_in_the_card_working_size_in_the_config(converted):
    kind, _, path, ours = converted
    assert ours.output == ("disparity" if kind == "relative" else "metric") == ours.card["output"]
    assert ours.is_metric == (kind == "metric")
    if kind == "metric":
        assert ours.max_depth == 20.0
    assert ours.encoder.name == "vit_small_patch14_dinov2" and ours.encoder.net.out_indices == [2, 5, 8, 11]
    assert ours.card["license"] == "apache-2.0" and path.name in ours.card["converted_from"]
    assert ours.working_size == {"short_side": 518, "multiple_of": 14}  # upstream input_size=518, x14


def test_converted_model_saves_and_reloads(converted, tmp_path):
    _, _, _, ours = converted
    ours.save_pretrained(tmp_path)
    again = depthsmith.load_model(tmp_path)
    assert again.encoder.net.offset == 0.1 and again.card == ours.card
    x = torch.rand(1, 3, 42, 56)
    with torch.no_grad():
        torch.testing.assert_close(again(x), ours(x), rtol=0, atol=0)


def _shape_keys(width: int) -> dict[str, torch.Tensor]:
    """Only the tensors whose shapes decide the model, at embedding ``width`` (no weights needed)."""
    return {"pretrained.cls_token": torch.zeros(1, 1, width), "pretrained.pos_embed": torch.zeros(1, 1370, width),
            "pretrained.patch_embed.proj.weight": torch.zeros(width, 3, 14, 14),
            "pretrained.blocks.0.mlp.fc1.weight": torch.zeros(4 * width, width),
            **{f"depth_head.projects.{i}.weight": torch.zeros(c, width, 1, 1) for i, c in enumerate([96, 192, 384, 768])},
            "depth_head.scratch.layer1_rn.weight": torch.zeros(128, 96, 3, 3),
            "depth_head.scratch.output_conv2.0.weight": torch.zeros(32, 64, 3, 3)}


@pytest.mark.parametrize("name, output, max_depth", [
    ("depth_anything_v2_vitb.pth", "disparity", None),
    ("depth_anything_v2_metric_hypersim_vitb.pth", "metric", 20.0),
    ("depth_anything_v2_metric_vkitti_vitb.pth", "metric", 80.0),
])
def test_variant_output_and_licence_from_shapes_and_name(name, output, max_depth):
    kwargs = da2_model_kwargs(_shape_keys(768), Path(name))
    assert kwargs["output"] == output and kwargs.get("max_depth") == max_depth
    assert kwargs["encoder"] == "vit_base_patch14_dinov2" and kwargs["encoder_kwargs"]["num_heads"] == 12
    assert kwargs["decoder_kwargs"] == {"features": 128, "out_channels": [96, 192, 384, 768], "head_features": 32}
    assert kwargs["card"]["license"] == "cc-by-nc-4.0"
    large = da2_model_kwargs(_shape_keys(1024), Path("depth_anything_v2_vitl.pth"))
    assert large["encoder_kwargs"]["out_indices"] == [4, 11, 17, 23] and large["card"]["license"] == "cc-by-nc-4.0"


def test_overrides_and_names_that_do_not_decide(tmp_path):
    state = _shape_keys(768)
    with pytest.raises(InputError, match=r"model\.pth.*cannot tell a relative from a metric"):
        da2_model_kwargs(state, tmp_path / "model.pth")
    assert da2_model_kwargs(state, tmp_path / "model.pth", output="disparity")["output"] == "disparity"
    with pytest.raises(InputError, match=r"my_metric_vitb\.pth.*hypersim.*vkitti.*max_depth="):
        da2_model_kwargs(state, tmp_path / "my_metric_vitb.pth")
    ours = da2_model_kwargs(state, tmp_path / "depth_anything_v2_vitb.pth", output="metric", max_depth=10)
    assert (ours["output"], ours["max_depth"]) == ("metric", 10.0)
    with pytest.raises(InputError, match=r"depth_anything_v2_vitl\.pth.*says vitl.*vitb"):
        da2_model_kwargs(state, tmp_path / "depth_anything_v2_vitl.pth")
    with pytest.raises(InputError, match=r"model\.pth.*output='relative' is not valid"):
        da2_model_kwargs(state, tmp_path / "model.pth", output="relative")
    with pytest.raises(InputError, match="for original Depth Anything V2 .pth checkpoints only"):
        depthsmith.load_model(tmp_path, output="metric")


def test_output_override_through_load_model(relative_file, tmp_path):
    reference, path = relative_file
    renamed = shutil.copy(path, tmp_path / "renamed.pth")
    ours = depthsmith.load_model(renamed, output="metric", max_depth=5)
    assert ours.output == "metric" and ours.max_depth == 5.0 and ours.card["output"] == "metric"


def _broken(path: Path, tmp_path: Path, change) -> Path:
    state = torch.load(path, map_location="cpu", weights_only=True)
    change(state)
    out = tmp_path / "depth_anything_v2_vits.pth"
    torch.save(state, out)
    return out


def test_a_truncated_file_is_named(relative_file, tmp_path):
    _, path = relative_file
    cut = tmp_path / "depth_anything_v2_vits.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match=rf"Cannot read weight file {cut}"):
        depthsmith.load_model(cut)


def test_a_missing_key_is_named(relative_file, tmp_path):
    bad = _broken(relative_file[1], tmp_path, lambda s: s.pop("depth_head.scratch.refinenet2.out_conv.weight"))
    with pytest.raises(InputError, match=rf"{bad}: no tensor 'depth_head\.scratch\.refinenet2\.out_conv\.weight'"):
        depthsmith.load_model(bad)
    bad = _broken(relative_file[1], tmp_path, lambda s: s.pop("pretrained.blocks.7.attn.qkv.bias"))
    with pytest.raises(InputError, match=rf"{bad}: no tensor 'pretrained\.blocks\.7\.attn\.qkv\.bias'"):
        depthsmith.load_model(bad)


def test_a_wrong_shape_or_an_unknown_key_is_named(relative_file, tmp_path):
    bad = _broken(relative_file[1], tmp_path, lambda s: s.update({"pretrained.blocks.4.mlp.fc2.weight": torch.zeros(384, 1535)}))
    with pytest.raises(InputError, match=rf"{bad}: 'pretrained\.blocks\.4\.mlp\.fc2\.weight' has shape \(384, 1535\)"):
        depthsmith.load_model(bad)
    bad = _broken(relative_file[1], tmp_path, lambda s: s.update({"pretrained.mask_token": torch.zeros(1, 383)}))
    with pytest.raises(InputError, match=rf"{bad}: 'pretrained\.mask_token' has shape \(1, 383\)"):
        depthsmith.load_model(bad)
    bad = _broken(relative_file[1], tmp_path, lambda s: s.update({"depth_head.readout_projects.0.0.weight": torch.zeros(1)}))
    with pytest.raises(InputError, match=rf"{bad}: key 'depth_head\.readout_projects\.0\.0\.weight' has no place"):
        depthsmith.load_model(bad)


class _NotATensor:
    pass


def test_other_pth_files_are_refused_and_nothing_is_unpickled(tmp_path):
    encoder = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3)}, encoder)
    with pytest.raises(InputError, match=r"resnet\.pth: not a Depth Anything V2 checkpoint.*encoder_weights"):
        depthsmith.load_model(encoder)
    pickled = tmp_path / "depth_anything_v2_vits.pth"
    torch.save({"pretrained.cls_token": _NotATensor()}, pickled)
    with pytest.raises(InputError, match=rf"Cannot read weight file {pickled}"):
        depthsmith.load_model(pickled)
    with pytest.raises(InputError, match=r"nowhere\.pth does not exist"):
        depthsmith.load_model(tmp_path / "nowhere.pth")
