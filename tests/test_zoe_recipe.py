"""ZoeDepth's fine-tuning recipe (issue #19): its SILog (weight 10, lambda 0.85), its +-1 degree
rotation, and the ``zoedepth-nyu`` recipe resolving and training a step on a tiny ZoeDepth.

References: ZoeDepth's SILog is written out below with torch from its published formula
(isl-org/ZoeDepth zoedepth/trainers/loss.py: 10 * sqrt(torch.var(g) + 0.15 * mean(g)^2)); its rotation
is PIL ``Image.rotate`` (zoedepth/data/data_mono.py ``rotate_image``), checked here against PIL and
scikit-image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

import depthsmith
from depthsmith.data.transforms import RandomRotate, build_transforms
from depthsmith.errors import InputError
from depthsmith.losses import build_loss, silog_loss
from depthsmith.train import list_recipes, resolve_config, train
from depthsmith.train.module import build_model
from depthsmith.train.optim import build_optimizer, build_scheduler
from helpers import ZOE_BINS, hub_snapshot, offline_hub_cache, save_hf_zoedepth, tiny_hf_zoedepth

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPE = "zoedepth-nyu"
ZOE = {"silog": 10.0, "silog_lambda": 0.85}


# --- the loss --------------------------------------------------------------------------------
def test_zoedepth_silog_by_hand():
    """e = ln(target / pred) = 0, 1, 2, 3 on the valid pixels: mean 1.5, mean square 3.5, so
    10 * sqrt(3.5 - 0.85 * 1.5^2) = 10 * sqrt(1.5875). A masked-out pixel and a NaN target count for nothing."""
    pred = torch.ones(1, 1, 1, 6, dtype=torch.float64)
    target = torch.tensor([1.0, math.e, math.e**2, math.e**3, 50.0, float("nan")], dtype=torch.float64).view(1, 1, 1, 6)
    mask = torch.tensor([True, True, True, True, False, True]).view(1, 1, 1, 6)
    total, terms = build_loss(ZOE)(pred, target, mask)
    assert float(total) == pytest.approx(10 * math.sqrt(1.5875), abs=1e-12)
    assert float(terms["silog"]) == pytest.approx(math.sqrt(1.5875), abs=1e-12)  # logged unweighted
    # Without silog_lambda: Depth-Anything-V2's 0.5, as before.
    assert float(build_loss({"silog": 1.0})(pred, target, mask)[0]) == pytest.approx(math.sqrt(3.5 - 0.5 * 2.25))


def _zoedepth_silog(pred, target, mask, unbiased=True):
    """loss.py SILogLoss(beta=0.15).forward, written from its formula: one variance over the valid
    pixels of the whole batch; torch.var is unbiased (divides by n - 1)."""
    g = torch.log(pred[mask] + 1e-7) - torch.log(target[mask] + 1e-7)
    return 10 * torch.sqrt(torch.var(g, unbiased=unbiased) + 0.15 * torch.mean(g) ** 2)


@pytest.mark.parametrize("size", [(4, 5), (16, 20), (64, 80)])
def test_zoedepth_silog_matches_its_formula_up_to_the_unbiased_variance(size):
    """Ours divides the variance by n, ZoeDepth's by n - 1. With the biased variance the two agree to
    float rounding; with ZoeDepth's own they differ by a relative (0, 1 / (2 (n - 1))]: O(1 / n)."""
    gen = torch.Generator().manual_seed(size[0])
    target = 0.5 + 9.0 * torch.rand(2, 1, *size, generator=gen, dtype=torch.float64)
    pred = target * torch.exp(0.3 * torch.randn(2, 1, *size, generator=gen, dtype=torch.float64) + 0.1)
    mask = torch.rand(2, 1, *size, generator=gen) > 0.2
    n = int(mask.sum())
    ours = build_loss(ZOE)(pred, target, mask)[0]
    torch.testing.assert_close(ours, _zoedepth_silog(pred, target, mask, unbiased=False), rtol=1e-6, atol=0)
    gap = float(_zoedepth_silog(pred, target, mask) / ours) - 1
    assert 0 < gap <= 1 / (2 * (n - 1))
    assert gap > 0.5 / (2 * (n - 1))  # and of that order (the variance dominates the mean term here)


@pytest.mark.parametrize("spec, hint", [
    ({"silog": 10.0, "silog_lambda": 1.5}, r"loss\.silog_lambda must be a number in \[0, 1\], got 1\.5"),
    ({"silog": 10.0, "silog_lambda": "high"}, r"loss\.silog_lambda must be a number in \[0, 1\], got 'high'"),
    ({"l1": 1.0, "silog_lambda": 0.85}, r"loss\.silog_lambda=0\.85 is set but the loss has no silog term"),
    ({"silog": "ten"}, r"loss\.silog must be a number \(the term's weight\), got 'ten'"),
    ({"silog": 10.0, "silog_lamda": 0.85}, r"unknown loss terms \['silog_lamda'\].*silog_lambda"),
])
def test_bad_silog_options_name_the_key(spec, hint):
    with pytest.raises(InputError, match=hint):
        build_loss(spec)


