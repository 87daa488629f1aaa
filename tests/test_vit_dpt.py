"""Plain ViT encoders at any input size, the DPT decoder, output kinds, presets' parameter counts, ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import depthsmith
from depthsmith.models.vit import is_plain_vit

pytestmark = pytest.mark.usefixtures("one_thread")

# A DINOv2-shaped ViT small enough for CPU tests: patch 14, pos-embed grid 4 x 4, LayerScale.
TINY_DINO = {"embed_dim": 32, "depth": 4, "num_heads": 2, "img_size": 56, "out_indices": [0, 1, 2, 3]}
TINY_DPT = {"features": 16, "out_channels": [8, 16, 32, 32], "head_features": 8}


def tiny_dino(**kwargs):
    return depthsmith.create_model("vit_small_patch14_dinov2", encoder_kwargs=TINY_DINO, decoder_kwargs=TINY_DPT,
                                   **kwargs)


def _forward_backward(model, h, w):
    model.train()
    y = model(torch.rand(2, 3, h, w))
    y.mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all())]
    assert not missing, f"parameters without a finite gradient: {missing[:5]}"
    return y.detach()


def test_vit_names_are_recognised():
    assert is_plain_vit("test_vit") and is_plain_vit("vit_small_patch14_dinov2.lvd142m")
    assert is_plain_vit("vit_base_patch16_224") and not is_plain_vit("test_convnext")


@pytest.mark.parametrize("size", [(64, 80), (50, 77), (33, 47), (240, 320)])
def test_vit_dpt_at_any_input_size(size):
    model = tiny_dino()
    assert model.encoder.channels == [32] * 4 and model.encoder.reductions == [14] * 4
    y = _forward_backward(model, *size)
    assert y.shape == (2, 1, *size) and (y > 0).all() and (y < model.max_depth).all()


def test_timm_test_vit_and_default_decoder():
    # create_model("<vit>") picks the dpt decoder: a ViT pyramid has one stride.
    model = depthsmith.create_model("test_vit", decoder_kwargs={"features": 16})
    assert type(model.decoder).__name__ == "DPTDecoder"
    assert model.encoder.reductions == [16] * 4 and model.encoder.net.out_indices == [0, 2, 3, 5]
    assert _forward_backward(model, 45, 70).shape == (2, 1, 45, 70)


def test_padding_is_cropped_out_not_resampled():
    # The prediction for an image is the top-left of the prediction for it padded by the model itself:
    # padding at the bottom/right only changes rows/columns the crop drops, apart from attention
    # mixing. So compare a padded-to-multiple input with the model's own padding: identical maps.
    model = tiny_dino().eval()
    x = torch.rand(1, 3, 50, 60)
    mean = model.input_norm.mean
    padded = torch.cat([x, mean.expand(1, 3, 6, 60)], dim=2)  # mean colour = zero after normalisation
    padded = torch.cat([padded, mean.expand(1, 3, 56, 10)], dim=3)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(padded)[..., :50, :60], rtol=0, atol=1e-5)


@pytest.mark.parametrize("encoder", ["test_resnet", "test_convnext"])
def test_dpt_on_hierarchical_encoders(encoder):
    model = depthsmith.create_model(encoder, decoder="dpt", decoder_kwargs={"features": 16})
    assert len(model.decoder.fusion) == 4  # the last four stages
    assert _forward_backward(model, 50, 77).shape == (2, 1, 50, 77)


def test_dpt_layout_matches_depth_anything():
    model = tiny_dino()
    dec = model.decoder
    resample = [type(r.resample).__name__ for r in dec.reassemble]
    assert resample == ["ConvTranspose2d", "ConvTranspose2d", "Identity", "Conv2d"]
    assert [r.resample.stride for r in dec.reassemble if hasattr(r.resample, "stride")] == [(4, 4), (2, 2), (2, 2)]
    assert dec.fusion[0].res1 is None and all(b.res1 is not None for b in dec.fusion[1:])
    feats = model.encoder(model.input_norm(torch.rand(1, 3, 56, 84)))
    levels = [r(f) for r, f in zip(dec.reassemble, feats)]
    assert [tuple(x.shape[-2:]) for x in levels] == [(16, 24), (8, 12), (4, 6), (2, 3)]  # strides 3.5 .. 28


def test_relu_output_kinds():
    x = torch.rand(2, 3, 40, 56)
    metric_relu = tiny_dino(output="metric_relu", max_depth=10.0).eval()
    with torch.no_grad():
        torch.testing.assert_close(metric_relu(x), metric_relu.forward_normalized(x) * 10.0)
    disp = tiny_dino(output="disparity").eval()
    with torch.no_grad():
        torch.nn.init.constant_(disp.decoder.head["conv3"].bias, 0.5)  # a positive disparity everywhere
        d = disp.forward_normalized(x)
        depth = disp(x)
    assert not disp.is_metric and depth.min() >= 1e-3 - 1e-9 and depth.max() <= 1.0 + 1e-6
    # 1 / depth is the disparity up to one scale per image: what lstsq_disparity fits.
    ratio = (1.0 / depth) / d
    assert torch.allclose(ratio, ratio.flatten(1).mean(1).view(2, 1, 1, 1), rtol=1e-4)


def test_disparity_models_are_scored_in_disparity_space():
    from depthsmith.evaluate.core import evaluate_predictions

    gt = np.linspace(1.0, 5.0, 48 * 64).reshape(48, 64)
    pred_depth = 1.0 / (3.0 / gt + 0.2)  # an affine map of the true disparity, returned as depth
    with pytest.raises(ValueError, match="lstsq_disparity"):
        evaluate_predictions([pred_depth], [gt], protocol="nyu-eigen", align="lstsq", output="disparity")
    result = evaluate_predictions([pred_depth], [gt], protocol="nyu-eigen", align="lstsq_disparity",
                                  output="disparity", crop_mode="scaled")
    assert result.metrics["abs_rel"] < 1e-6


# Published totals (Depth-Anything-V2 README, metric_depth/README) and the two tensors their count
# includes that this build leaves out because no forward uses them: the deepest fusion block's
# first residual unit (2 conv3x3 of `features`) and DINOv2's mask token (embed_dim).
PUBLISHED = {"small": (24.8e6, 64, 384), "base": (97.5e6, 128, 768), "large": (335.3e6, 256, 1024)}


@pytest.mark.parametrize("size", list(PUBLISHED))
def test_depth_anything_v2_presets_match_published_parameter_counts(size):
    published, features, embed = PUBLISHED[size]
    model = depthsmith.create_model(f"depth-anything-v2-{size}", encoder_weights=None)
    n = model.num_parameters()
    assert abs(n - published) / published < 0.01, n
    unused = 2 * (features * features * 9 + features) + embed
    assert round((n + unused) / 1e5) == round(published / 1e5), n + unused  # equal to the published 0.1M
    assert model.encoder.net.out_indices == ([4, 11, 17, 23] if size == "large" else [2, 5, 8, 11])


@pytest.mark.parametrize("output", ["metric", "disparity"])
def test_vit_dpt_onnx_export_keeps_height_and_width_dynamic(tmp_path, output):
    onnx = pytest.importorskip("onnx")
    from depthsmith.export import OnnxRunner, export_onnx

    torch.manual_seed(0)
    model = tiny_dino(output=output).eval()
    if output == "disparity":  # a positive disparity, so the per-image normalisation is exercised
        torch.nn.init.constant_(model.decoder.head["conv3"].bias, 0.5)
    result = export_onnx(model, tmp_path / "vit.onnx", height=56, width=84)
    assert result.ok, result.summary()
    dims = onnx.load(str(result.path)).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims][1:] == [3, "height", "width"]
    x = torch.rand(1, 3, 50, 75)  # not a multiple of 14
    with torch.no_grad():
        ref = model(x).numpy()
    runner = OnnxRunner(result.path)
    out = runner(x.numpy())
    assert out.shape == (1, 1, 50, 75) and np.abs(out - ref).max() < 1e-4
    assert runner.is_metric == (output == "metric")


@pytest.mark.parametrize("old", [(37, 37), (4, 6)])
def test_dinov2_offset_resample_is_torch_bicubic_by_scale_factor(old):
    # The original DINOv2 / Depth-Anything-V2 interpolate_pos_encoding: F.interpolate by scale_factor
    # (grid + 0.1) / old, bicubic, no antialias; the embedding unchanged at the old grid.
    import torch.nn.functional as F

    from depthsmith.models.vit import _resample_with_offset

    pos = torch.randn(1, 1 + old[0] * old[1], 8, generator=torch.Generator().manual_seed(0))
    for new in [(4, 5), (1, 1), (37, 49), (60, 3), old, (old[0], old[1] + 1)]:
        grid = pos[:, 1:].reshape(1, *old, 8).permute(0, 3, 1, 2)
        scale = ((new[0] + 0.1) / old[0], (new[1] + 0.1) / old[1])
        ref = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=False)
        ref = grid if tuple(new) == tuple(old) else ref
        assert tuple(ref.shape[-2:]) == tuple(new)
        got = _resample_with_offset(pos, new, old, 1, 0.1)
        assert torch.equal(got[:, :1], pos[:, :1])
        torch.testing.assert_close(got[:, 1:], ref.permute(0, 2, 3, 1).reshape(1, -1, 8), rtol=0, atol=2e-5)


def test_dinov2_offset_resample_exports_with_dynamic_size(tmp_path):
    pytest.importorskip("onnx")
    from depthsmith.export import OnnxRunner, export_onnx

    torch.manual_seed(0)
    model = depthsmith.create_model("vit_small_patch14_dinov2", encoder_kwargs={**TINY_DINO, "pos_embed_offset": 0.1},
                                    decoder_kwargs=TINY_DPT).eval()
    with torch.no_grad():
        model.encoder.net.vit.pos_embed.normal_()  # large enough that a wrong resample shows
    result = export_onnx(model, tmp_path / "offset.onnx", height=56, width=84)
    assert result.ok, result.summary()
    runner = OnnxRunner(result.path)
    for size in [(50, 75), (56, 56), (112, 98)]:  # 56 x 56: the pretraining grid, where DINOv2 does not resample
        x = torch.rand(1, 3, *size)
        with torch.no_grad():
            ref = model(x).numpy()
        # 1e-4: resampling to the size instead (offset 0) moves this model's output by about 3e-3
        assert np.abs(runner(x.numpy()) - ref).max() < 1e-4, size
