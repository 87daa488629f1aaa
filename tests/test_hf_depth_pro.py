"""Depth Pro: a tiny random transformers ``DepthProForDepthEstimation`` (+ its ``DepthProImageProcessor``),
saved with ``save_pretrained``, converted by ``depthsmith.load_model`` and compared with transformers'
forward + ``post_process_depth_estimation`` on the same uint8 image (no download anywhere).

Both sides run in float64: in float32 the random network turns the processor's 1e-7 rounding into
1e-5 of the inverse depth, which 1 / x amplifies where the depth is large (measured in float32:
1.8e-5 and 8.8e-5 of the output's std on this model, too close to 1e-4 to hold on every CPU). float64
leaves only the processor's float32 input (measured: 6.6e-7 and 2.3e-6), so the wiring is checked at
1e-4 of the output's std with room to spare.
"""

from __future__ import annotations

import json

import pytest
import torch

import depthsmith
from depthsmith.models import WeightFileError
from helpers import DEPTH_PRO_WORK, copy_with_weights, read_weights, save_hf_depth_pro, tiny_hf_depth_pro

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = [(100, 130), (257, 190)]  # neither a multiple of the 16-pixel patch; portrait and landscape
WORK = DEPTH_PRO_WORK


def _reference(hf, image: torch.Tensor) -> dict:
    """transformers: processor on the uint8 image, forward, post-processing at the image's size."""
    from transformers import DepthProImageProcessor

    processor = DepthProImageProcessor(size={"height": WORK, "width": WORK})
    pixels = processor(images=[image], return_tensors="pt")["pixel_values"].double()
    with torch.no_grad():
        out = hf(pixel_values=pixels)
    return processor.post_process_depth_estimation(out, target_sizes=[tuple(image.shape[-2:])])[0]


def _image(h: int, w: int) -> torch.Tensor:
    return torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(h * w))


