"""Models: presets, any timm encoder x any decoder, any input size, weights, save/load."""

from __future__ import annotations

import pytest
import timm
import torch

import depthsmith
from depthsmith.models.decoders.registry import standalone_decoders
from depthsmith.models import WeightFileError

# Every preset (parameter counts on the meta device, a forward for the small ones) and every decoder on
# every tiny encoder with gradients: tests/test_registry.py.


@pytest.mark.parametrize("size", [(240, 320), (144, 256), (231, 307), (33, 47)])
@pytest.mark.parametrize("decoder", standalone_decoders())
def test_any_input_size(size: tuple[int, int], decoder: str) -> None:
    model = depthsmith.create_model("test_convnext", decoder=decoder).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, *size))
    assert y.shape == (1, 1, *size)


def test_paper_model_at_odd_and_paper_sizes() -> None:
    model = depthsmith.create_model("enc-dec-irv2").eval()
    with torch.no_grad():
        for size in [(240, 320), (231, 307)]:
            assert model(torch.rand(1, 3, *size)).shape == (1, 1, *size)


def test_enc_dec_irv2_matches_paper_table2_parameter_count() -> None:
    model = depthsmith.create_model("enc-dec-irv2")
    n = model.num_parameters()
    assert abs(n - 31.15e6) / 31.15e6 < 0.01, n
    # The truncation is the paper's: taps at strides 1 (input), 2, 4, 8 and the 288-ch bottleneck at 16.
    assert model.encoder.channels == [3, 32, 80, 256, 288]
    assert model.encoder.reductions == [1, 2, 4, 8, 16]
    # Nothing after mixed_7a.branch2[1] is built.
    names = {n for n, _ in model.encoder.named_parameters()}
    assert not any(k.startswith(("net.conv2d_7b", "net.block8", "net.repeat_2", "net.mixed_7a.branch0")) for k in names)


def test_paper_decoder_parameter_count_by_hand() -> None:
    # Hand count of the seed notebook's decoder (README "Seed fidelity"): per block conv3x3(in->f) + conv3x3(f+skip->f) + conv3x3(f->f)
    # with biases, two BatchNorms (weight + bias); head conv3x3(32->1).
    def block(cin: int, skip: int, f: int) -> int:
        return (cin * f * 9 + f) + ((f + skip) * f * 9 + f) + (f * f * 9 + f) + 2 * 2 * f

    expected = block(288, 256, 256) + block(256, 80, 128) + block(128, 32, 64) + block(64, 3, 32) + (32 * 9 + 1)
    model = depthsmith.create_model("enc-dec-irv2")
    assert sum(p.numel() for p in model.decoder.parameters()) == expected
    layer_types = [type(m).__name__ for m in model.decoder.blocks[0].modules()][1:]
    assert layer_types == ["Sequential", "Conv2d", "LeakyReLU", "Sequential", "Conv2d", "LeakyReLU",
                           "BatchNorm2d", "Conv2d", "LeakyReLU", "BatchNorm2d"]


def test_densedepth_matches_published_parameter_count() -> None:
    n = depthsmith.create_model("densedepth-densenet169").num_parameters()
    assert abs(n - 42.6e6) / 42.6e6 < 0.01, n


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_encoder_weights_from_local_file(tmp_path, suffix: str) -> None:
    ref = timm.create_model("test_resnet", pretrained=False)
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_()
    path = tmp_path / f"enc{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(ref.state_dict(), str(path))
    else:
        torch.save(ref.state_dict(), path)
    for kwargs in ({}, {"encoder_kwargs": {"taps": ["layer1", "layer3"]}}):
        model = depthsmith.create_model("test_resnet", encoder_weights=str(path), **kwargs)
        got = dict(model.encoder.net.named_parameters())
        torch.testing.assert_close(got["layer1.0.conv1.weight"], ref.layer1[0].conv1.weight, rtol=0, atol=0)
        ref_flat = {k.replace(".", "_"): v for k, v in ref.state_dict().items()}
        assert len(got) > 10
        for key, value in got.items():
            assert torch.equal(value, ref_flat[key.replace(".", "_")]), key