def test_a_bad_silog_lambda_in_a_training_config_is_refused_naming_the_key(tmp_path):
    with pytest.raises(InputError, match=r"loss\.silog_lambda must be a number in \[0, 1\], got 2"):
        train("quickstart", ["loss={silog: 1.0, silog_lambda: 2}", "data.num_workers=0"], run_dir=tmp_path / "run")


# --- the rotation ----------------------------------------------------------------------------
def _sample(h=24, w=32):
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    image = torch.stack([torch.sin(xx / 3) * torch.cos(yy / 4), torch.cos(xx / 5), yy / h]) * 0.5 + 0.5
    image[2] = image[2].clamp(0, 1)
    depth = (1.0 + xx // 4 + 10 * (yy // 5))[None]
    mask = torch.ones(1, h, w, dtype=torch.bool)
    mask[0, 10:13, 5:9] = False  # a hole that must rotate with the depth
    depth[~mask] = 0.0
    return {"image": image, "depth": depth, "mask": mask, "name": "pattern"}


def _pil(array: np.ndarray, angle: float, resample) -> np.ndarray:
    """data_mono.py rotate_image: PIL Image.rotate (counter-clockwise, same size, black fill), float mode."""
    return np.asarray(Image.fromarray(array.astype(np.float32), mode="F").rotate(angle, resample=resample))


def test_random_rotate_is_zoedepths_pil_rotation_and_skimages():
    from skimage.transform import rotate as sk_rotate

    degrees, seed = 20.0, 3  # 20 degrees: corners large enough on a small image
    angle = -degrees + 2 * degrees * float(torch.rand((), generator=torch.Generator().manual_seed(seed)))
    assert abs(angle) > 5
    sample = _sample()
    out = RandomRotate(degrees, generator=torch.Generator().manual_seed(seed))(sample)
    image, depth = sample["image"].numpy(), sample["depth"][0].numpy()

    # Image: bilinear, zeros from outside, as skimage (order 1, constant 0) everywhere ...
    for c in range(3):
        ref = sk_rotate(image[c], angle, order=1, mode="constant", cval=0.0, preserve_range=True)
        np.testing.assert_allclose(out["image"][c].numpy(), ref, atol=1e-5)
    # ... and as PIL wherever a pixel's four neighbours are inside (PIL treats the edge band its own way).
    inside = sk_rotate(np.ones_like(depth), angle, order=1, mode="constant", cval=0.0) > 1 - 1e-6
    inside[[0, -1], :] = inside[:, [0, -1]] = False
    assert inside.mean() > 0.5
    for c in range(3):
        np.testing.assert_allclose(out["image"][c].numpy()[inside], _pil(image[c], angle, Image.BILINEAR)[inside],
                                   atol=1e-5)
    # Depth: nearest, the same pixels PIL and skimage pick; what came in from outside is 0 and invalid.
    np.testing.assert_array_equal(out["depth"][0].numpy(), _pil(depth, angle, Image.NEAREST))
    np.testing.assert_array_equal(out["depth"][0].numpy(),
                                  sk_rotate(depth, angle, order=0, mode="constant", cval=0.0, preserve_range=True))
    corners = _pil(np.ones_like(depth), angle, Image.NEAREST) == 0
    assert corners.sum() > 20 and corners[0, 0] and corners[-1, -1]
    got_mask = out["mask"][0].numpy()
    assert out["mask"].dtype == torch.bool and not got_mask[corners].any()
    np.testing.assert_array_equal(got_mask, _pil(sample["mask"][0].numpy(), angle, Image.NEAREST) > 0.5)
    assert (out["depth"][0].numpy()[got_mask] > 0).all()  # no 0 m left valid: the hole stayed a hole
    assert got_mask.sum() < sample["mask"].sum()


def test_random_rotate_is_seeded_within_its_range_and_training_only():
    sample = _sample()
    first = RandomRotate(1.0, generator=torch.Generator().manual_seed(7))(sample)
    again = RandomRotate(1.0, generator=torch.Generator().manual_seed(7))(sample)
    other = RandomRotate(1.0, generator=torch.Generator().manual_seed(8))(sample)
    for key in ("image", "depth", "mask"):
        assert torch.equal(first[key], again[key])
    assert not torch.equal(first["image"], other["image"])
    gen = torch.Generator().manual_seed(0)
    draws = [-1.0 + 2.0 * float(torch.rand((), generator=gen)) for _ in range(200)]
    assert min(draws) < -0.9 and max(draws) > 0.9  # the same uniform the transform draws, both signs
    cfg = [{"name": "random_rotate", "degrees": 1.0}]
    assert len(build_transforms(cfg, train=True).transforms) == 1
    assert build_transforms(cfg, train=False).transforms == []  # never in validation unless val: true
    with pytest.raises(InputError, match=r"random_rotate: degrees must be a number in \[0, 180\], got -1"):
        RandomRotate(-1)


# --- the recipe ------------------------------------------------------------------------------
RUN = [  # one step on synthetic scenes, fp32 on one CPU process
    "data.train={type: synthetic, num_samples: 4, size: [48, 64], seed: 0}",
    "data.val={type: synthetic, num_samples: 2, size: [48, 64], seed: 1}", "data.val_fraction=0",
    "data.batch_size=2", "data.num_workers=0", "trainer.max_epochs=1", "trainer.accelerator=cpu",
    "trainer.devices=1", "trainer.strategy=auto", "trainer.log_every_n_steps=1", "logging.progress_bar=false",
]


@pytest.fixture()
def cached_zoedepth_nyu(tmp_path, monkeypatch):
    """The recipe's own init_from, Intel/zoedepth-nyu, as a tiny random ZoeDepth in an offline Hub cache."""
    snapshot = hub_snapshot(tmp_path / "hub", "Intel/zoedepth-nyu")
    save_hf_zoedepth(tiny_hf_zoedepth(ZOE_BINS[:1]), snapshot)
    offline_hub_cache(monkeypatch, tmp_path / "hub")
    return snapshot


def test_the_recipe_is_listed_and_says_zoedepths_values():
    assert "zoedepth-nyu" in list_recipes()
    cfg = resolve_config(RECIPE)
    assert cfg.model["init_from"] == "Intel/zoedepth-nyu" and cfg.model["init_parts"] == ["encoder", "decoder"]
    assert cfg.loss == ZOE
    assert (cfg.optim.name, cfg.optim.encoder_lr, cfg.optim.decoder_lr, cfg.optim.weight_decay) == (
        "adamw", 1.61e-5, 1.61e-4, 0.01)
    s = cfg.schedule
    assert (s.name, s.pct_start, s.div_factor, s.final_div_factor, s.anneal_strategy) == ("onecycle", 0.7, 1, 1e4, "cos")
    assert (cfg.trainer.max_epochs, cfg.data.batch_size, cfg.trainer.gradient_clip_val) == (5, 16, 0.1)
    assert cfg.data.transforms[0] == {"name": "random_rotate", "degrees": 1.0} and cfg.data.transforms[1] == "hflip"


@pytest.mark.slow  # one training step through Lightning: about 5 s on a busy core
def test_the_recipe_trains_a_tiny_zoedepth_a_step(cached_zoedepth_nyu, tmp_path):
    donor = depthsmith.load_model(cached_zoedepth_nyu)
    cfg = resolve_config(RECIPE, RUN)
    model = build_model(cfg.model)
    assert model.output == donor.output == "metric_direct"
    # freeze_midas_bn has nothing to freeze: no BatchNorm anywhere in the converted network.
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    # lr / 10 for BEiT and its relative position tables (encoder_lr_factor = pos_enc_lr_factor = 10), lr for the rest.
    optimizer = build_optimizer(model, cfg.optim)
    groups = {g["name"]: g for g in optimizer.param_groups}
    rel_pos = {id(p) for n, p in model.named_parameters() if "relative_position" in n}
    assert rel_pos and rel_pos <= {id(p) for p in groups["encoder"]["params"]}
    assert (groups["encoder"]["lr"], groups["decoder"]["lr"]) == (1.61e-5, 1.61e-4)
    # OneCycle, div_factor 1: flat at each group's lr for 70 % of the steps while beta1 falls 0.95 -> 0.85,
    # then cosine to lr / 1e4.
    scheduler = build_scheduler(optimizer, cfg.schedule, total_steps=100, total_epochs=5)["scheduler"]
    seen = []
    for _ in range(100):
        seen.append((optimizer.param_groups[1]["lr"], optimizer.param_groups[1]["betas"][0]))
        optimizer.step()
        scheduler.step()
    assert seen[0] == pytest.approx((1.61e-4, 0.95)) and seen[69] == pytest.approx((1.61e-4, 0.85), rel=1e-3)
    assert seen[-1][0] == pytest.approx(1.61e-8, rel=0.05)

    result = train(RECIPE, RUN + ["trainer.max_steps=1"], run_dir=tmp_path / "run")
    assert result.ok, result.error
    trained = depthsmith.load_model(result.model_dir)
    assert trained.output == "metric_direct" and trained.card["training"]["init_from"] == "Intel/zoedepth-nyu"
    sd, before = trained.state_dict(), donor.state_dict()
    assert any(not torch.equal(sd[k], before[k]) for k in before)  # it did train
