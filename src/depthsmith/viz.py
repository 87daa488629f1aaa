"""Depth colour maps and image grids (matplotlib, Agg canvas only: no pyplot, no display).

Convention of the field (and of the seed paper's figures): ``inferno_r``, near = bright
yellow, far = dark purple; invalid pixels in a neutral grey so holes are never mistaken
for a depth. Depth panels of one figure share one colour scale and one colour bar in metres.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from .errors import InputError

from .errors import InputError
from .paths import atomic_write

__all__ = ["colorize", "to_numpy_image", "save_grid", "check_cmap"]

INVALID_GREY = (128, 128, 128)


def check_cmap(name: str) -> str:
    """``name`` if matplotlib has that colour map, else an InputError listing the closest names
    (checked before any model runs: a typo found after the predictions costs the whole run)."""
    from matplotlib import colormaps

    if name in colormaps:
        return name
    close = difflib.get_close_matches(name, list(colormaps), n=5)
    raise InputError(f"--cmap {name!r} is not a matplotlib colour map"
                     + (f"; close names: {', '.join(close)}" if close else "")
                     + " (see matplotlib.colormaps; the default is inferno_r).")


def _as_array(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def to_numpy_image(image) -> np.ndarray:
    """RGB as H x W x 3 uint8 from a 3 x H x W / H x W x 3 tensor or array (float in [0, 1] or uint8)."""
    a = _as_array(image)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    if a.dtype != np.uint8:
        a = (np.clip(a.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return a


def _valid(depth: np.ndarray, mask) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        valid = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        valid &= _as_array(mask).reshape(depth.shape).astype(bool)
    return valid


def _depth_range(depths: Sequence[np.ndarray], masks: Sequence) -> tuple[float, float]:
    values = [d[_valid(d, m)] for d, m in zip(depths, masks)]
    values = [v for v in values if v.size]
    if not values:
        return 0.0, 1.0
    lo, hi = min(float(v.min()) for v in values), max(float(v.max()) for v in values)
    return (lo, hi) if hi > lo else (lo, lo + 1e-6)


def colorize(
    depth,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "inferno_r",
    invalid_color: tuple[int, int, int] = INVALID_GREY,
    mask=None,
) -> np.ndarray:
    """Depth (H x W or 1 x H x W, metres) -> H x W x 3 uint8; invalid (<= 0, NaN, inf, ~mask) in grey.

    ``vmin``/``vmax`` default to the valid range of this map; pass them to share a scale.
    """
    from matplotlib import colormaps

    d = _as_array(depth).astype(np.float32).squeeze()
    if d.ndim != 2:
        raise InputError(f"colorize expects an H x W depth map, got shape {d.shape}")
    valid = _valid(d, mask)
    if vmin is None or vmax is None:
        lo, hi = _depth_range([d], [valid])
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    scaled = (np.where(valid, d, vmin) - vmin) / max(vmax - vmin, 1e-12)
    lut = (colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255.0 + 0.5).astype(np.uint8)
    out = lut[np.clip(scaled * 255.0 + 0.5, 0, 255).astype(np.intp)]
    out[~valid] = invalid_color
    return out


def save_grid(
    path: str | Path,
    rows: Sequence[Sequence],
    col_titles: Sequence[str] | None = None,
    row_titles: Sequence[str] | None = None,
    masks: Sequence[Sequence] | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "inferno_r",
    colorbar_label: str = "depth (m)",
    panel_width: float = 3.0,
    dpi: int = 100,
) -> Path:
    """Save a grid figure: each cell is an RGB image (3 channels) or a depth map (one channel).

    Depth cells share one colour scale (``vmin``/``vmax``, default: the valid range over all of
    them) shown by one colour bar; ``masks[r][c]`` (optional, None allowed) marks their valid pixels.
    """
    from matplotlib.cm import ScalarMappable
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    cells = [[_as_array(c) for c in row] for row in rows]
    if not cells or not cells[0]:
        raise InputError("save_grid needs at least one row with one cell")
    masks = masks or [[None] * len(row) for row in cells]
    is_depth = [[c.squeeze().ndim == 2 for c in row] for row in cells]
    depth_cells = [(c.squeeze(), m) for row, mrow, dep in zip(cells, masks, is_depth)
                   for c, m, dd in zip(row, mrow, dep) if dd]
    if depth_cells and (vmin is None or vmax is None):
        lo, hi = _depth_range([d for d, _ in depth_cells], [m for _, m in depth_cells])
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax

    n_rows, n_cols = len(cells), max(len(r) for r in cells)
    first = cells[0][0].squeeze()
    h, w = (first.shape[-2:] if first.ndim == 3 and first.shape[0] == 3 else first.shape[:2])
    aspect = h / w
    fig = Figure(figsize=(panel_width * n_cols + (0.9 if depth_cells else 0.2),
                          panel_width * aspect * n_rows + 0.5), dpi=dpi)
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(n_rows, n_cols, wspace=0.03, hspace=0.12,
                            left=0.06 if row_titles else 0.01, right=0.88 if depth_cells else 0.99,
                            top=0.93 if col_titles else 0.99, bottom=0.01)
    for r, row in enumerate(cells):
        for c, cell in enumerate(row):
            depth_style = (vmin, vmax, cmap, masks[r][c]) if is_depth[r][c] else None
            _draw_cell(fig.add_subplot(grid[r, c]), cell, depth_style,
                       col_titles[c] if r == 0 and col_titles and c < len(col_titles) else None,
                       row_titles[r] if c == 0 and row_titles and r < len(row_titles) else None)
    if depth_cells:
        cax = fig.add_axes([0.9, 0.1, 0.02, 0.8])
        bar = fig.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), cax=cax)
        bar.set_label(colorbar_label)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        fig.savefig(handle, format=path.suffix.lstrip(".") or "png")
    return path


def _draw_cell(ax, cell: np.ndarray, depth_style: tuple | None, title: str | None, ylabel: str | None) -> None:
    """One grid panel: an RGB image, or a depth map coloured with ``depth_style`` = (vmin, vmax, cmap, mask)."""
    if depth_style is not None:
        vmin, vmax, cmap, mask = depth_style
        ax.imshow(colorize(cell, vmin, vmax, cmap, mask=mask), interpolation="nearest")
    else:
        ax.imshow(to_numpy_image(cell), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=10)
    if ylabel is not None:
        ax.set_ylabel(ylabel, fontsize=8)