def test_encoder_weights_from_training_checkpoints(tmp_path) -> None:
    """A Lightning-style checkpoint (tensors under 'state_dict', keys of a DepthModel held as
    'model', compiled) and a timm training checkpoint whose EMA weights are the ones to use."""
    ref = depthsmith.create_model("test_resnet").encoder
    with torch.no_grad():
        for p in ref.parameters():
            p.normal_()
    lightning = {f"model._orig_mod.encoder.{k}": v for k, v in ref.state_dict().items()}
    torch.save({"state_dict": lightning, "epoch": torch.tensor(3)}, tmp_path / "last.ckpt")
    loaded = depthsmith.create_model("test_resnet", encoder_weights=str(tmp_path / "last.ckpt")).encoder
    for key, value in ref.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    noise = {k: torch.zeros_like(v) for k, v in ref.net.state_dict().items()}
    torch.save({"state_dict": noise, "state_dict_ema": ref.net.state_dict()}, tmp_path / "ema.pth")
    ema = depthsmith.create_model("test_resnet", encoder_weights=str(tmp_path / "ema.pth")).encoder
    assert all(torch.equal(ema.state_dict()[k], v) for k, v in ref.state_dict().items())


def test_wrong_weight_files_are_named(tmp_path) -> None:
    other = tmp_path / "convnext.safetensors"
    from safetensors.torch import save_file

    save_file(timm.create_model("test_convnext").state_dict(), str(other))
    with pytest.raises(WeightFileError, match="convnext.safetensors.*missing"):
        depthsmith.create_model("test_resnet", encoder_weights=str(other))
    with pytest.raises(WeightFileError, match="does not exist"):
        depthsmith.create_model("test_resnet", encoder_weights=str(tmp_path / "nope.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightFileError, match="junk.pth"):
        depthsmith.create_model("test_resnet", encoder_weights=str(junk))


def test_bad_arguments_list_what_is_valid() -> None:
    with pytest.raises(ValueError, match="enc-dec-irv2"):
        depthsmith.create_model("enc-dec-irv3")
    with pytest.raises(ValueError, match="residual_unet"):
        depthsmith.create_model("test_resnet", decoder="fpn")
    with pytest.raises(ValueError, match="Unknown encoder"):
        depthsmith.models.DepthModel(encoder="resnet_9000")
    with pytest.raises(ValueError, match="metric"):
        depthsmith.create_model("test_resnet", output="metres")
    model = depthsmith.create_model("test_resnet")
    for bad in (torch.rand(3, 64, 64), torch.rand(1, 1, 64, 64), torch.rand(1, 4, 64, 64)):
        with pytest.raises(ValueError, match="B x 3 x H x W"):
            model(bad)


def test_output_modes_ranges() -> None:
    x = torch.rand(2, 3, 40, 56)
    rel = depthsmith.create_model("test_resnet", output="relative").eval()(x)
    assert rel.min() >= 0 and rel.max() <= 1
    inv = depthsmith.create_model("test_resnet", output="inverse", min_depth=0.5, max_depth=20).eval()
    y = inv(x)
    assert y.min() >= 0.5 and y.max() <= 20 + 1e-4
    # inverse mode is depth = min_depth / sigmoid
    torch.testing.assert_close(y, (0.5 / inv.forward_normalized(x)).clamp_max(20.0))


def test_save_pretrained_load_model_round_trip(tmp_path) -> None:
    model = depthsmith.create_model(
        "enc-dec-irv2", encoder_kwargs={"taps": ["conv2d_1a", "conv2d_3b"]}, decoder_kwargs={"filters": [64, 32]}
    ).eval()
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in {".json", ".safetensors"}) == [
        "config.json", "model.safetensors"]
    loaded = depthsmith.load_model(tmp_path)
    x = torch.rand(1, 3, 60, 76)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded.encoder.channels == model.encoder.channels
    assert loaded.name == "enc-dec-irv2"


def test_load_model_refuses_incomplete_or_mismatched_folders(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        depthsmith.load_model(tmp_path)
    model = depthsmith.create_model("test_resnet")
    model.save_pretrained(tmp_path)
    cfg = (tmp_path / "config.json").read_text().replace('"unet"', '"residual_unet"')
    (tmp_path / "config.json").write_text(cfg)
    # strict: weights of another architecture are not silently skipped; the error names the file
    with pytest.raises(depthsmith.models.WeightFileError, match=r"model\.safetensors: does not fit"):
        depthsmith.load_model(tmp_path)


def test_parameter_groups_split_encoder_and_decoder() -> None:
    model = depthsmith.create_model("test_convnext", decoder="residual_unet")
    groups = model.parameter_groups()
    assert sum(p.numel() for g in groups.values() for p in g) == model.num_parameters()
    assert {id(p) for p in groups["encoder"]} == {id(p) for p in model.encoder.parameters()}


def test_load_model_from_a_hub_id_through_the_hub_cache(tmp_path) -> None:
    # The Hub path proper (no network here): a cache laid out as huggingface_hub writes it.
    model = depthsmith.create_model("test_resnet").eval()
    repo = tmp_path / "models--someone--tiny-depth"
    snapshot = repo / "snapshots" / ("0" * 40)
    model.save_pretrained(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    loaded = depthsmith.load_model("someone/tiny-depth", cache_dir=str(tmp_path), local_files_only=True)
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_deepcopy_keeps_eval_mode_of_fx_encoders() -> None:
    import copy

    model = depthsmith.create_model("enc-dec-irv2").eval()
    clone = copy.deepcopy(model)
    assert not any(m.training for m in clone.modules())
    x = torch.rand(1, 3, 64, 80)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), model(x), rtol=0, atol=0)
    model.train()
    assert all(m.training for m in copy.deepcopy(model).modules())


# The seed's ZeroPadding2D per tap at 240x320: (tap size, padded size, (top, left) padding before).
SEED_PADDING = [((119, 159), (120, 160), (1, 1)), ((58, 78), (60, 80), (1, 1)),
                ((27, 37), (30, 40), (2, 2)), ((13, 18), (15, 20), (1, 1))]


def test_pad_rule_reproduces_the_seed_zero_padding(monkeypatch) -> None:
    from depthsmith.models.decoders import common, unet

    for size, grid, before in SEED_PADDING:
        out = common.pad_centered(torch.ones(1, 1, *size), grid)
        assert tuple(out.shape[-2:]) == grid
        rows, cols = out[0, 0].sum(1).nonzero(), out[0, 0].sum(0).nonzero()
        assert (int(rows[0]), int(cols[0])) == before  # ceil(p/2) before ...
        assert (grid[0] - 1 - int(rows[-1]), grid[1] - 1 - int(cols[-1])) == (
            (grid[0] - size[0]) // 2, (grid[1] - size[1]) // 2)  # ... floor(p/2) after
    calls = []

    def spy(x, size):
        calls.append((tuple(x.shape[-2:]), tuple(size)))
        return common.pad_centered(x, size)

    monkeypatch.setattr(unet, "pad_centered", spy)
    model = depthsmith.create_model("enc-dec-irv2").eval()
    with torch.no_grad():
        model(torch.rand(1, 3, 240, 320))
    # bottleneck first, then the skips at strides 8, 4, 2 and the input (already on the grid)
    assert calls == [SEED_PADDING[3][:2], SEED_PADDING[2][:2], SEED_PADDING[1][:2], SEED_PADDING[0][:2],
                     ((240, 320), (240, 320))]
    calls.clear()
    with torch.no_grad():  # off the grid of 16: the input skip is padded too, the output cropped back
        assert model(torch.rand(1, 3, 231, 307)).shape == (1, 1, 231, 307)
    assert calls[-1] == ((231, 307), (240, 320))


def test_upsample_x2_is_half_pixel_bilinear() -> None:
    from depthsmith.models.decoders.common import upsample_x2

    # By hand, Keras/TF half-pixel centres: output x samples input (x + 0.5) / 2 - 0.5, clamped.
    row = upsample_x2(torch.tensor([[[[0.0, 1.0]]]]))[0, 0, 0]
    torch.testing.assert_close(row, torch.tensor([0.0, 0.25, 0.75, 1.0]))


def test_pad_align_crops_at_the_input_offset() -> None:
    # With align="pad" output pixel (i, j) must be input pixel (i, j): wire the last block and the
    # head to pass the input skip's first channel straight through (everything else zero).
    model = depthsmith.create_model("test_resnet", decoder_kwargs={"align": "pad"}, input_norm="none",
                                    encoder_kwargs={"include_input": True}).eval()
    dec, x = model.decoder, torch.rand(1, 3, 37, 45) + 0.1  # positive: LeakyReLU passes it unchanged
    with torch.no_grad():
        for m in dec.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.zero_(), m.bias.zero_()
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats(), m.reset_parameters()
                m.eps = 0.0
        fuse = dec.blocks[-1].fuse
        fuse[0].weight[0, fuse[0].out_channels, 1, 1] = 1.0  # the skip's channels follow the decoder's
        fuse[3].weight[0, 0, 1, 1] = 1.0
        dec.head.weight[0, 0, 1, 1] = 1.0
        assert dec.bottleneck_stride == 32  # 37x45 is padded to 64x64: 14 rows, 10 columns before
        logits = dec(model.encoder(x), (37, 45))
    torch.testing.assert_close(logits[0, 0], x[0, 0])


def test_channel_order_bgr_feeds_the_encoder_bgr_and_is_saved(tmp_path) -> None:
    x = torch.rand(1, 3, 40, 48)
    rgb_timm = depthsmith.create_model("test_resnet").input_norm
    bgr_timm = depthsmith.create_model("test_resnet", channel_order="bgr").input_norm
    # normalised per colour first (timm's mean/std are RGB), then reordered for the encoder
    torch.testing.assert_close(bgr_timm(x), rgb_timm(x).flip(1))
    # min-max does not depend on the order: a BGR model on RGB = an RGB model on the BGR image
    rgb = depthsmith.create_model("test_resnet", input_norm="minmax").eval()
    bgr = depthsmith.create_model("test_resnet", input_norm="minmax", channel_order="bgr").eval()
    bgr.load_state_dict(rgb.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(bgr(x), rgb(x[:, [2, 1, 0]]))
        assert not torch.allclose(bgr(x), rgb(x))
    bgr.save_pretrained(tmp_path)
    assert '"channel_order": "bgr"' in (tmp_path / "config.json").read_text()
    assert depthsmith.load_model(tmp_path).input_norm.channel_order == "bgr"
    with pytest.raises(ValueError, match="rgb"):
        depthsmith.create_model("test_resnet", channel_order="rbg")


def test_a_decoder_that_needs_a_checkpoint_config_says_so() -> None:
    from depthsmith.errors import InputError

    assert set(depthsmith.list_decoders()) - set(standalone_decoders()) == {"depth_pro", "dpt_sky", "dual_dpt"}
    with pytest.raises(InputError, match="decoder 'depth_pro' needs decoder_kwargs image_vit"):
        depthsmith.create_model("test_convnext", decoder="depth_pro")
    with pytest.raises(InputError, match="decoder 'dpt_sky' needs decoder_kwargs sky_threshold, sky_quantile"):
        depthsmith.create_model("test_vit", decoder="dpt_sky")
