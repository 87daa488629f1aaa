"""``data check``: read a dataset once and report what is in it (and what is broken)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from ..paths import atomic_write_text
from .build import build_dataset, load_dataset_config

__all__ = ["check_dataset", "format_report"]

PERCENTILES = (1, 5, 50, 95, 99)
PIXELS_PER_IMAGE = 4096  # depth values kept per image for the percentiles (a strided subsample)
PREVIEW_SAMPLES = 8


def check_dataset(cfg: Mapping[str, Any] | str | Path, out_dir: str | Path,
                  max_samples: int | None = None) -> dict[str, Any]:
    """Read every sample (or ``max_samples`` spread evenly) and return statistics.

    Writes ``preview.png`` (RGB | depth in ``inferno_r``, one colour scale in metres, invalid
    pixels grey) and ``summary.json`` to ``out_dir``. Unreadable samples are listed with the
    reason, never raised, whatever the config's ``on_error``.
    """
    from ..viz import save_grid

    cfg = load_dataset_config(cfg)
    dataset = build_dataset(cfg)
    total = len(dataset)
    indices, preview_at = _pick(total, max_samples)
    seen = _scan(dataset, indices, preview_at)
    stats: dict[str, Any] = {
        "dataset": cfg.get("type"),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in cfg.items()},
        "pairs": total,
        "checked": len(indices),
        "readable": len(seen["ratios"]),
        "resolutions": dict(seen["resolutions"].most_common()),
        "depth_m": None,
        "valid_ratio": None,
        "unreadable": seen["unreadable"],
    }
    if seen["values"]:
        allv = np.concatenate(seen["values"]).astype(np.float64)
        stats["depth_m"] = {"min": float(allv.min()), "max": float(allv.max()),
                            **{f"p{q}": float(np.percentile(allv, q)) for q in PERCENTILES}}
        ratios = seen["ratios"]
        stats["valid_ratio"] = {"min": min(ratios), "mean": float(np.mean(ratios)), "max": max(ratios)}

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if seen["preview"]:
        stats["preview"] = str(_save_preview(seen["preview"], out_dir / "preview.png", stats["depth_m"], save_grid))
    atomic_write_text(out_dir / "summary.json", json.dumps(stats, indent=2, default=str))
    return stats


def _pick(total: int, max_samples: int | None) -> tuple[list[int], set[int]]:
    """The sample indices to read (all, or ``max_samples`` spread evenly) and the positions among them to preview."""
    if max_samples is not None and max_samples < total:
        indices = np.unique(np.linspace(0, total - 1, max_samples).round().astype(int)).tolist()
    else:
        indices = list(range(total))
    preview_at = set(np.unique(np.linspace(0, len(indices) - 1, min(PREVIEW_SAMPLES, len(indices))).round()
                               .astype(int)).tolist()) if indices else set()
    return indices, preview_at


def _scan(dataset: Any, indices: list[int], preview_at: set[int]) -> dict[str, Any]:
    """Read the samples: resolutions, valid ratios, subsampled valid depths, unreadable ones, preview samples."""
    from tqdm import tqdm

    resolutions: Counter[str] = Counter()
    ratios, values, unreadable, preview = [], [], [], []
    for k, i in enumerate(tqdm(indices, desc="data check", unit="sample")):
        try:
            sample = dataset.read(i)
        except DataError as err:
            unreadable.append({"name": dataset._safe_name(i), "reason": str(err)})
            continue
        depth, mask = sample["depth"][0].numpy(), sample["mask"][0].numpy()
        resolutions[f"{depth.shape[0]}x{depth.shape[1]}"] += 1
        ratios.append(float(mask.mean()))
        valid = depth[mask]
        values.append(valid[:: max(1, valid.size // PIXELS_PER_IMAGE)])
        if k in preview_at:
            preview.append(sample)
    return {"resolutions": resolutions, "ratios": ratios, "values": values, "unreadable": unreadable,
            "preview": preview}


def _save_preview(samples: list[dict], path: Path, depth_stats: dict, save_grid) -> Path:
    # Two samples per row; a robust shared scale (1st-99th percentile) so one outlier pixel
    # (Kinect's spurious 13 m) does not wash out every map.
    rows, masks, titles = [], [], []
    for j in range(0, len(samples), 2):
        pair = samples[j : j + 2]
        rows.append([x for s in pair for x in (s["image"], s["depth"])])
        masks.append([x for s in pair for x in (None, s["mask"])])
        titles.append("\n".join("/".join(Path(s["name"]).parts[-2:]) for s in pair))
    cols = ["RGB", "depth"] * min(2, len(samples))
    return save_grid(path, rows, col_titles=cols, row_titles=titles, masks=masks,
                     vmin=depth_stats["p1"], vmax=depth_stats["p99"], panel_width=2.6)


def format_report(stats: Mapping[str, Any]) -> str:
    """A plain-text table of :func:`check_dataset`'s statistics."""
    lines = [
        ("dataset", str(stats.get("dataset"))),
        ("pairs", f"{stats['pairs']} listed, {stats['checked']} checked, {stats['readable']} readable, "
                  f"{len(stats['unreadable'])} unreadable"),
        ("resolutions", ", ".join(f"{r} ({n})" for r, n in stats["resolutions"].items()) or "-"),
    ]
    d = stats.get("depth_m")
    if d:
        lines.append(("depth (m)", f"min {d['min']:.3f}  " + "  ".join(f"p{q} {d[f'p{q}']:.3f}" for q in PERCENTILES)
                      + f"  max {d['max']:.3f}"))
    v = stats.get("valid_ratio")
    if v:
        lines.append(("valid pixels", f"min {v['min']:.1%}  mean {v['mean']:.1%}  max {v['max']:.1%}"))
    for k, bad in enumerate(stats["unreadable"]):
        lines.append(("unreadable" if k == 0 else "", f"{bad['reason']}"))
    if stats.get("preview"):
        lines.append(("preview", stats["preview"]))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)
