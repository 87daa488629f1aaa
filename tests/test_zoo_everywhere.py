"""Every zoo family everywhere (issue #19): DA3-Metric's metres from the camera's focal, checked against
depth_anything_3's own pre- and post-processing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from depthsmith.cli import main
from depthsmith.inference import Predictor
from depthsmith.resize import resized
from helpers import DA3_MEAN, DA3_STD, save_da3, tiny_da3

pytestmark = pytest.mark.usefixtures("one_thread")

CAMERA = (120.0, 90.0, 75.0, 50.0)  # fx, fy, cx, cy of a 100 x 150 image: fx and fy scale by different ratios
DA3_SIZE = {"long_side": 70, "multiple_of": 14}  # upstream's upper_bound_resize at process_res=70


@pytest.fixture(scope="module")
def da3_metric(tmp_path_factory):
    pytest.importorskip("depth_anything_3")
    net = tiny_da3("da3metric-large")
    return net, save_da3(net, "da3metric-large", tmp_path_factory.mktemp("da3metric"))


def _photo(height: int = 100, width: int = 150, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((height, width, 3)) * 255).astype(np.uint8)


def _upstream_metres(net, image: np.ndarray, camera, work: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream's raw output and its metres (``apply_metric_scaling`` with the intrinsics its InputProcessor
    scaled to the network's input), both resized back bilinearly to the image. The network sees
    depthsmith's resize of the image: the image resamplers (cv2 there, torch here) are not under test."""
    from depth_anything_3.utils.alignment import apply_metric_scaling
    from depth_anything_3.utils.io.input_processor import InputProcessor

    fx, fy, cx, cy = camera
    k = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    processed, _, k_net = InputProcessor()([image], None, k[None], process_res=DA3_SIZE["long_side"],
                                           process_res_method="upper_bound_resize")
    assert tuple(processed.shape[-2:]) == work  # the same network size as upstream's
    x = resized(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0, work)
    with torch.no_grad():
        raw = net(((x - DA3_MEAN) / DA3_STD)[:, None]).depth  # B x N x H x W
    metres = apply_metric_scaling(raw, k_net[None].float())

    def back(d: torch.Tensor) -> torch.Tensor:
        return F.interpolate(d, size=image.shape[:2], mode="bilinear", align_corners=False)[0, 0]

    return back(raw), back(metres)


def _close(got: np.ndarray, expected: torch.Tensor) -> float:
    assert expected.std() > 0.1  # a varied map, not a constant any wiring reproduces
    return float((torch.from_numpy(got) - expected).abs().max() / expected.std())


def test_da3_metric_gives_upstreams_metres_with_intrinsics_and_says_unitless_without(da3_metric):
    net, folder = da3_metric
    image = _photo()
    options = dict(device="cpu", precision="fp32", backend="torch", working_size=DA3_SIZE)
    metric = Predictor(folder, intrinsics=CAMERA, **options)
    work = metric.working_size(*image.shape[:2])
    raw, metres = _upstream_metres(net, image, CAMERA, work)
    got = metric.predict(image)
    assert metric.is_metric and metric.units == "metres"
    assert _close(got, metres) < 1e-4
    # Negative control: the focal of the image's own resolution, not scaled to the network's input.
    unscaled = raw * (CAMERA[0] + CAMERA[1]) / 2 / 300
    assert _close(got, unscaled) > 0.1

    plain = Predictor(folder, **options)
    assert not plain.is_metric and "not metres" in plain.units and "focal" in plain.units
    assert _close(plain.predict(image), raw) < 1e-4  # the raw output, as upstream returns without intrinsics


def test_da3_metric_predict_cli_writes_metres_only_with_intrinsics(da3_metric, tmp_path):
    from PIL import Image

    net, folder = da3_metric
    image = _photo(seed=1)
    Image.fromarray(image).save(tmp_path / "a.png")
    common = ["predict", str(tmp_path / "a.png"), "--model", str(folder), "--backend", "torch", "--precision", "fp32",
              "--device", "cpu", "--working-size", "70x42", "--save", "npy"]
    assert main([*common, "--out", str(tmp_path / "m"), "--intrinsics", *map(str, CAMERA)]) == 0
    assert main([*common, "--out", str(tmp_path / "u")]) == 0
    metric_info = json.loads((tmp_path / "m" / "depth_info.json").read_text())
    plain_info = json.loads((tmp_path / "u" / "depth_info.json").read_text())
    assert metric_info["units"] == "metres" and "not metres" in plain_info["units"]
    raw, metres = _upstream_metres(net, image, CAMERA, (42, 70))  # 70x42: upstream's size for 100 x 150
    assert _close(np.load(tmp_path / "m" / "a_depth.npy"), metres) < 1e-4
    assert _close(np.load(tmp_path / "u" / "a_depth.npy"), raw) < 1e-4

