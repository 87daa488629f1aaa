"""Temporal consistency of video depth: per-frame vs ``--temporal align`` on synthetic camera paths,
and peak memory of ``depthsmith predict`` on a short and a long video.

    PYTHONPATH=src python benchmarks/bench_video.py --relative [LABEL=]RUN_REL/model ... [--metric RUN_MET/model] \
        [--frames 200] [--size 48 64] [--long 5000]

Models: quickstart variants (``depthsmith train --config quickstart``, shortened: README "Video"), e.g.
``model.output=relative`` (per-image min-max depth, affine in depth space), ``model.output=disparity
loss=midas`` (scale-and-shift-invariant loss, as MiDaS and Depth Anything are trained), one metric, and with
``--inverse`` one trained with ``model.output=inverse`` run as a disparity model (``AsDisparity``:
normalised per frame by its maximum, as ``disparity`` models are). Clips: ``synthetic_video``
(data/video.py) paths walk, pan, pass and static, seed 0, exact depth and poses, with a capture's
noise and exposure jitter (``--noise``, ``--exposure``): rendered frames are otherwise bit-identical.

Columns (metrics/temporal.py): TAE as Video Depth Anything's eval_TAE (one scale and shift fitted to
the whole clip first, in the output kind's space; none for the metric model), flicker on the still
camera only, per-frame AbsRel and delta1 (relative models: each frame least-squares aligned to its
ground truth, in disparity space for the disparity model, the standard for them; metric: as predicted), and clip AbsRel (after
the clip's single fit: what a viewer of the video sees, drift included). Rows ``align wN``: the
aligner's reference is the mean of the last N aligned frames (metrics/clip_align.py). Rows ``lstsq slope`` (``--lstsq W``): the aligner's
earlier fit (``ClipAligner(fit="lstsq")``). Rows ``filter``: ``--temporal filter``, the aligner then the
flow-guided filter (metrics/clip_filter.py; only the filter on the metric model). Column spread: the last frame's standard deviation over the
first's, in the fitting space (a still camera should keep ~1; the lstsq slope shrinks it). Row ``oracle``:
each frame of the per-frame output fitted to its own ground truth (least squares in the kind's space):
the TAE left when every frame has its best scale and shift, i.e. the per-pixel disagreement between
frames that no per-frame alignment can remove. Row ``kind floor``: the exact depth, normalised per frame
as the output kind normalises it (``kind_floor``), then aligned: a perfect model of that kind.

Memory: ``depthsmith predict`` (--save color npy, --temporal filter) on a 200-frame and a
``--long``-frame walk, each in a fresh process; its peak RSS (ru_maxrss).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from depthsmith.cpu import cpu_model, relevant_flags, usable_cores  # noqa: E402
from depthsmith.data.video import SyntheticVideo, write_clip  # noqa: E402
from depthsmith.evaluate.temporal import clip_space  # noqa: E402
from depthsmith.inference import Predictor  # noqa: E402
from depthsmith.metrics import compute_metrics  # noqa: E402
from depthsmith.metrics.clip_align import ClipAligner  # noqa: E402
from depthsmith.metrics.temporal import apply_affine, fit_clip, flicker, temporal_alignment_error  # noqa: E402

PATHS = ("walk", "pan", "pass", "static")
DISPARITY_RANGE = 1.0e3  # models/model.py: the floor of a disparity model's normalised output


class AsDisparity(torch.nn.Module):
    """A quickstart model trained with ``output: inverse`` served as a disparity model. Its sigmoid is
    proportional to disparity (models/model.py: ``inverse`` depth = min_depth / sigmoid), and the
    output is normalised per frame by its maximum exactly as ``to_depth`` does for ``disparity``
    (affine-invariant Depth Anything style models), the per-frame scale the issue is about."""

    output, is_metric = "disparity", False

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model, self.name = model, f"{getattr(model, 'name', 'model')} as disparity"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        disparity = self.model.forward_normalized(x)
        top = disparity.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
        return top / disparity.clamp_min(top / DISPARITY_RANGE) / DISPARITY_RANGE

MAX_DEPTH = 10.0


def clip_data(path: str, frames: int, size: tuple[int, int], noise: float, exposure: float):
    video = SyntheticVideo(num_frames=frames, size=size, seed=0, path=path, noise=noise, exposure=exposure)
    rgbs, gts = [], []
    for i in range(frames):
        rgb, depth, _ = video._load(i)
        rgbs.append((rgb * 255.0 + 0.5).astype(np.uint8))  # as decoded from a video
        gts.append(depth.astype(np.float64))
    return video, rgbs, gts


def oracle(preds, gts, space: str) -> list[np.ndarray]:
    """Each frame put on its own ground truth by least squares in ``space``: what the best possible
    per-frame scale and shift would give, so its TAE is the per-pixel part no alignment removes."""
    out = []
    for p, g in zip(preds, gts):
        scale, shift = fit_clip([p], [g], space, max_depth=MAX_DEPTH)
        out.append(apply_affine(p, scale, shift, space, max_depth=MAX_DEPTH))
    return out


def kind_floor(gts, output: str) -> list[np.ndarray]:
    """The exact depth of each frame normalised on its own as the output kind is (models/heads.py):
    ``disparity`` max(disparity) / disparity, i.e. depth over the frame's nearest depth; ``relative``
    the per-image min-max depth it is trained on. A perfect model of that kind predicts exactly this;
    the TAE left after aligning it is what normalising each frame on its own costs (a camera walking
    forward changes the nearest depth, and no fit to the previous frames at the same pixels can tell
    that from a change of scale)."""
    out = []
    for g in gts:
        valid = g[g > 0]
        out.append(g / valid.min() if output == "disparity" else (g - valid.min()) / (valid.max() - valid.min()))
    return out


def predict(predictor: Predictor, rgbs) -> tuple[list[np.ndarray], float]:
    """Per-frame predictions (``stream`` with temporal none) and the seconds they took."""
    t0 = time.perf_counter()
    preds = [d for _, d in predictor.stream(rgbs, temporal="none")]
    return preds, time.perf_counter() - t0


def score(predictor: Predictor, video, rgbs, raw: list[np.ndarray], model_seconds: float, gts, temporal: str,
          window: int) -> dict[str, float]:
    """``raw`` per-frame predictions through ``predictor.aligner`` (what ``stream`` does with them,
    frame by frame, so the model runs once per clip), then scored; fps = model + aligner time."""
    t0 = time.perf_counter()
    if temporal == "floor":  # the output kind's own floor: perfect per-frame predictions, aligned
        raw, temporal = kind_floor(gts, predictor.output), "align"
    if temporal == "lstsq":  # the earlier fit: the least-squares slope (metrics/clip_align.py)
        align = ClipAligner(predictor.aligner("align").space, window=window, fit="lstsq")
    else:
        align = predictor.aligner(temporal, window=window) if temporal != "oracle" else None
    preds = raw if align is None else [align(d, rgb) for d, rgb in zip(raw, rgbs)]
    seconds = model_seconds + time.perf_counter() - t0
    space = clip_space(predictor.output, predictor.is_metric)
    poses = [video.pose(i) for i in range(len(gts))]
    to_space = (lambda d: 1.0 / d) if space == "disparity" else (lambda d: d)
    spread = float(np.std(to_space(preds[-1])) / np.std(to_space(preds[0])))  # contrast kept, last / first frame
    if temporal == "oracle":
        clip = oracle(preds, gts, space)
        return {"tae": temporal_alignment_error(clip, poses, video.intrinsics(), gts),
                "flicker": flicker(clip, [g > 0 for g in gts]) if video.path == "static" else float("nan"),
                "abs_rel": float("nan"), "d1": float("nan"), "clip_abs_rel": float("nan"), "fps": float("nan"),
                "spread": float("nan")}
    scale, shift = fit_clip(preds, gts, space, max_depth=MAX_DEPTH)
    clip = [apply_affine(p, scale, shift, space, max_depth=MAX_DEPTH) for p in preds]
    align = "none" if predictor.is_metric else ("lstsq_disparity" if predictor.output == "disparity" else "lstsq")
    per_frame = [compute_metrics(p, g, 1e-3, MAX_DEPTH, align=align) for p, g in zip(preds, gts)]
    return {
        "tae": temporal_alignment_error(clip, poses, video.intrinsics(), gts),
        "flicker": flicker(clip, [g > 0 for g in gts]) if video.path == "static" else float("nan"),
        "abs_rel": float(np.mean([m["abs_rel"] for m in per_frame])),
        "d1": float(np.mean([m["d1"] for m in per_frame])),
        "clip_abs_rel": float(np.mean([compute_metrics(c, g, 1e-3, MAX_DEPTH)["abs_rel"] for c, g in zip(clip, gts)])),
        "fps": len(gts) / seconds,
        "spread": spread,
    }


def peak_rss_mb(model: str, frames: int, size: tuple[int, int], work: Path, threads: int) -> tuple[float, float]:
    """(peak RSS in MB of `depthsmith predict` on a `frames`-frame walk, seconds)."""
    clip = work / f"walk{frames}"
    if not (clip / "rgb.mp4").is_file():
        write_clip(SyntheticVideo(num_frames=frames, size=size, seed=0, path="walk"), clip)
    code = ("import resource, sys, time; from depthsmith.cli import main; t = time.perf_counter(); "
            f"rc = main(['predict', {str(clip / 'rgb.mp4')!r}, '--model', {model!r}, '--out', "
            f"{str(work / f'out{frames}')!r}, '--save', 'color', 'npy', '--temporal', 'filter', "
            "'--backend', 'torch-fp32']); "
            "print('RESULT', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - t); "
            "sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "TQDM_DISABLE": "1",
                              "OMP_NUM_THREADS": str(threads)})
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"predict on {frames} frames failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    _, rss, seconds = line.split()
    return float(rss), float(seconds)


def fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if np.isfinite(value) else "-"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--relative", required=True, nargs="+",
                   help="relative or disparity model folders, each as LABEL=FOLDER or FOLDER (label: its output kind)")
    p.add_argument("--metric", help="a metric model folder")
    p.add_argument("--inverse", help="a model folder trained with output: inverse, run as a disparity model")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--size", type=int, nargs=2, default=[48, 64])
    p.add_argument("--long", type=int, default=5000, help="frames of the long video for peak RSS (0: skip)")
    p.add_argument("--windows", type=int, nargs="+", default=[4], help="aligner windows to compare")
    p.add_argument("--lstsq", type=int, nargs="*", default=[], help="windows of rows with the least-squares slope")
    p.add_argument("--noise", type=float, default=0.02, help="capture: per-pixel noise std (RGB in [0, 1])")
    p.add_argument("--exposure", type=float, default=0.03, help="capture: per-frame gain std")
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: on a shared 2-core machine two OpenMP threads wait on each other)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    size = (a.size[0], a.size[1])
    print(f"CPU: {cpu_model()}, {usable_cores()} usable cores, flags {' '.join(relevant_flags()) or '-'}")
    print(f"{a.frames} frames per path at {size[1]} x {size[0]}, capture noise {a.noise:g} and exposure jitter "
          f"{a.exposure:g}; backend torch-fp32, {a.threads} thread(s)\n")
    header = "| model | path | temporal | TAE % | flicker % | AbsRel | delta1 | clip AbsRel | spread | fps |"
    print(header + "\n|" + "---|" * 10)
    predictors = {}
    for entry in a.relative:
        label, _, folder = entry.rpartition("=")
        predictor = Predictor(folder, device="cpu", backend="torch-fp32")
        predictors[label or predictor.output] = predictor
    if a.inverse:
        from depthsmith.models import load_model

        predictors["disparity"] = Predictor(AsDisparity(load_model(a.inverse).eval()), device="cpu",
                                            backend="torch-fp32")
    if a.metric:
        predictors["metric"] = Predictor(a.metric, device="cpu", backend="torch-fp32")
    for path in a.paths:
        video, rgbs, gts = clip_data(path, a.frames, size, a.noise, a.exposure)
        for kind, predictor in predictors.items():
            raw, model_seconds = predict(predictor, rgbs)
            modes = [("none", 1)] + ([("align", w) for w in a.windows] + [("lstsq", w) for w in a.lstsq]
                                     + [("filter", 4), ("oracle", 1), ("floor", 4)] if kind != "metric"
                                     else [("align", 1), ("filter", 1)])
            for temporal, window in modes:
                s = score(predictor, video, rgbs, raw, model_seconds, gts, temporal, window)
                label = {"none": "none", "oracle": "oracle: each frame fitted to its ground truth",
                         "lstsq": f"align w{window}, lstsq slope",
                         "floor": f"kind floor: exact depth normalised per frame as the kind, align w{window}",
                         "filter": "filter" + (" (flow only)" if kind == "metric" else f" (align w{window} + flow)")}.get(
                    temporal, f"align w{window}" if kind != "metric" else "align (smoothing 0.5)")
                print(f"| {kind} | {path} | {label} | {fmt(s['tae'])} | {fmt(s['flicker'])} | {fmt(s['abs_rel'], 4)} "
                      f"| {fmt(s['d1'], 4)} | {fmt(s['clip_abs_rel'], 4)} | {fmt(s['spread'])} | {fmt(s['fps'], 0)} |",
                      flush=True)
    if a.long:
        print("\n| frames | peak RSS (MB) | seconds |\n|---|---|---|")
        with tempfile.TemporaryDirectory() as tmp:
            for n in (a.frames, a.long):
                rss, seconds = peak_rss_mb(a.relative[0].rpartition("=")[2], n, size, Path(tmp), a.threads)
                print(f"| {n} | {rss:.0f} | {seconds:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