def _ours(model, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = image.double()[None] / 255
    with torch.no_grad():
        return model(x)[0, 0], model.focal_length(x)[0]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    hf = tiny_hf_depth_pro()
    folder = tmp_path_factory.mktemp("depth-pro")
    save_hf_depth_pro(hf, folder)
    return hf, folder, depthsmith.load_model(folder).double()


def test_metres_and_focal_match_transformers_at_two_sizes(converted):
    hf, _, ours = converted
    for h, w in SIZES:
        ref = _reference(hf, _image(h, w))
        depth, focal = _ours(ours, _image(h, w))
        assert depth.shape == ref["predicted_depth"].shape == (h, w)
        scale = ref["predicted_depth"].std()
        assert scale > 0.05  # a varied output, not a constant that any wiring would reproduce
        assert (depth - ref["predicted_depth"]).abs().max() < 1e-4 * scale, (h, w)
        assert abs(focal - ref["focal_length"]) < 1e-6 * ref["focal_length"], (h, w)
        # the focal is the field of view at this width: 0.5 w / tan(fov / 2)
        assert 20 < float(ref["field_of_view"]) < 70 and float(ref["field_of_view"]) != 50.0  # 50: the bias alone


def test_the_comparison_can_fail(converted):
    hf, folder, ours = converted
    h, w = SIZES[0]
    ref = _reference(hf, _image(h, w))
    tolerance = 1e-4 * ref["predicted_depth"].std()
    # A perturbed weight of the patch ViT (depth) and of the fov ViT (focal length) must show.
    for name in ("encoder.net.vit.blocks.1.attn.qkv.weight", "decoder.image_vit.blocks.2.mlp.fc2.weight",
                 "decoder.fov_vit.blocks.0.mlp.fc1.weight"):
        weight = ours.get_parameter(name)
        saved = weight.detach().clone()
        with torch.no_grad():
            weight.add_(torch.randn_like(weight) * 1e-2)
        try:
            depth, focal = _ours(ours, _image(h, w))
        finally:
            with torch.no_grad():
                weight.copy_(saved)
        assert (depth - ref["predicted_depth"]).abs().max() > 10 * tolerance, name
    assert abs(focal - ref["focal_length"]) > 1e-4 * ref["focal_length"]
    # ImageNet statistics instead of the processor's 0.5 / 0.5.
    mean, std = ours.input_norm.mean.clone(), ours.input_norm.std.clone()
    ours.input_norm.mean.copy_(torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
    ours.input_norm.std.copy_(torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    try:
        depth, _ = _ours(ours, _image(h, w))
    finally:
        ours.input_norm.mean.copy_(mean)
        ours.input_norm.std.copy_(std)
    assert (depth - ref["predicted_depth"]).abs().max() > 10 * tolerance


def test_card_saves_and_reloads(converted, tmp_path):
    _, _, ours = converted
    assert ours.output == "metric_direct" and ours.is_metric and ours.estimates_focal
    assert ours.card["license"] == "apple-amlr" and ours.card["working_size"] == {"height": WORK, "width": WORK}
    assert ours.card["converted_from"] == "transformers DepthProForDepthEstimation"
    ours.save_pretrained(tmp_path)
    assert "license: apple-amlr" in (tmp_path / "README.md").read_text()
    again = depthsmith.load_model(tmp_path).double()
    x = torch.rand(1, 3, 50, 60, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(again(x), ours(x), rtol=0, atol=0)
    assert again.card == ours.card


def test_without_fov_model_matches_and_has_no_focal(tmp_path):
    hf = tiny_hf_depth_pro(fov=False)
    save_hf_depth_pro(hf, tmp_path)
    ours = depthsmith.load_model(tmp_path).double()
    assert not ours.estimates_focal and ours.focal_length(torch.rand(1, 3, 40, 50)) is None
    ref = _reference(hf, _image(*SIZES[1]))
    with torch.no_grad():
        depth = ours(_image(*SIZES[1]).double()[None] / 255)[0, 0]
    assert (depth - ref["predicted_depth"]).abs().max() < 1e-4 * ref["predicted_depth"].std()


def test_a_tensor_that_does_not_fit_is_named(converted, tmp_path):
    _, folder, _ = converted
    state = read_weights(folder)
    key = "depth_pro.neck.feature_projection.projections.1.weight"
    state[key] = torch.zeros(16, 31, 3, 3)
    copy_with_weights(folder, tmp_path, state)
    with pytest.raises(WeightFileError, match=rf"model\.safetensors: '{key}' has shape \(16, 31, 3, 3\)"):
        depthsmith.load_model(tmp_path)
    del state[key]
    copy_with_weights(folder, tmp_path, state)
    with pytest.raises(WeightFileError, match=r"model\.safetensors: the checkpoint has no tensor for 'decoder\.project\.1"):
        depthsmith.load_model(tmp_path)
    state[key] = torch.zeros(16, 32, 3, 3)
    state["fusion_stage.extra.weight"] = torch.zeros(1)
    copy_with_weights(folder, tmp_path, state)
    with pytest.raises(WeightFileError, match=r"model\.safetensors: checkpoint key 'fusion_stage\.extra\.weight'"):
        depthsmith.load_model(tmp_path)


def test_unsupported_configs_are_named(converted, tmp_path):
    _, folder, _ = converted
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    config = json.loads((folder / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "use_batch_norm_in_fusion_residual": True}))
    with pytest.raises(ValueError, match="config.json: use_batch_norm_in_fusion_residual"):
        depthsmith.load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 256, "width": 320}}))
    with pytest.raises(ValueError, match="preprocessor_config.json: Depth Pro runs at a fixed square size"):
        depthsmith.load_model(tmp_path)


@pytest.mark.parametrize("tiles, batch, size, padding", [(25, 2, 8, 3), (9, 1, 24, 6), (35, 2, 4, 3), (3, 1, 5, 2),
                                                          (1, 1, 4, 3), (9, 2, 2, 6)])
def test_tile_merge_is_transformers_merge_patches(tiles, batch, size, padding):
    from transformers.models.depth_pro.modeling_depth_pro import merge_patches

    from depthsmith.models.decoders.depth_pro_parts import merge_tiles

    x = torch.randn(tiles * batch, 3, size, size, generator=torch.Generator().manual_seed(tiles))
    assert torch.equal(merge_tiles(x, batch, padding), merge_patches(x, batch, padding))


