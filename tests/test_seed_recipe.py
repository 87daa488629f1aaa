"""The seed notebook's training and evaluation choices, each a named option (issue: seed fidelity).

References are written from the notebook's code (README "Seed fidelity"), not from depthsmith: OpenCV's
INTER_AREA as box-overlap weights, `normalize_img` over every pixel, `train_val_split` over images.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

import depthsmith
from depthsmith.data import DepthDataset, build_transforms, depth_to_target, holdout_split
from depthsmith.data.nyu import NyuMatDataset
from depthsmith.data.transforms import area_resize
from depthsmith.evaluate import evaluate
from depthsmith.train import train
from depthsmith.train.config import ConfigError, resolve_config
from depthsmith.train.module import DepthTrainModule

from helpers import make_nyu_mat
from helpers import SMALL_UNET, TINY

pytestmark = pytest.mark.usefixtures("one_thread")


# -- data ------------------------------------------------------------------------------------------
def test_seed_test_split_is_the_first_654_labeled_images_in_file_order(tmp_path):
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), rng.integers(500, 4000, (24, 32)), f"s{i}")
             for i in range(5)]
    mat, splits = make_nyu_mat(tmp_path, pairs, train_ndx=[1, 2, 3], test_ndx=[5, 4])
    splits.unlink()  # the seed's test set needs no splits.mat
    ds = NyuMatDataset(mat, split="seed_test")
    assert list(ds.indices) == [0, 1, 2, 3, 4]  # all 5 (< 654), in file order, train images included
    for i in range(5):
        expected = pairs[i][0]
        got = (ds[i]["image"].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="seed_test"):
        NyuMatDataset(mat, split="seed")


class _Scenes(DepthDataset):
    """Names only: 4 scenes of 5 frames (the split never reads a sample)."""

    def _count(self):
        return 20

    def _name(self, i):
        return f"scene{i // 5}/{i % 5}.jpg"

    def _load(self, i):
        raise AssertionError("holdout_split must not read samples")


@pytest.mark.parametrize("by", ["scene", "image"])
def test_holdout_by_image_cuts_scenes_and_by_scene_never_does(by):
    val = _Scenes().names()
    val_names = [val[i] for i in holdout_split(_Scenes(), 0.3, "val", seed=0, by=by)._index]
    train_names = [val[i] for i in holdout_split(_Scenes(), 0.3, "train", seed=0, by=by)._index]
    assert sorted(val_names + train_names) == sorted(val)  # disjoint and complete
    scenes = {n.split("/")[0] for n in val_names} & {n.split("/")[0] for n in train_names}
    if by == "scene":
        assert not scenes
    else:
        assert len(val_names) == 6  # 30 % of 20 images, drawn one image at a time
        assert scenes  # with 6 of 20 random frames, some scene lands on both sides (seed 0)


def _opencv_area(a: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """INTER_AREA downscaling written out: each output pixel is the overlap-weighted mean of the input
    pixels its footprint [j * s, (j + 1) * s) covers."""

    def weights(n_in, n_out):
        s = n_in / n_out
        w = np.zeros((n_out, n_in))
        for j in range(n_out):
            for i in range(n_in):
                w[j, i] = max(0.0, min((j + 1) * s, i + 1) - max(j * s, i)) / s
        return w

    return weights(a.shape[0], out_h) @ a @ weights(a.shape[1], out_w).T


def test_area_resize_is_opencv_inter_area():
    x = np.array([[1.0, 2.0, 4.0], [8.0, 16.0, 32.0], [0.0, 0.0, 64.0]])
    got = area_resize(torch.from_numpy(x), (2, 2)).numpy()
    # By hand: rows and columns 3 -> 2 take (x0 + x1/2) / 1.5 and (x1/2 + x2) / 1.5.
    row = lambda r: [(r[0] + r[1] / 2) / 1.5, (r[1] / 2 + r[2]) / 1.5]  # noqa: E731
    rows = np.array([row(r) for r in x])
    hand = np.array([(rows[0] + rows[1] / 2) / 1.5, (rows[1] / 2 + rows[2]) / 1.5])
    np.testing.assert_allclose(got, hand, rtol=1e-12)
    big = np.random.default_rng(1).random((48, 64))
    np.testing.assert_allclose(area_resize(torch.from_numpy(big), (24, 32)).numpy(),
                               big.reshape(24, 2, 32, 2).mean(axis=(1, 3)), rtol=1e-12)  # NYU's 2x: 2x2 means
    np.testing.assert_allclose(area_resize(torch.from_numpy(big), (17, 23)).numpy(), _opencv_area(big, 17, 23),
                               rtol=1e-10)


def test_seed_resize_averages_depth_holes_in_and_hflip_can_run_in_validation():
    depth = torch.full((1, 4, 4), 2.0)
    depth[0, 0, 0] = 0.0  # a hole
    sample = {"image": torch.rand(3, 4, 4), "depth": depth, "mask": depth > 0, "name": "x"}
    resize = build_transforms([{"name": "resize", "size": [2, 2], "image_mode": "area", "depth_mode": "area"}], True)
    out = resize(sample)
    assert out["depth"][0, 0, 0].item() == pytest.approx(1.5)  # (0 + 2 + 2 + 2) / 4: the hole averaged in
    assert out["mask"].all()
    assert len(build_transforms(["hflip"], train=False).transforms) == 0
    assert len(build_transforms([{"name": "hflip", "val": True}], train=False).transforms) == 1


def test_seed_target_is_min_max_over_every_pixel_zeros_included():
    depth = torch.tensor([[[[0.0, 2.0], [4.0, 8.0]]]])
    mask = depth > 0
    seed = depth_to_target(depth, mask, "minmax_all", max_depth=10.0)
    np.testing.assert_allclose(seed.numpy().ravel(), [0.0, 0.25, 0.5, 1.0])  # (d - 0) / (8 - 0)
    clean = depth_to_target(depth, mask, "minmax", max_depth=10.0, min_depth=1e-3)
    np.testing.assert_allclose(clean.numpy().ravel(), [0.0, 0.0, 1 / 3, 1.0])  # (d - 2) / 6 on valid pixels


# -- recipes -----------------------------------------------------------------------------------------
def test_seed_recipe_sets_every_notebook_choice():
    cfg = resolve_config("enc-dec-irv2-nyu-seed", ["data.train.csv_path=/x/nyu2_train.csv"])
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.amsgrad, cfg.optim.eps) == ("adam", 1e-4, True, 1e-7)
    assert cfg.bn_momentum == 0.01 and cfg.target == "seed_minmax"
    assert cfg.data.split_by == "image" and cfg.data.val_fraction == 0.3
    assert cfg.model["channel_order"] == "bgr" and cfg.model["output"] == "relative"
    resize, flip = cfg.data.transforms
    assert (resize["image_mode"], resize["depth_mode"], flip) == ("area", "area", {"name": "hflip", "val": True})
    clean = resolve_config("enc-dec-irv2-nyu", ["data.root=/x.zip"])
    assert (clean.target, clean.bn_momentum, clean.data.split_by) == ("auto", None, "scene")


@pytest.mark.parametrize("recipe", ["convnext-unet-report", "resnet50-transposed-report"])
def test_report_recipes_have_no_augmentation_and_log_an_eval_pass_to_wandb(recipe):
    cfg = resolve_config(recipe, ["data.root=/x.zip"])
    assert [t["name"] if isinstance(t, dict) else t for t in cfg.data.transforms] == ["resize"]
    assert cfg.logging.wandb == "auto" and cfg.logging.train_eval is True
    assert cfg.logging.train_metrics is False and cfg.trainer.check_val_every_n_epoch == 2


@pytest.mark.parametrize("bad, key", [("target=seed", "target"), ("bn_momentum=0.99x", "bn_momentum"),
                                      ("bn_momentum=2", "bn_momentum"), ("data.split_by=frame", "split_by"),
                                      ("logging.wandb=maybe", "logging.wandb")])
def test_bad_seed_options_name_the_key(bad, key):
    with pytest.raises(ConfigError, match=key):
        resolve_config("quickstart", [bad])


def test_bn_momentum_reaches_every_batchnorm_and_seed_target_needs_relative_output():
    cfg = resolve_config("quickstart", ["model.name=test_resnet", SMALL_UNET, "bn_momentum=0.01"])
    module = DepthTrainModule(cfg)
    bns = [m for m in module.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.momentum == 0.01 for m in bns)
    with pytest.raises(ValueError, match="model.output=relative"):
        DepthTrainModule(resolve_config("quickstart", ["model.name=test_resnet", SMALL_UNET, "target=seed_minmax"]))


def test_train_eval_pass_scores_the_training_set_like_validation(tmp_path):
    """With val = the training images and no augmentation, the evaluation pass over the training set
    must give exactly the validation numbers: same images, same model, eval mode."""
    same = "{type: synthetic, num_samples: 8, size: [32, 48], seed: 0}"
    result = train("quickstart", TINY + ["model.name=test_resnet", SMALL_UNET, f"data.val={same}",
                                         "data.transforms=[]", "logging.train_eval=true", "trainer.max_epochs=2"],
                   run_dir=tmp_path / "run")
    assert result.ok, result.error
    with open(tmp_path / "run" / "metrics.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train_eval/rmse")]
    assert len(rows) == 2
    for r in rows:
        for name in ("rmse", "ssim", "abs_rel"):
            assert float(r[f"train_eval/{name}"]) == pytest.approx(float(r[f"val/{name}"]), rel=1e-6)


# -- evaluation -------------------------------------------------------------------------------------
class _Sample(torch.utils.data.Dataset):
    def __init__(self, image, depth):
        self.image, self.depth = image, depth

    def __len__(self):
        return 1

    def __getitem__(self, i):
        return {"image": self.image, "depth": self.depth, "mask": self.depth > 0, "name": "only"}


def test_seed_raw_input_feeds_rgb_over_255_past_the_models_normalisation():
    torch.manual_seed(0)
    model = depthsmith.create_model("test_resnet", input_norm="minmax", output="relative",
                                    decoder_kwargs={"filters": [16, 8, 8, 8, 8]}).eval()
    with torch.no_grad():  # a random network barely depends on its input: make the output sensitive
        model.decoder.head.weight.mul_(30.0)
    image = 0.2 + 0.5 * torch.rand(3, 480, 640)  # far from [0, 1]: min-max changes it a lot
    depth = 1.0 + 3.0 * torch.rand(1, 480, 640)
    data = _Sample(image, depth)
    raw = evaluate(model, data, protocol="seed", seed_input="raw", progress=False, keep_examples=1)
    own = evaluate(model, data, protocol="seed", progress=False, keep_examples=1)
    def by_hand(x, minmax):  # resize to 240x320, [eq. 1], the network after its input norm, back up, x10 x0.75
        with torch.no_grad():
            x = torch.nn.functional.interpolate(x[None], (240, 320), mode="bilinear", align_corners=False)
            if minmax:
                x = (x - x.min()) / (x.max() - x.min())
            logits = model.decoder(model.encoder(x), (240, 320))
            up = torch.nn.functional.interpolate(torch.sigmoid(logits), (480, 640), mode="bilinear",
                                                 align_corners=False)
        return 7.5 * up[0, 0].double().numpy()

    np.testing.assert_allclose(raw.examples[0]["pred"], by_hand(image, False), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(own.examples[0]["pred"], by_hand(image, True), rtol=1e-5, atol=1e-6)
    assert np.abs(own.examples[0]["pred"] - raw.examples[0]["pred"]).max() > 100 * 1e-5 * 7.5  # far beyond rounding
    assert "RGB x/255" in raw.label and "AS THE SEED'S evaluate.py" in raw.description
    assert "normalised by the model itself" in own.description
    with pytest.raises(ValueError, match="protocol 'seed' only"):
        evaluate(model, data, protocol="nyu-eigen", seed_input="raw", progress=False)


def test_submodules_are_reachable_after_import_depthsmith():
    import subprocess
    import sys

    code = "import depthsmith; print(depthsmith.metrics.compute_metrics.__name__, depthsmith.losses.__name__, " \
           "depthsmith.data.build_dataset.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["compute_metrics", "depthsmith.losses", "build_dataset"]
