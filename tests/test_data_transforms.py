"""Transforms move image, depth and mask together; normalisations and depth targets by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depthsmith.data import SyntheticScenes
from depthsmith.data.transforms import (CenterCrop, ColorJitter, Compose, RandomChannelSwap, RandomCrop,
                                        RandomHorizontalFlip, Resize, build_transforms, depth_to_target,
                                        minmax_range, target_to_depth)


def toy_sample(h: int = 8, w: int = 12, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    depth = torch.rand(1, h, w, generator=g) * 5 + 0.5
    mask = torch.rand(1, h, w, generator=g) > 0.3
    depth = torch.where(mask, depth, torch.zeros_like(depth))
    return {"image": torch.rand(3, h, w, generator=g), "depth": depth, "mask": mask, "name": "toy"}


def test_hflip_moves_everything_together():
    s = toy_sample()
    out = RandomHorizontalFlip(p=1.0)(s)
    for key in ("image", "depth", "mask"):
        assert torch.equal(out[key], s[key][..., torch.arange(11, -1, -1)])
    assert RandomHorizontalFlip(p=0.0)(s) is s


def test_random_crop_is_consistent_and_seeded():
    s = toy_sample()
    a = RandomCrop((4, 5), generator=torch.Generator().manual_seed(1))(s)
    b = RandomCrop((4, 5), generator=torch.Generator().manual_seed(1))(s)
    assert torch.equal(a["depth"], b["depth"]) and a["image"].shape == (3, 4, 5)
    # Find the window in the original: image, depth and mask come from the same place.
    for top in range(5):
        for left in range(8):
            if torch.equal(s["image"][:, top : top + 4, left : left + 5], a["image"]):
                assert torch.equal(s["depth"][:, top : top + 4, left : left + 5], a["depth"])
                assert torch.equal(s["mask"][:, top : top + 4, left : left + 5], a["mask"])
                return
    pytest.fail("crop window not found")


def test_center_crop_and_too_large_crop():
    s = toy_sample()
    assert torch.equal(CenterCrop((4, 6))(s)["depth"], s["depth"][:, 2:6, 3:9])
    with pytest.raises(ValueError, match="cannot crop 10x12 from 8x12"):
        RandomCrop((10, 12))(s)


def test_resize_nearest_keeps_measured_values():
    s = toy_sample(8, 12)
    out = Resize((4, 6))(s)
    # Nearest-exact from 8x12 to 4x6 takes input pixel 2i + 1 (the centre-aligned neighbour).
    assert torch.equal(out["depth"], s["depth"][:, 1::2, 1::2])
    assert torch.equal(out["mask"], s["mask"][:, 1::2, 1::2])
    assert out["image"].shape == (3, 4, 6) and out["mask"].dtype == torch.bool


def test_resize_masked_averages_valid_pixels_only():
    s = toy_sample(8, 12)
    out = Resize((4, 6), depth_mode="masked")(s)
    d = s["depth"][0].numpy().reshape(4, 2, 6, 2)
    m = s["mask"][0].numpy().reshape(4, 2, 6, 2)
    count = m.sum(axis=(1, 3))
    expected = np.where(count > 0, (d * m).sum(axis=(1, 3)) / np.maximum(count, 1), 0)
    assert np.allclose(out["depth"][0].numpy(), expected, atol=1e-6)
    assert np.array_equal(out["mask"][0].numpy(), count > 0)


def test_resize_masked_keeps_sparse_points():
    s = toy_sample(40, 40)
    s["mask"] = torch.zeros(1, 40, 40, dtype=torch.bool)
    s["mask"][0, ::9, ::7] = True  # about 2.5% valid, like LiDAR
    s["depth"] = torch.where(s["mask"], torch.rand(1, 40, 40) + 0.5, torch.zeros(1, 40, 40))
    nearest, masked = Resize((10, 10))(s), Resize((10, 10), depth_mode="masked")(s)
    assert masked["mask"].sum() > nearest["mask"].sum()
    assert (masked["depth"][masked["mask"]] > 0).all()


def test_color_jitter_stays_in_range_and_channel_swap_permutes():
    s = toy_sample()
    out = ColorJitter(0.4, 0.4, 0.4, 0.2, 0.2, generator=torch.Generator().manual_seed(0))(s)
    assert out["image"].min() >= 0 and out["image"].max() <= 1 and torch.equal(out["depth"], s["depth"])
    swapped = RandomChannelSwap(p=1.0, generator=torch.Generator().manual_seed(3))(s)["image"]
    assert sorted(swapped.sum(dim=(1, 2)).tolist()) == pytest.approx(sorted(s["image"].sum(dim=(1, 2)).tolist()))


def test_build_transforms_from_config_drops_random_ones_for_eval():
    cfg = [{"name": "resize", "size": [6, 8]}, "hflip", {"name": "color_jitter", "brightness": 0.1}]
    train, evaluation = build_transforms(cfg, train=True), build_transforms(cfg, train=False)
    assert [type(t).__name__ for t in train.transforms] == ["Resize", "RandomHorizontalFlip", "ColorJitter"]
    assert [type(t).__name__ for t in evaluation.transforms] == ["Resize"]
    assert build_transforms({"center_crop": {"size": 4}}, train=False)(toy_sample())["image"].shape == (3, 4, 4)
    with pytest.raises(ValueError, match="valid: resize"):
        build_transforms(["rotate"], train=True)


def test_transforms_follow_torch_seed_in_datasets():
    ds = SyntheticScenes(2, size=(24, 32), transform=Compose([RandomHorizontalFlip(0.5), RandomCrop(16)]))
    torch.manual_seed(0)
    a = [ds[i]["depth"] for i in range(2)]
    torch.manual_seed(0)
    b = [ds[i]["depth"] for i in range(2)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_model_minmax_input_norm_is_equation_1_per_image():
    """What production runs: the model's own InputNorm (predict, export and the app all go through it)."""
    import depthsmith

    norm = depthsmith.create_model("test_resnet", input_norm="minmax").input_norm
    x = torch.rand(2, 3, 5, 7) * 0.5 + torch.tensor([0.1, 0.3]).view(2, 1, 1, 1)
    out = norm(x)
    for i in range(2):
        lo, hi = x[i].min(), x[i].max()
        assert torch.allclose(out[i], (x[i] - lo) / (hi - lo), atol=1e-6)