def test_predict_point_cloud_uses_the_models_focal_length(converted, tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from depthsmith.cli import main

    hf, folder, _ = converted
    h, w = SIZES[0]
    image = _image(h, w)
    Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp_path / "photo.png")
    code = main(["predict", str(tmp_path / "photo.png"), "--model", str(folder), "--out", str(tmp_path / "out"),
                 "--save", "ply", "--backend", "torch", "--precision", "fp32"])
    assert code == 0 and "model's own focal length" in capsys.readouterr().out
    header = (tmp_path / "out" / "photo.ply").read_bytes()[:400].decode("ascii", "replace")
    fx, fy, cx, cy = (float(v) for v in header.split("comment intrinsics ")[1].split("\n")[0].split()[1::2])
    focal = float(_reference(hf, image)["focal_length"])
    assert fx == fy == pytest.approx(focal, rel=1e-5, abs=1e-4)
    assert (cx, cy) == ((w - 1) / 2, (h - 1) / 2)
    assert np.isfinite(fx) and focal > 0


def _ply_intrinsics(path) -> tuple[float, ...]:
    header = path.read_bytes()[:400].decode("ascii", "replace")
    return tuple(float(v) for v in header.split("comment intrinsics ")[1].split("\n")[0].split()[1::2])


def test_predict_video_point_clouds_use_the_models_focal_length(converted, tmp_path, capsys):
    """A clip's point clouds take the focal length Depth Pro estimates on its first frame (one for the
    clip), checked against transformers on that frame as decoded; --intrinsics still overrides it."""
    import numpy as np

    from depthsmith.cli import main
    from depthsmith.io import VideoWriter, read_video

    hf, folder, _ = converted
    h, w = SIZES[0]
    writer = VideoWriter(tmp_path / "clip.mp4", fps=10)
    for i in range(3):  # different frames: a per-frame estimate would differ between the clouds
        writer.write(_image(h + i, w).permute(1, 2, 0).numpy()[:h])
    writer.close()
    code = main(["predict", str(tmp_path / "clip.mp4"), "--model", str(folder), "--out", str(tmp_path / "out"),
                 "--save", "ply", "--ply-every", "2", "--backend", "torch", "--precision", "fp32"])
    assert code == 0 and "model's own focal length" in capsys.readouterr().out
    clouds = sorted((tmp_path / "out" / "clip_frames").glob("*.ply"))
    assert [c.name for c in clouds] == ["000000.ply", "000002.ply"]
    first = next(read_video(tmp_path / "clip.mp4")[0])
    focal = float(_reference(hf, torch.from_numpy(np.array(first)).permute(2, 0, 1))["focal_length"])
    for cloud in clouds:
        fx, fy, cx, cy = _ply_intrinsics(cloud)
        assert fx == fy == pytest.approx(focal, rel=1e-5, abs=1e-4)
        assert (cx, cy) == ((w - 1) / 2, (h - 1) / 2)
    # The NYU Kinect's fx scaled to 130 px wide (518.86 * 130 / 640 = 105.4) is far from this estimate.
    assert abs(focal - 518.8579 * w / 640) > 1.0
    code = main(["predict", str(tmp_path / "clip.mp4"), "--model", str(folder), "--out", str(tmp_path / "given"),
                 "--save", "ply", "--ply-every", "2", "--intrinsics", "90", "91", "60", "50",
                 "--backend", "torch", "--precision", "fp32"])
    assert code == 0
    assert _ply_intrinsics(tmp_path / "given" / "clip_frames" / "000002.ply") == (90.0, 91.0, 60.0, 50.0)


@pytest.mark.slow  # about 30 s of CPU: torch.export of three ViTs and the tiling
def test_exports_to_onnx_with_dynamic_height_and_width(converted, tmp_path):
    from depthsmith.export import export_onnx

    _, folder, _ = converted
    result = export_onnx(depthsmith.load_model(folder), tmp_path / "model.onnx", height=96, width=128)
    assert result.ok, result.summary()  # checked at 96 x 128 and at another size and batch (2 x 73 x 163)
    assert len(result.checks) == 2


