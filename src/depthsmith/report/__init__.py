"""Reports: a Markdown + HTML page with the table and figures a depth paper needs.

`make_report` evaluates models on a dataset and draws training curves from run folders;
`write_report` does the writing for results already computed (`depthsmith eval --report`).
"""

from __future__ import annotations

import datetime
import html
from pathlib import Path
from typing import Any

import torch

from depthsmith.evaluate import EvalResult, evaluate, write_result
from ..device import resolve_device
from ..paths import atomic_write_text, unique_names

from .figures import curves_figure, qualitative_figure, r2_figure, read_curves
from .table import ModelCost, measure_cost, metrics_table
from ..errors import InputError

__all__ = ["make_report", "write_report", "model_label", "read_curves", "measure_cost", "metrics_table"]


def model_label(model: Any) -> str:
    """A short name for a model folder or Hub id: `runs/a/model` -> `a`, `user/repo` -> `user/repo`."""
    if isinstance(model, torch.nn.Module):
        return str(getattr(model, "name", type(model).__name__))
    path = Path(str(model))
    if path.exists():
        path = path.resolve()
        return path.parent.name if path.name == "model" else path.name
    return str(model)


def make_report(
    models: list[Any],
    data: Any = None,
    runs: list[str | Path] | None = None,
    out_dir: str | Path = "report",
    protocol: str = "nyu-eigen",
    device: str = "auto",
    error_maps: bool = False,
    batch_size: int = 8,
    max_images: int | None = None,
    examples: int = 4,
    progress: bool = True,
) -> Path:
    """Evaluate `models` (folders, Hub ids or DepthModel objects) on `data` (a dataset config or
    object) under `protocol`, draw the curves of `runs`, write report.md + report.html + PNGs.

    Returns the path of report.md.
    """
    models, runs = list(models or []), list(runs or [])
    if models and data is None:
        raise InputError("evaluating models for the report needs a dataset (--data)")
    if not models and not runs:
        raise InputError("nothing to report: give at least one model (with --data) or one training run (--run)")
    from depthsmith.evaluate.multi import dataset_entries

    # Several datasets (a list of configs): one row per (model, dataset), each with its own protocol.
    entries = dataset_entries(data) if models else []
    results: dict[str, tuple[Any, EvalResult]] = {}
    for label, model in zip(unique_names([model_label(m) for m in models]), models):
        for entry in entries:
            result = evaluate(model, entry.config, protocol=entry.protocol or protocol, batch_size=batch_size,
                              device=device, keep_examples=examples, max_images=max_images, progress=progress,
                              crop_mode=entry.crop_mode or "exact")
            results[label if len(entries) == 1 else f"{label} on {entry.label}"] = (model, result)
    return write_report(results, runs=runs, out_dir=out_dir, device=device, error_maps=error_maps)


