"""Every zoo family everywhere (issue #19): one tiny random model per converted family (tests/helpers.py's
builders, saved in the family's published layout) through ``predict`` on a folder (16-bit PNG, .npy, point
cloud), through ``predict`` on a synthetic video, and through ``eval`` under a protocol with the output
kind's own alignment; and DA3-Metric's metres from the camera's focal, checked against depth_anything_3's
own pre- and post-processing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import depthsmith
from depthsmith.cli import main
from depthsmith.inference import Predictor
from depthsmith.io import read_video, scaled_intrinsics
from depthsmith.models.heads import output_kind
from depthsmith.resize import resized
from helpers import (standardise_output, DA3_MEAN, DA3_STD, DPT_VARIANTS, ZOE_BINS, save_da3, save_hf_depth_anything, save_hf_depth_pro,
                     save_hf_dpt, save_hf_zoedepth, tiny_da3, tiny_hf_depth_anything, tiny_hf_depth_pro, tiny_hf_dpt,
                     tiny_hf_zoedepth)

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


def test_an_exported_focal_normalised_file_still_gives_metres_with_intrinsics(tmp_path):
    """The .onnx / .xml carry the output kind and DA3-Metric's focal rule (runtime/export_onnx.py), so
    predict on the file turns its output into metres as on the model (checked against depth_anything_3
    above), and says unitless without a camera. A small CNN with an exp head stands in for the DA3 ViT:
    what is under test is the file's metadata, and exporting a ViT costs 40 s here."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    from depthsmith.export import export_onnx
    from depthsmith.runtime import file_metadata
    from depthsmith.runtime.openvino_ir import convert_to_openvino

    torch.manual_seed(0)
    model = depthsmith.create_model("test_resnet", decoder="unet", output="exp_depth").eval()
    model.card["focal_normalised"] = "metres = focal x output / 300 (as models/da3.py writes it)"
    last = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    standardise_output(last, lambda: model(torch.rand(1, 3, 64, 96)))  # an exp of logits that spread
    export_onnx(model, tmp_path / "m.onnx", height=64, width=96, check=False)
    convert_to_openvino(tmp_path / "m.onnx", tmp_path / "m.xml")
    for path in (tmp_path / "m.onnx", tmp_path / "m.xml"):
        meta = file_metadata(path)
        assert meta["output_kind"] == "exp_depth" and "300" in meta["focal_normalised"], path
        assert "not metres" in meta["output"] and "focal" in meta["output"]
    image = _photo()
    size = {"height": 64, "width": 96}
    on_model = Predictor(model, intrinsics=CAMERA, device="cpu", backend="torch-fp32", working_size=size)
    expected = torch.from_numpy(on_model.predict(image))
    for path, backend in ((tmp_path / "m.onnx", "onnx"), (tmp_path / "m.xml", "openvino-fp32")):
        metric = Predictor(path, intrinsics=CAMERA, device="cpu", backend=backend, working_size=size)
        assert metric.is_metric and metric.units == "metres" and on_model.units == "metres"
        assert _close(metric.predict(image), expected) < 1e-4, path
    plain = Predictor(tmp_path / "m.onnx", device="cpu", backend="onnx", working_size=size)
    assert not plain.is_metric and "focal" in plain.units and plain.output == "exp_depth"
    # Negative control: without the camera the file's output is not the metres.
    assert _close(plain.predict(image), expected) > 0.1


# family -> (writes its checkpoint folder, predict/eval --working-size). Each runs at its own working size
# (its processor's, small in these tiny configs) except DA3, fixed at upstream's 504 long side: a ViT-S there
# would take seconds per image, so it runs at 70 x 56.
FAMILIES = {
    "depth-anything-v2": (lambda f: save_hf_depth_anything(tiny_hf_depth_anything("relative"), f, size=56), "model"),
    "dpt": (lambda f: save_hf_dpt(tiny_hf_dpt(**DPT_VARIANTS["project"]), f), "model"),
    "zoedepth": (lambda f: save_hf_zoedepth(tiny_hf_zoedepth(ZOE_BINS[:1]), f), "model"),
    "depth-pro": (lambda f: save_hf_depth_pro(tiny_hf_depth_pro(), f), "model"),
    "da3-metric": (None, "70x56"),  # the module's da3_metric fixture
}
RUN = ["--backend", "torch", "--precision", "fp32", "--device", "cpu"]  # auto would time exports first


