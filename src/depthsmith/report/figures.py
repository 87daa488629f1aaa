"""The figures a depth paper needs, as PNGs (matplotlib Agg canvas: no display needed).

- `r2_figure`: per-image R^2 histogram and scatter per model (seed paper Fig. 6);
- `qualitative_figure`: RGB | ground truth | each model [| |error| per model] (Fig. 4);
- `curves_figure`: loss, RMSE and SSIM per epoch, train and validation (Fig. 5).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from depthsmith.evaluate import PROTOCOLS, EvalResult
from depthsmith.paths import atomic_write, unique_names
from depthsmith.viz import INVALID_GREY, colorize, to_numpy_image
from ..errors import InputError

__all__ = ["r2_figure", "qualitative_figure", "curves_figure", "read_curves", "CURVE_PANELS"]

DEPTH_CMAP = "inferno_r"  # the field's convention: near = bright yellow, far = dark purple
ERROR_CMAP = "viridis"  # a different map, so an error panel is never read as depth
# (panel title, y label, metric name in the run's metrics.csv without the train/ or val/ prefix)
CURVE_PANELS = (("loss", "loss", "loss"), ("RMSE", "RMSE (m)", "rmse"), ("SSIM", "SSIM of depth / max depth", "ssim"))


def _new_figure(width: float, height: float, dpi: int = 110) -> Figure:
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        fig.savefig(handle, format=path.suffix.lstrip(".") or "png")
    return path


def r2_figure(results: dict[str, EvalResult], path: str | Path) -> Path:
    """Histogram of per-image R^2 per model (left) and R^2 against image index (right)."""
    fig = _new_figure(12, 4.6)
    hist, scatter = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    values = {label: r.r2_values for label, r in results.items()}
    finite = np.concatenate([v[np.isfinite(v)] for v in values.values()] or [np.zeros(0)])
    lo = min(0.0, float(finite.min())) if finite.size else 0.0
    bins = np.linspace(lo, 1.0, 26)
    colors = [f"C{i}" for i in range(len(results))]
    for (label, result), color in zip(results.items(), colors):
        v = values[label]
        v = v[np.isfinite(v)]
        mean = result.metrics.get("r2", math.nan)
        mean_text = f"{label}: mean R² = {mean:.3f}"
        if "r2_dropped" in result.metrics:  # seed: the mean leaves out R^2 outside [0, 1] (as its notebook does)
            dropped, n = result.metrics["r2_dropped"], len(result.rows)
            mean_text = (f"{label}: mean of R² in [0, 1] = {mean:.3f} ({dropped} of {n} images dropped)"
                         if dropped < n else f"{label}: no image with R² in [0, 1] (seed's mean undefined)")
        hist.hist(np.clip(v, lo, 1.0), bins=bins, color=color, alpha=0.55, edgecolor="black", linewidth=0.5,
                  label=mean_text)
        hist.axvline(mean, color=color, linestyle="--", linewidth=1.5)
        index = np.arange(len(result.rows))
        scatter.scatter(index, result.r2_values, s=18, color=color, edgecolor="black", linewidth=0.4, alpha=0.8,
                        label=label)
        scatter.axhline(mean, color=color, linestyle="--", linewidth=1.2)
    hist.set_xlabel("R² per image")
    hist.set_ylabel("number of images")
    hist.set_title("distribution of per-image R²")
    hist.yaxis.get_major_locator().set_params(integer=True)
    hist.legend(fontsize=8, loc="best")
    scatter.set_xlabel("image index")
    scatter.set_ylabel("R² per image")
    scatter.set_title("R² of each test image (dashed: mean)")
    scatter.legend(fontsize=8, loc="best")
    for ax in (hist, scatter):
        ax.grid(alpha=0.3)
    first = next(iter(results.values()))
    status = "" if first.standard else "NON-STANDARD "
    definition = PROTOCOLS[first.protocol].r2.replace("R^2", "R²")
    title = f"{status}protocol '{first.protocol}': {definition} (R² = 1 - SS_res / SS_tot)"
    fig.suptitle("\n".join(textwrap.wrap(title, 110)), fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def _shared_depth_range(examples: list[dict], preds: list[np.ndarray]) -> tuple[float, float]:
    """One scale for GT and predictions: the 1-99 % range of the valid GT of the shown images.

    Percentiles rather than min/max so that one outlier pixel does not wash out the figure;
    predictions outside it saturate at the ends of the colour bar.
    """
    values = np.concatenate([e["gt"][e["mask"] & (e["gt"] > 0)] for e in examples])
    if values.size == 0:
        values = np.concatenate([p[np.isfinite(p)].ravel() for p in preds])
    lo, hi = np.percentile(values, [1, 99])
    return float(lo), float(max(hi, lo + 1e-3))


def qualitative_figure(results: dict[str, EvalResult], path: str | Path, error_maps: bool = False,
                       max_rows: int = 4) -> Path:
    """Rows = images; columns RGB | ground truth | each model (| |error| per model).

    Depth panels share one inferno_r scale with one colour bar in metres; invalid GT in grey.
    Error panels share their own scale (|pred - gt| on valid GT pixels) and colour bar.
    """
    labels = list(results)
    examples = [results[label].examples for label in labels]
    n_rows = min([max_rows, *(len(e) for e in examples)])
    if n_rows == 0:
        raise InputError("no example predictions to show: evaluate with keep_examples > 0")
    base = examples[0][:n_rows]
    preds = [[ex[r]["pred"] for ex in examples] for r in range(n_rows)]
    vmin, vmax = _shared_depth_range(base, [p for row in preds for p in row])
    errors = [[np.where(base[r]["mask"], np.abs(p - base[r]["gt"]), np.nan) for p in preds[r]] for r in range(n_rows)]
    err_max = float(np.nanpercentile(np.concatenate([e.ravel() for row in errors for e in row]), 99)) if error_maps else 1.0
    err_max = err_max if math.isfinite(err_max) and err_max > 0 else 1.0

    titles = ["RGB", "ground truth", *labels, *([f"|error| {label}" for label in labels] if error_maps else [])]
    h, w = base[0]["gt"].shape
    n_cols = len(titles)
    # Layout in inches, so colour bars and their labels always fit whatever the column count.
    panel, left, top_in, bar_zone = 2.6, 0.35, 0.45, 1.0
    n_bars = 2 if error_maps else 1
    fig_w = left + panel * n_cols + bar_zone * n_bars
    fig_h = panel * h / w * n_rows + top_in + 0.15
    fig = _new_figure(fig_w, fig_h)
    right = (left + panel * n_cols) / fig_w
    grid = fig.add_gridspec(n_rows, n_cols, left=left / fig_w, right=right, top=1 - top_in / fig_h,
                            bottom=0.15 / fig_h, wspace=0.03, hspace=0.05)
    for r in range(n_rows):
        ex = base[r]
        cells = [to_numpy_image(ex["image"]) if ex.get("image") is not None else np.full((h, w, 3), INVALID_GREY, np.uint8),
                 colorize(ex["gt"], vmin, vmax, DEPTH_CMAP, mask=ex["mask"])]
        cells += [colorize(np.clip(p, vmin, vmax), vmin, vmax, DEPTH_CMAP) for p in preds[r]]
        if error_maps:
            cells += [_colorize_error(e, err_max) for e in errors[r]]
        for c, cell in enumerate(cells):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(cell, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=10)
            if c == 0:
                ax.set_ylabel(Path(str(ex["name"])).name[:24], fontsize=8)
    bottom, height = 0.15 / fig_h + 0.05, 1 - (top_in + 0.15) / fig_h - 0.1
    bar_w = 0.15 / fig_w
    x0 = right + 0.15 / fig_w
    bar = fig.colorbar(ScalarMappable(Normalize(vmin, vmax), DEPTH_CMAP), cax=fig.add_axes([x0, bottom, bar_w, height]))
    bar.set_label("depth (m)")
    if error_maps:
        x1 = x0 + bar_zone / fig_w
        ebar = fig.colorbar(ScalarMappable(Normalize(0, err_max), ERROR_CMAP),
                            cax=fig.add_axes([x1, bottom, bar_w, height]))
        ebar.set_label("|error| (m)")
    return _save(fig, path)


def _colorize_error(err: np.ndarray, vmax: float) -> np.ndarray:
    from matplotlib import colormaps

    rgb = (colormaps[ERROR_CMAP](np.clip(np.nan_to_num(err) / vmax, 0, 1))[..., :3] * 255 + 0.5).astype(np.uint8)
    rgb[~np.isfinite(err)] = INVALID_GREY
    return rgb


def read_curves(run_dir: str | Path) -> dict[str, dict[int, float]]:
    """Per-epoch values from a run's Lightning CSVLogger metrics.csv: {column: {epoch: value}}.

    The last non-empty value of each column within an epoch is that epoch's value; a column
    logged both per step and per epoch appears as `name_epoch`, which is preferred (see
    ``depthsmith.train.metrics_file``, the one reader of that file).
    """
    # Imported here: depthsmith.train pulls in Lightning, which the other figures do not need.
    from depthsmith.train.metrics_file import epoch_curves, read_metrics

    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: a training run folder holds metrics.csv (Lightning CSVLogger)")
    return epoch_curves(read_metrics(path))


def curves_figure(runs: list[str | Path], path: str | Path) -> Path:
    """Loss, RMSE and SSIM per epoch: one panel each, train solid and validation dashed, one colour per run."""
    fig = _new_figure(5.2 * len(CURVE_PANELS), 4.2)
    axes = fig.subplots(1, len(CURVE_PANELS))
    labels = unique_names([Path(r).name for r in runs])
    for i, (run, label) in enumerate(zip(runs, labels)):
        curves = read_curves(run)
        for ax, (_, _, key) in zip(axes, CURVE_PANELS):
            for split, style, marker in (("train", "-", "o"), ("val", "--", "s")):
                points = curves.get(f"{split}/{key}")
                if not points:
                    continue
                epochs = sorted(points)  # Lightning counts from 0; papers from 1
                ax.plot([e + 1 for e in epochs], [points[e] for e in epochs], linestyle=style, marker=marker,
                        markersize=4, color=f"C{i}", label=f"{label} {split}")
    for ax, (title, ylabel, _) in zip(axes, CURVE_PANELS):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes, color="grey")
    fig.suptitle("training curves (solid: train, dashed: validation)", fontsize=11)
    fig.tight_layout()
    return _save(fig, path)
