"""The web page: limits, the handler's outputs, and an end-to-end run in a real headless Chromium."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import depthsmith
from depthsmith.app import LimitError, check_limits, make_handler
from depthsmith.inference import Predictor
from depthsmith.io import read_png16

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return depthsmith.create_model("test_resnet", decoder="unet", encoder_weights=None).eval()


def _save(path: Path, h: int, w: int, noise: bool = False) -> Path:
    rng = np.random.default_rng(0)
    if noise:  # incompressible: the PNG is about h * w * 3 bytes
        a = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    else:  # smooth: a small file whatever its size in pixels
        a = np.zeros((h, w, 3), np.uint8)
        a[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None]
        a[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    Image.fromarray(a).save(path)
    return path


def test_limits_give_clear_messages(tmp_path):
    small = _save(tmp_path / "ok.png", 60, 80)
    assert check_limits(small, max_pixels=80 * 60, max_file_mb=1) == (80, 60)
    with pytest.raises(LimitError, match=r"400 x 300 = 0.12 megapixels.*at most 0.04 megapixels"):
        check_limits(_save(tmp_path / "big.png", 300, 400), max_pixels=200 * 200, max_file_mb=1)
    with pytest.raises(LimitError, match=r"MB; this page accepts images up to 0.01 MB"):
        check_limits(_save(tmp_path / "heavy.png", 100, 100, noise=True), max_pixels=10**6, max_file_mb=0.01)
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(LimitError, match="not an image"):
        check_limits(tmp_path / "text.png", max_pixels=10**6, max_file_mb=1)


def test_handler_returns_colour_depth_png16_and_point_cloud(model, tmp_path):
    handle = make_handler(Predictor(model, precision="fp32"), max_pixels=10**6, max_file_mb=5, out_dir=tmp_path)
    rgb, colored, png, ply, note = handle(str(_save(tmp_path / "room.png", 60, 90)))
    assert rgb.shape == colored.shape == (60, 90, 3) and colored.dtype == np.uint8
    depth = read_png16(png)
    assert depth.shape == (60, 90) and 0 < depth.min() <= depth.max() <= model.max_depth
    assert Path(ply).read_bytes().startswith(b"ply\n") and "metres" in note


@pytest.mark.slow  # 3-9 s on one busy core: gradio's import and a Depth Pro at its 256 x 256 working size
@pytest.mark.usefixtures("one_thread")
def test_page_with_a_zoo_model_uses_its_own_focal_for_the_point_cloud(tmp_path):
    """A converted Depth Pro (tiny, random; tests/helpers.py): the page builds, one upload gives metres and a
    point cloud with the model's focal estimate, as ``predict --save ply`` uses, not NYU's Kinect."""
    pytest.importorskip("transformers")
    pytest.importorskip("gradio")
    from depthsmith.app import build_app
    from depthsmith.io import scaled_intrinsics
    from helpers import save_hf_depth_pro, tiny_hf_depth_pro

    folder = tmp_path / "depth-pro"
    save_hf_depth_pro(tiny_hf_depth_pro(), folder)
    predictor = Predictor(folder, device="cpu", precision="fp32", backend="torch")
    demo = build_app(folder, predictor=predictor)
    assert demo.depthsmith_predictor is predictor and predictor.units == "metres"
    handle = make_handler(predictor, max_pixels=10**6, max_file_mb=5, out_dir=tmp_path)
    rgb, colored, png, ply, note = handle(str(_save(tmp_path / "room.png", 60, 90)))
    depth = read_png16(png)
    assert depth.shape == (60, 90) and colored.shape == (60, 90, 3) and (depth > 0).all() and depth.std() > 0
    header = Path(ply).read_bytes().split(b"end_header\n")[0].decode("ascii")
    fx = float(header.split("comment intrinsics fx ")[1].split()[0])
    assert fx == pytest.approx(predictor.intrinsics(rgb)[0], rel=1e-4)
    assert fx != pytest.approx(scaled_intrinsics(60, 90)[0], rel=1e-2)
    assert f"element vertex {depth.size}" in header and "own focal length estimate" in note and " m " in note


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _is_inferno_r(image: np.ndarray) -> bool:
    from matplotlib import colormaps

    lut = colormaps["inferno_r"](np.linspace(0, 1, 256))[:, :3] * 255
    pixels = image.reshape(-1, 3).astype(np.float64)[::7]
    nearest = np.sqrt(((pixels[:, None, :] - lut[None]) ** 2).sum(-1)).min(1)
    return bool(nearest.max() < 4.0)


def test_page_in_headless_chromium(model, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (Debian package 'chromium'); CI installs it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    import io
    import urllib.request

    from depthsmith.app import launch

    good = _save(tmp_path / "room.png", 120, 160)
    too_many_pixels = _save(tmp_path / "wide.png", 300, 400)
    too_heavy = _save(tmp_path / "noise.png", 150, 190, noise=True)  # ~85 KB > 0.05 MB
    demo = launch(model, port=_free_port(), max_pixels=200 * 200, max_file_mb=0.05, prevent_thread_lock=True)
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(demo.local_url)
            upload = page.locator("#upload input[type=file]")

            upload.set_input_files(str(good))
            img = page.locator("#depth-image img")
            img.wait_for(timeout=60_000)
            src = img.get_attribute("src")
            with urllib.request.urlopen(src) as response:
                shown = np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))
            assert shown.shape == (120, 160, 3)  # the input's size and aspect
            assert _is_inferno_r(shown) and shown.std(axis=(0, 1)).max() > 10  # coloured, not blank
            assert "160 x 120" in page.locator("#depth-info").inner_text()

            page.reload()
            page.locator("#upload input[type=file]").set_input_files(str(too_many_pixels))
            page.get_by_text("megapixels; this page accepts at most 0.04 megapixels").wait_for(timeout=30_000)

            page.reload()
            page.locator("#upload input[type=file]").set_input_files(str(too_heavy))
            page.get_by_text("exceed the maximum allowed size").wait_for(timeout=30_000)

            page.reload()  # after two refusals the server still serves a good upload
            page.locator("#upload input[type=file]").set_input_files(str(good))
            page.locator("#depth-image img").wait_for(timeout=60_000)
            assert "160 x 120" in page.locator("#depth-info").inner_text()
            browser.close()
    finally:
        demo.close()