def test_real_size_model_counts_and_is_not_refused_export(converted, tmp_path):
    # apple/DepthPro-hf's shape (three DINOv2 ViT-L/16 at 384), built on the meta device: no memory.
    from transformers import DepthProConfig

    from depthsmith.models.hf_depth_pro import depth_pro_kwargs
    from depthsmith.models.model import DepthModel

    vitl = dict(model_type="dinov2", hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, patch_size=16,
                image_size=384, layerscale_value=1.0)
    config = DepthProConfig(use_fov_model=True, image_model_config=vitl, patch_model_config=vitl,
                            fov_model_config=vitl).to_dict()
    with torch.device("meta"):
        model = DepthModel(**depth_pro_kwargs(config, tmp_path))
    # transformers' count less what is never run: 3 mask tokens, the first fusion layer's residual_layer1
    unused = 3 * 1024 + 2 * (256 * 256 * 9 + 256)
    assert model.num_parameters() + unused == 951_994_402  # DepthProForDepthEstimation(config).num_parameters()
    assert model.decoder.working_size == 1536 and model.encoder.net.out_indices == [5, 11, 23]
    # 3.8 GB of float32 weights: past one protobuf's 2 GB, so export_onnx writes them as external data
    # (tests/test_export.py checks that path) instead of refusing the model.
    assert 4 * model.num_parameters() > 2**31 and model.export_unsupported == ""


@pytest.mark.slow  # about a minute: 35 tiles of 384 at the real working size 1536
def test_real_geometry_matches_transformers(tmp_path):
    # apple/DepthPro-hf's tiling (384 tiles, 16-pixel patches, 1536 working size: 24-token grids, merge
    # padding 6 and 3, base 24) with narrow ViTs. The reference input is the processor's steps in float64:
    # the processor resizes in float32, whose sampling positions at 1536 move the input by 5e-5.
    import torch.nn.functional as F
    from transformers import DepthProConfig, DepthProForDepthEstimation, DepthProImageProcessor

    vit = dict(model_type="dinov2", hidden_size=32, num_hidden_layers=3, num_attention_heads=2, patch_size=16,
               image_size=384, layerscale_value=0.5)
    config = DepthProConfig(fusion_hidden_size=16, intermediate_hook_ids=[1, 0], intermediate_feature_dims=[16, 16],
                            scaled_images_feature_dims=[32, 32, 16], use_fov_model=True, image_model_config=vit,
                            patch_model_config=vit, fov_model_config=vit)
    torch.manual_seed(0)
    hf = DepthProForDepthEstimation(config).eval()
    with torch.no_grad():  # as _tiny_hf
        hf.head.layers[4].weight.mul_(0.001)
        hf.head.layers[4].bias.fill_(1.0)
        hf.fov_model.fov_encoder.neck.weight.normal_(0, 1)
        hf.fov_model.head.layers[2].bias.fill_(10.0)
        hf.fov_model.head.layers[4].weight.normal_(0, 0.5)
        hf.fov_model.head.layers[4].bias.fill_(50.0)
    hf.save_pretrained(tmp_path)
    processor = DepthProImageProcessor()  # 1536 x 1536, mean / std 0.5
    processor.save_pretrained(tmp_path)
    ours = depthsmith.load_model(tmp_path).double()
    assert (ours.decoder.working_size, ours.decoder.base) == (1536, 24)
    h, w = 301, 187
    x = _image(h, w).double()[None] / 255
    with torch.no_grad():
        out = hf.double()(pixel_values=F.interpolate((x - 0.5) / 0.5, size=(1536, 1536), mode="bilinear",
                                                     align_corners=False))
        depth, focal = ours(x)[0, 0], ours.focal_length(x)[0]
    ref = processor.post_process_depth_estimation(out, target_sizes=[(h, w)])[0]
    assert out.predicted_depth.shape[-2:] == (1536, 1536)
    assert (depth - ref["predicted_depth"]).abs().max() < 1e-4 * ref["predicted_depth"].std()
    assert abs(focal - ref["focal_length"]) < 1e-6 * ref["focal_length"]
