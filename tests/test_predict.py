"""depthsmith.predict and the Predictor: sizes, input kinds, the fast path's accuracy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import depthsmith
from depthsmith.bench import agreement, fit_depth_head, synthetic_scene
from depthsmith.device import resolve_precision
from depthsmith.inference import MIN_SIDE, Predictor, predict
from depthsmith.runtime.fast import fold_batchnorm
from depthsmith.io import load_image

from helpers import real_dir

REAL = real_dir("metric3d_nyu")  # NYU Depth V2: not shipped (no explicit licence), see tests/helpers.py


@pytest.fixture(scope="module")
def tiny() -> depthsmith.DepthModel:
    """A tiny model whose output varies across the image (head fitted to a synthetic room), so
    comparisons are not between two near-constant maps."""
    torch.manual_seed(0)
    model = depthsmith.create_model("test_resnet", decoder="unet", encoder_weights=None).eval()
    rgb, depth = synthetic_scene(96, 128)
    return fit_depth_head(model, torch.from_numpy(rgb).permute(2, 0, 1)[None], torch.from_numpy(depth))


def _eager(model, rgb: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(rgb).permute(2, 0, 1)[None])[0, 0].numpy()


@pytest.mark.parametrize("shape", [(96, 128), (77, 131), (50, 41)])
def test_predict_keeps_resolution_and_matches_eager(tiny, shape):
    rgb = np.random.default_rng(0).random((*shape, 3), dtype=np.float32)
    depth = predict(Predictor(tiny, precision="fp32"), rgb)
    assert depth.shape == shape and depth.dtype == np.float32 and np.isfinite(depth).all()
    if min(shape) >= MIN_SIDE:  # no resizing: the fast fp32 path (BN folded, channels-last) = eager
        np.testing.assert_allclose(depth, _eager(tiny, rgb), atol=1e-4)


def test_large_image_is_capped_then_resized_back(tiny):
    rgb = np.random.default_rng(1).random((300, 500, 3), dtype=np.float32)
    predictor = Predictor(tiny, precision="fp32", max_side=128)
    assert predictor.working_size(300, 500) == (77, 128)  # aspect kept
    depth = predictor.predict(rgb)
    assert depth.shape == (300, 500)
    small = torch.nn.functional.interpolate(torch.from_numpy(rgb).permute(2, 0, 1)[None], size=(77, 128),
                                            mode="bilinear", antialias=True)
    with torch.no_grad():
        expected = torch.nn.functional.interpolate(tiny(small), size=(300, 500), mode="bilinear")[0, 0].numpy()
    np.testing.assert_allclose(depth, expected, atol=1e-4)


def test_input_kinds_give_the_same_depth(tiny, tmp_path):
    rgb8 = (np.random.default_rng(2).random((70, 90, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb8).save(tmp_path / "a.png")
    predictor = Predictor(tiny, precision="fp32")
    ref = predictor.predict(rgb8)
    for image in (tmp_path / "a.png", str(tmp_path / "a.png"), Image.fromarray(rgb8),
                  rgb8.astype(np.float32) / 255.0, rgb8.astype(np.uint16) * 257):
        np.testing.assert_allclose(predictor.predict(image), ref, atol=1e-5)


def test_exif_grey_rgba_and_16_bit(tmp_path):
    rgb8 = (np.random.default_rng(3).random((40, 60, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: stored sideways, show rotated 90 degrees clockwise
    Image.fromarray(rgb8).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    assert load_image(tmp_path / "rot.jpg").shape == (60, 40, 3)

    grey = (np.arange(40 * 60) % 256).astype(np.uint8).reshape(40, 60)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    g = load_image(tmp_path / "grey.png")
    assert g.shape == (40, 60, 3) and np.allclose(g[..., 0], g[..., 2]) and np.isclose(g[0, 1, 0], 1 / 255)

    rgba = np.dstack([rgb8, np.full((40, 60), 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_allclose(load_image(tmp_path / "rgba.png"), rgb8 / 255.0, atol=1e-6)

    grey16 = np.full((40, 60), 65535, np.uint16)
    grey16[0, 0] = 0
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    g16 = load_image(tmp_path / "g16.png")
    assert g16[0, 0, 0] == 0.0 and g16[1, 1, 1] == 1.0  # full 16-bit range, not clipped at 255


def test_predict_many_batches_in_order(tiny):
    rng = np.random.default_rng(4)
    images = [rng.random(s + (3,), dtype=np.float32) for s in [(64, 80)] * 3 + [(70, 70)] + [(64, 80)] * 2]
    predictor = Predictor(tiny, precision="fp32")
    out = list(predictor.predict_many(enumerate(images), batch_size=2))
    assert [k for k, _, _ in out] == list(range(6))
    for (_, image, depth) in out:
        np.testing.assert_allclose(depth, predictor.predict(image), atol=1e-4)


def _cpuinfo_flags() -> set[str]:
    """This machine's CPU flags, read here independently of depthsmith.cpu."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return next((set(ln.split(":", 1)[1].split()) for ln in text.splitlines() if ln.startswith("flags")), set())