def write_report(
    results: dict[str, tuple[Any, EvalResult]],
    runs: list[str | Path] | None = None,
    out_dir: str | Path = "report",
    device: str = "auto",
    error_maps: bool = False,
) -> Path:
    """Write the report for computed results ({label: (model or path, EvalResult)}) and runs."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = resolve_device(device)
    page = _Page()
    page.heading(1, "depthsmith report")
    page.text(f"Generated {datetime.datetime.now():%Y-%m-%d %H:%M} on device `{dev}`"
              f"{' (' + torch.cuda.get_device_name(dev) + ')' if dev.type == 'cuda' else ''}.")
    evals = {label: result for label, (_, result) in results.items()}
    if evals:
        _evaluation_section(page, results, out, dev, error_maps)
    if runs:
        path = curves_figure(list(runs), out / "curves.png")
        page.heading(2, "Training curves")
        page.figure(path.name, "Loss, RMSE and SSIM per epoch for each training run: solid lines are the training "
                               "split, dashed lines the validation split (values logged by Lightning's CSVLogger "
                               "in each run's metrics.csv).")
    md_path = out / "report.md"
    atomic_write_text(md_path, page.markdown())
    atomic_write_text(out / "report.html", page.html())
    return md_path


def _evaluation_section(page: "_Page", results: dict[str, tuple[Any, EvalResult]], out: Path,
                        dev: torch.device, error_maps: bool) -> None:
    from depthsmith.models import load_model

    all_evals = {label: result for label, (_, result) in results.items()}
    costs: dict[str, ModelCost] = {}
    for label, (model, result) in results.items():
        write_result(result, out / "eval" / label)  # metrics.json + per_image.csv per model
        net = load_model(model) if isinstance(model, (str, Path)) else model
        size = tuple(result.settings.get("eval_size") or (240, 320))
        costs[label] = measure_cost(net, size, dev)
    # One section per protocol (several datasets bring several); the figures show the first one.
    groups: dict[str, dict[str, EvalResult]] = {}
    for label, result in all_evals.items():
        groups.setdefault(result.protocol, {})[label] = result
    for protocol, group in groups.items():
        first = next(iter(group.values()))
        page.heading(2, "Evaluation protocol" + (f" '{protocol}'" if len(groups) > 1 else ""))
        if not first.standard:
            page.text("**NON-STANDARD PROTOCOL: the numbers below reproduce the seed paper's evaluation and are not "
                      "comparable with published NYU Depth V2 results.**")
        page.text(first.description)
        sizes = {costs[label].size for label in group}
        size_text = ", ".join(f"{h}x{w}" for h, w in sorted(sizes))
        status = "standard" if first.standard else "NON-STANDARD"
        page.heading(2, f"Results ({status} protocol '{first.protocol}')")
        page.table(metrics_table(group, {label: costs[label] for label in group}))
        page.text(f"{int(first.metrics['n_images'])} images. Params counted from the weights; GFLOPs of one forward "
                  f"pass at the evaluation size {size_text} (a multiply-add counts as 2 FLOPs); latency: median of 10 "
                  f"batch-1 forward passes on `{dev}` after 2 warm-up passes, ms per image. Rows marked "
                  "'from the paper' are published numbers (depthsmith/results/), not measured here. Per-image "
                  "values: `eval/<model>/per_image.csv`.")
    evals = next(iter(groups.values()))
    first = next(iter(evals.values()))

    path = r2_figure(evals, out / "r2.png")
    page.heading(2, "Per-image R²")
    page.figure(path.name, f"Left: histogram of the per-image R² of each model (dashed: mean). Right: R² of each "
                           f"test image against its index. R² here: {_r2_definition(first)}.")
    if all(r.examples for r in evals.values()):
        path = qualitative_figure(evals, out / "qualitative.png", error_maps=error_maps)
        page.heading(2, "Qualitative results")
        page.figure(path.name, "RGB | ground truth | each model" + (" | absolute error of each model" if error_maps
                                                                      else "") +
                    ". Depth in inferno_r (near = yellow, far = purple) on one shared scale (colour bar in metres); "
                    "invalid ground truth in grey. Predictions are shown as evaluated (after the protocol's "
                    "scaling, alignment and clamp).")


def _r2_definition(result: EvalResult) -> str:
    for sentence in result.description.split(". "):
        if sentence.startswith("R^2:"):
            return sentence.removeprefix("R^2: ").rstrip(".")
    return "1 - SS_res / SS_tot per image"


class _Page:
    """Blocks rendered twice: Markdown (report.md) and a self-contained HTML page (report.html)."""

    def __init__(self) -> None:
        self.blocks: list[tuple[str, Any]] = []

    def heading(self, level: int, text: str) -> None:
        self.blocks.append(("heading", (level, text)))

    def text(self, text: str) -> None:
        self.blocks.append(("text", text))

    def table(self, markdown: str) -> None:
        self.blocks.append(("table", markdown))

    def figure(self, file: str, caption: str) -> None:
        self.blocks.append(("figure", (file, caption)))

    def markdown(self) -> str:
        parts = []
        for kind, value in self.blocks:
            if kind == "heading":
                parts.append("#" * value[0] + " " + value[1])
            elif kind == "figure":
                parts.append(f"![{value[0]}]({value[0]})\n\n*{value[1]}*")
            else:
                parts.append(value)
        return "\n\n".join(parts) + "\n"

    def html(self) -> str:
        body = []
        for kind, value in self.blocks:
            if kind == "heading":
                body.append(f"<h{value[0]}>{html.escape(value[1])}</h{value[0]}>")
            elif kind == "text":
                text = html.escape(value)
                if text.startswith("**") and text.endswith("**"):
                    text = f"<strong style='color:#b00'>{text[2:-2]}</strong>"
                body.append(f"<p>{text.replace('`', '')}</p>")
            elif kind == "table":
                rows = [[html.escape(c.strip()) for c in line.strip("|").split("|")]
                        for line in value.splitlines() if not line.startswith("|--")]
                head = "".join(f"<th>{c}</th>" for c in rows[0])
                cells = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows[1:])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
            else:
                body.append(f"<figure><img src='{html.escape(value[0])}' alt='{html.escape(value[0])}'>"
                            f"<figcaption>{html.escape(value[1])}</figcaption></figure>")
        style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;line-height:1.45}"
                 "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
                 "td:first-child,th:first-child,td:nth-child(2){text-align:left}img{max-width:100%}"
                 "figcaption{color:#444;font-size:90%}")
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>depthsmith report</title>"
                f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")