def _ply(path) -> tuple[dict, np.ndarray]:
    """The header comments and vertices of a binary little-endian PLY (read here, not by depthsmith)."""
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode("ascii").splitlines()
    assert "format binary_little_endian 1.0" in header
    count = int(next(line for line in header if line.startswith("element vertex")).split()[-1])
    k = next(line for line in header if line.startswith("comment intrinsics")).split()[3::2]
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("r", "u1"), ("g", "u1"), ("b", "u1")])
    vertices = np.frombuffer(data[end:], dtype=dtype)
    assert len(vertices) == count
    return {"count": count, "fx": float(k[0]), "fy": float(k[1])}, vertices


@pytest.fixture(scope="module")
def clip_and_rooms(tmp_path_factory):
    """A 6-frame synthetic video (``depthsmith data video``) and a two-room synthetic dataset config."""
    import yaml

    folder = tmp_path_factory.mktemp("inputs")
    assert main(["data", "video", "--out", str(folder / "clip"), "--frames", "6", "--height", "48", "--width", "64"]) == 0
    (folder / "rooms.yaml").write_text(yaml.safe_dump({"type": "synthetic", "num_samples": 2, "size": [48, 64],
                                                       "seed": 0}))
    return folder / "clip" / "rgb.mp4", folder / "rooms.yaml"


@pytest.mark.slow  # about 2-4 s a family on one core: two predicts, a video and an eval through the CLI
@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_runs_through_predict_video_and_eval(family, clip_and_rooms, tmp_path, request):
    pytest.importorskip("transformers")
    from PIL import Image

    build, work = FAMILIES[family]
    if build is None:
        folder = request.getfixturevalue("da3_metric")[1]
    else:
        folder = tmp_path / family
        build(folder)
    images = tmp_path / "images"
    images.mkdir()
    for i, (h, w) in enumerate([(48, 64), (60, 45)]):  # two sizes, two aspect ratios
        Image.fromarray(_photo(h, w, seed=i)).save(images / f"im{i}.png")
    camera = [] if family == "depth-pro" else ["--intrinsics", "50", "52", "31.5", "23.5"]  # Depth Pro: its own
    out = tmp_path / "out"
    args = ["predict", str(images), "--model", str(folder), "--out", str(out), "--save", "png16", "npy", "ply",
            "--working-size", work, *RUN]
    assert main([*args, *camera]) == 0
    info = json.loads((out / "depth_info.json").read_text())
    predictor = Predictor(folder, device="cpu", precision="fp32", backend="torch")
    metric = family in ("zoedepth", "depth-pro", "da3-metric")  # DA3-Metric: from --intrinsics' focal
    assert (info["units"] == "metres") == metric and (metric or "not metres" in info["units"])
    for i in range(2):
        rgb = np.asarray(Image.open(images / f"im{i}.png"))
        depth = np.load(out / f"im{i}_depth.npy")
        assert depth.shape == rgb.shape[:2] and depth.dtype == np.float32
        assert np.isfinite(depth).all() and (depth > 0).all() and depth.std() > 0
        png = np.asarray(Image.open(out / f"im{i}_depth16.png")).astype(np.float64) / 1000.0  # millimetres
        assert png.shape == depth.shape and np.abs(png - np.minimum(depth, 65.535)).max() <= 0.0005 + 1e-6
        header, vertices = _ply(out / f"im{i}.ply")
        assert header["count"] == depth.size  # every pixel: all finite and positive
        np.testing.assert_allclose(np.sort(vertices["z"]), np.sort(depth.ravel()), rtol=1e-6)
        if family == "depth-pro":  # the model's own focal, not NYU's Kinect scaled to the image
            assert header["fx"] == pytest.approx(predictor.intrinsics(rgb)[0], rel=1e-4)
            assert header["fx"] != pytest.approx(scaled_intrinsics(*rgb.shape[:2])[0], rel=1e-2)
        else:
            assert (header["fx"], header["fy"]) == (50.0, 52.0)

    clip, rooms = clip_and_rooms
    assert main(["predict", str(clip), "--model", str(folder), "--out", str(tmp_path / "v"),
                 "--save", "color", "--working-size", work, *RUN]) == 0
    frames, meta = read_video(tmp_path / "v" / "rgb_depth.mp4")
    frames = list(frames)
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)
    assert all(frame.std() > 1 for frame in frames)  # a coloured depth map, not a blank frame

    assert main(["eval", "--model", str(folder), "--data", str(rooms), "--protocol", "nyu-eigen", "--crop-mode",
                 "scaled", "--working-size", work, "--device", "cpu", "--out", str(tmp_path / "eval")]) == 0
    result = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert result["settings"]["align"] == output_kind(predictor.output).default_align
    assert result["metrics"]["n_images"] == 2
    assert 0 < result["metrics"]["abs_rel"] < 10 and 0 <= result["metrics"]["d1"] <= 1