def test_precision_auto_follows_the_cpu_flags(monkeypatch):
    cpu = torch.device("cpu")
    # The documented rule: bf16 only where the CPU computes it in hardware (AVX-512 BF16 or AMX-BF16).
    native = bool({"avx512_bf16", "amx_bf16"} & _cpuinfo_flags())
    assert resolve_precision("auto", cpu) == ("bf16" if native else "fp32")
    from depthsmith import cpu as cpu_info

    real_read = Path.read_text
    for flags, expected in (({"avx2", "avx512f"}, "fp32"), ({"avx512f", "avx512_bf16"}, "bf16"),
                            ({"amx_bf16", "amx_tile"}, "bf16"), (set(), "fp32")):  # both branches, any machine
        fake = f"processor\t: 0\nflags\t\t: fpu sse2 {' '.join(sorted(flags))}\n"
        # At the file read (cached by cpu._cpuinfo), so every check of the flags sees this CPU.
        monkeypatch.setattr(Path, "read_text", lambda self, *a, _f=fake, **k: _f if str(self) == "/proc/cpuinfo"
                            else real_read(self, *a, **k))
        cpu_info._cpuinfo.cache_clear()
        assert resolve_precision("auto", cpu) == expected, flags
        assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"  # kept
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", cpu)
    monkeypatch.undo()
    cpu_info._cpuinfo.cache_clear()  # the real flags again for the tests after this one



def test_fast_path_on_an_fx_tapped_encoder_matches_eager():
    """The paper's kind of encoder (fx taps inside Inception-ResNet-v2, cut early to stay small):
    BatchNorm folding and the model copy must not change the fp32 output."""
    torch.manual_seed(0)
    model = depthsmith.create_model("inception_resnet_v2", encoder_kwargs={
        "taps": ["conv2d_1a", "conv2d_3b"], "include_input": True}).eval()
    rgb, depth = synthetic_scene(96, 128)
    fit_depth_head(model, torch.from_numpy(rgb).permute(2, 0, 1)[None], torch.from_numpy(depth))
    np.testing.assert_allclose(Predictor(model, precision="fp32").predict(rgb), _eager(model, rgb), atol=1e-4)
    assert fold_batchnorm(model.encoder.net) == 4  # conv2d_1a, 2a, 2b, 3b: conv + BN pairs


def test_bf16_accuracy_on_real_image():
    """bf16 fast path vs fp32 eager on a real NYU frame, with the paper's model.

    The preset has random weights (no download here); its depth head is least-squares fitted to
    NYU frame 0's depth so the output spans about 1-8 m, then frame 1 (unseen) is compared.
    """
    if not (REAL / "00001_rgb.png").is_file():
        pytest.skip(f"real NYU sample not found under {REAL}: NYU Depth V2 has no explicit licence, so it is not shipped")
    from depthsmith.io import read_png16

    torch.manual_seed(0)
    model = depthsmith.create_model("enc-dec-irv2").eval()
    size = (240, 320)

    def tensor(i: int) -> torch.Tensor:
        x = torch.from_numpy(load_image(REAL / f"{i:05d}_rgb.png")).permute(2, 0, 1)[None]
        return torch.nn.functional.interpolate(x, size=size, mode="bilinear", antialias=True)

    gt = torch.from_numpy(read_png16(REAL / "00000_depth.png"))[None, None]
    fit_depth_head(model, tensor(0), torch.nn.functional.interpolate(gt, size=size, mode="nearest")[0, 0])
    x = tensor(1)
    with torch.no_grad():
        ref = model(x)[0, 0]
    assert ref.max() / ref.min() > 3  # the map really varies
    fast = Predictor(model, precision="bf16", backend="torch").run(x)[0]  # the torch fast path, not auto's pick
    rel, delta1 = agreement(fast, ref)
    assert rel <= 0.01, f"bf16 mean relative difference {rel:.4f}"
    assert delta1 >= 0.99, f"bf16 delta1 agreement {delta1:.4f}"


@pytest.mark.slow
def test_compiled_predictor_matches_eager(tiny):
    rgb = np.random.default_rng(5).random((64, 80, 3), dtype=np.float32)
    eager = Predictor(tiny, precision="fp32").predict(rgb)
    compiled = Predictor(tiny, precision="fp32", compile=True).predict(rgb)
    np.testing.assert_allclose(compiled, eager, atol=1e-3)
