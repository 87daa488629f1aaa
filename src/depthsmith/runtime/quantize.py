"""int8: NNCF post-training quantization of the OpenVINO IR, with its accuracy measured.

Calibration images come from the user (a dataset config YAML or a folder of images) or, when
none are given, from synthetic rooms (``depthsmith.data.SyntheticScenes``), which is said aloud:
activation ranges calibrated on procedural rooms may not suit real photos. The images are split:
three quarters calibrate, the held-out quarter measures the int8 model against the fp32 IR (mean
relative difference and delta1 agreement). A model whose difference exceeds ``tolerance`` is not
written.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["calibration_images", "quantize_int8", "Int8Result", "cached_int8", "DEFAULT_TOLERANCE"]
from ..resize import resized
from ..errors import InputError

DEFAULT_TOLERANCE = 0.02  # mean relative difference vs fp32 above which an int8 model is refused
DEFAULT_CALIBRATION = 24  # images (the measurement on a Xeon used 24)


def _resize(image: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    return resized(image, size).numpy().astype(np.float32)


def calibration_images(source: str | Path | None, count: int = DEFAULT_CALIBRATION,
                       size: tuple[int, int] = (240, 320)) -> tuple[list[np.ndarray], str]:
    """(1 x 3 x H x W arrays, a description of where they came from) for calibration.

    ``source``: None (synthetic rooms), a dataset config YAML (any ``depthsmith.data`` reader),
    or a folder of images. At most ``count`` images, spread over the source, resized to ``size``.
    """
    if source is None:
        from ..data.synthetic import SyntheticScenes

        # seed 1234: not the seeds the recipes train (0), validate (1) or evaluate (2) on
        rooms = SyntheticScenes(num_samples=count, size=size, seed=1234)
        return ([_resize(rooms[i]["image"], size) for i in range(count)],
                f"{count} synthetic rooms (no --calibration given: ranges from procedural scenes, "
                "not your images; give --calibration for a model used on real photos)")
    path = Path(source)
    if path.is_dir():
        from ..io import IMAGE_SUFFIXES, load_image

        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        files = [f for f in files if "depth" not in f.stem.lower()]  # paired RGB/depth folders: RGB only
        if not files:
            raise InputError(f"calibration folder {path} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        picked = [files[int(i)] for i in np.linspace(0, len(files) - 1, min(count, len(files)))]
        images = [_resize(torch.from_numpy(load_image(f)).permute(2, 0, 1), size) for f in picked]
        return images, f"{len(images)} images from folder {path}"
    if path.suffix.lower() in (".yaml", ".yml"):
        from ..data.build import build_dataset

        dataset = build_dataset(path)
        if len(dataset) == 0:
            raise InputError(f"calibration dataset {path} has no samples")
        idx = sorted({int(i) for i in np.linspace(0, len(dataset) - 1, min(count, len(dataset)))})
        images = [_resize(dataset[i]["image"], size) for i in idx]
        return images, f"{len(images)} images of dataset {path}"
    raise InputError(f"--calibration {path}: expected a dataset config (.yaml/.yml) or a folder of images, "
                     "and it is neither" + ("" if path.exists() else " (it does not exist)"))


@dataclass
class Int8Result:
    path: Path | None  # None when refused
    source: str
    n_calibration: int
    n_heldout: int
    rel_diff: float
    delta1: float
    tolerance: float
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.path is not None

    def summary(self) -> str:
        lines = [f"int8 calibration: {self.source}; {self.n_calibration} calibrate, {self.n_heldout} held out",
                 f"  int8 vs fp32 on the {self.n_heldout} held-out images: mean relative difference "
                 f"{100 * self.rel_diff:.3f}% (tolerance {100 * self.tolerance:g}%), "
                 f"delta1 agreement {self.delta1:.4f}"]
        if self.ok:
            lines.append(f"  wrote {self.path} (+ {self.path.with_suffix('.bin').name})")
        else:
            lines += [f"  REFUSED: {p}" for p in self.problems]
        return "\n".join(lines)


def _agreement(fast: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    from .base import agreement

    return agreement(torch.from_numpy(fast), torch.from_numpy(ref))


def quantize_int8(fp32_xml: str | Path, out: str | Path, calibration: str | Path | None = None,
                  tolerance: float = DEFAULT_TOLERANCE, count: int = DEFAULT_CALIBRATION,
                  size: tuple[int, int] = (240, 320), images: list[np.ndarray] | None = None,
                  source: str = "") -> Int8Result:
    """Quantize an fp32 IR with NNCF, measure it on held-out images, write it if within ``tolerance``."""
    import nncf

    from .openvino_ir import OpenVinoRunner, core, read_metadata, save_openvino

    if images is None:
        images, source = calibration_images(calibration, count, size)
    if len(images) < 2:
        raise InputError(f"int8 needs at least 2 calibration images (some calibrate, some are held out "
                         f"to measure accuracy); {source} gave {len(images)}")
    held = images[3::4] or images[-1:]  # every 4th image is held out
    calib = [im for i, im in enumerate(images) if i % 4 != 3] if len(images) > 3 else images[:-1]
    fp32_model = core().read_model(str(fp32_xml))
    meta = read_metadata(fp32_model)
    # PERFORMANCE preset: symmetric int8 weights and activations, the fastest kernels on VNNI.
    # Divide and Maximum stay float: they are the output heads' floors and ratios (models/heads.py:
    # disparity max / max(d, max / 1000), inverse min / max(s, min / max)), no weights to speed up.
    # Quantized to the map's [0, max] range, the floor rounds to 0 and the division gives inf
    # (measured: 6018 of 6144 pixels of a tiny disparity model, every disparity zoo model refused).
    quantized = nncf.quantize(fp32_model, nncf.Dataset(calib), subset_size=len(calib),
                              preset=nncf.QuantizationPreset.PERFORMANCE, target_device=nncf.TargetDevice.CPU,
                              ignored_scope=nncf.IgnoredScope(types=["Divide", "Maximum"], validate=False))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    # Beside ``out``: os.replace cannot move across file systems (/tmp is often another one).
    with tempfile.TemporaryDirectory(dir=Path(out).parent, prefix=f".{Path(out).name}.") as tmp:
        candidate = save_openvino(quantized, Path(tmp) / "int8.xml", {**meta, "precision": "int8"})
        fp32_run, int8_run = OpenVinoRunner(fp32_xml, "fp32"), OpenVinoRunner(candidate)
        ref = np.concatenate([fp32_run(torch.from_numpy(h)).numpy() for h in held])
        got = np.concatenate([int8_run(torch.from_numpy(h)).numpy() for h in held])
        rel, d1 = _agreement(got, ref)
        result = Int8Result(None, source, len(calib), len(held), rel, d1, tolerance)
        if not rel <= tolerance:
            result.problems = [
                f"int8 mean relative difference {100 * rel:.3f}% exceeds the tolerance {100 * tolerance:g}%; "
                "no model written",
                "NNCF's post-training quantization does not say which layers cost the accuracy (only its "
                "accuracy-control mode ranks them, at the cost of many more runs); options: calibration images "
                "closer to your data, more of them, or a larger --tolerance"]
            return result
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        for suffix in (".bin", ".xml"):  # .xml last: an .xml on disk always has its weights
            os.replace(candidate.with_suffix(suffix), out.with_suffix(suffix))
    result.path = out
    return result


def cached_int8(model: Any, tolerance: float = DEFAULT_TOLERANCE) -> Path:
    """An int8 IR for the ``openvino-int8`` backend: an int8 .xml as given, or one quantized once
    (synthetic-room calibration) into the model cache. Raises when refused (beyond ``tolerance``;
    the benchmark passes ``inf`` to measure a model's int8 cost whatever it is)."""
    from .cache import cache_dir, exported_openvino, model_key
    from .openvino_ir import core, read_metadata

    if not isinstance(model, torch.nn.Module) and Path(model).suffix == ".xml":
        meta = read_metadata(core().read_model(str(model)))
        if meta.get("precision") != "int8":
            raise InputError(f"{model} is not an int8 IR (precision {meta.get('precision', 'unknown')}); write one "
                             "with `depthsmith export --format openvino --int8`, or run it with --backend openvino")
        return Path(model)
    # A model accepted under another tolerance is kept apart: the default path must never load it.
    name = "model-int8.xml" if tolerance == DEFAULT_TOLERANCE else f"model-int8-tolerance-{tolerance:g}.xml"
    out = cache_dir() / "models" / model_key(model) / name
    if not out.is_file():
        print("openvino-int8: quantizing with synthetic-room calibration (for your own images use "
              "`depthsmith export --format openvino --int8 --calibration ...`)")
        result = quantize_int8(exported_openvino(model), out, tolerance=tolerance)
        print(result.summary())
        if not result.ok:
            raise RuntimeError(result.summary())
    return out