def test_model_timm_input_norm_uses_the_encoders_own_mean_and_std():
    import depthsmith

    x = torch.rand(1, 3, 4, 4)
    resnet = depthsmith.create_model("resnet18").input_norm(x)
    assert torch.allclose(resnet[0, 1], (x[0, 1] - 0.456) / 0.224, atol=1e-6)  # ImageNet statistics
    irv2 = depthsmith.create_model("inception_resnet_v2", decoder="transposed").input_norm(x)
    assert torch.allclose(irv2, (x - 0.5) / 0.5, atol=1e-6)  # Inception's own mean / std, not ImageNet's


@pytest.mark.parametrize("mode", ["metric", "minmax", "inverse"])
def test_depth_targets_in_unit_range_and_invert(mode):
    s = toy_sample()
    depth, mask = s["depth"][None], s["mask"][None]  # batched 1 x 1 x H x W
    target = depth_to_target(depth, mask, mode, max_depth=10.0, min_depth=0.1)
    assert target[mask].min() >= 0 and target[mask].max() <= 1 and (target[~mask] == 0).all()
    back = target_to_depth(target, mode, max_depth=10.0, min_depth=0.1, depth_range=minmax_range(depth, mask))
    assert torch.allclose(back[mask], depth[mask], rtol=1e-5)


def test_depth_targets_by_hand():
    depth = torch.tensor([[[[0.5, 2.0], [4.0, 0.0]]]])
    mask = depth > 0
    assert depth_to_target(depth, mask, "metric", max_depth=10.0).flatten().tolist() == pytest.approx([0.05, 0.2, 0.4, 0])
    assert depth_to_target(depth, mask, "minmax").flatten().tolist() == pytest.approx([0, 1.5 / 3.5, 1, 0])
    assert depth_to_target(depth, mask, "inverse", min_depth=0.5).flatten().tolist() == pytest.approx([1, 0.25, 0.125, 0])
    with pytest.raises(ValueError, match="depth_range"):
        target_to_depth(depth, "minmax")


def _rgb_sample(h: int, w: int, seed: int = 0, high: float = 1.0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    image = torch.rand(3, h, w, generator=gen) * high
    depth = torch.rand(1, h, w, generator=gen) * 5 + 0.5
    return {"image": image, "depth": depth, "mask": depth > 1.0, "name": "x"}


def test_center_crop_puts_the_rounded_half_margin_above_and_left():
    # margins 3 (240 -> 237) and 4 (320 -> 316): round(1.5) = 2 above, 2 left; the rest below / right
    sample = _rgb_sample(240, 320)
    out = CenterCrop((237, 316))(sample)
    for key in ("image", "depth", "mask"):
        assert torch.equal(out[key], sample[key][:, 2:239, 2:318])


def test_color_jitter_brightness_alone_scales_every_value_by_one_factor():
    sample = _rgb_sample(16, 20, high=0.5)  # at most 0.5: a factor <= 1.3 never clips
    jitter = ColorJitter(brightness=0.3, contrast=0, saturation=0, gamma=0, channel_gain=0,
                         generator=torch.Generator().manual_seed(3))
    ratio = jitter(sample)["image"] / sample["image"]
    assert torch.allclose(ratio, ratio.flatten()[0].expand_as(ratio), atol=1e-5)
    assert 0.7 <= float(ratio.flatten()[0]) <= 1.3 and abs(float(ratio.flatten()[0]) - 1) > 1e-3


def test_color_jitter_contrast_blends_with_the_mean_grey():
    """Contrast f: out = f * img + (1 - f) * mean(0.299 R + 0.587 G + 0.114 B), by hand."""
    sample = _rgb_sample(16, 20, seed=1, high=0.6)
    jitter = ColorJitter(brightness=0, contrast=0.3, saturation=0, gamma=0, channel_gain=0,
                         generator=torch.Generator().manual_seed(5))
    out = jitter(sample)["image"]
    img = sample["image"].double()
    grey = (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]).mean()
    f = float((out[0, 0, 0] - out[0, 0, 1]) / (img[0, 0, 0] - img[0, 0, 1]))  # the drawn factor
    assert 0.7 <= f <= 1.3
    np.testing.assert_allclose(out.double().numpy(), (f * img + (1 - f) * grey).clamp(0, 1).numpy(), atol=1e-5)
