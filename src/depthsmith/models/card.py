"""Model cards (README.md) written by ``save_pretrained`` / ``push_to_hub``.

The card is built from what the model knows about itself: its architecture and output kind,
plus ``model.card`` (a dict kept in config.json, so it survives save/load): ``license``,
``base_model``, ``converted_from``, ``training`` (recipe, data) and ``evaluation`` (protocol,
dataset, metrics). A field nobody filled is left out rather than written as "More Information
Needed"; an unknown licence says so and points at the base model's card.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from ..metrics import metrics_in

__all__ = ["build_model_card", "run_card", "write_run_card"]


def _hub_id(value: Any) -> str | None:
    # base_model in the card metadata must be a Hub id (owner/name), not a local path.
    text = str(value or "")
    return text if text.count("/") == 1 and not text.startswith((".", "/", "~")) else None


def _metrics_table(metrics: Mapping[str, Any]) -> list[str]:
    keys = [m.key for m in metrics_in("card") if isinstance(metrics.get(m.key), (int, float))]
    if not keys:
        return []
    return ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys),
            "| " + " | ".join(f"{float(metrics[k]):.4f}" for k in keys) + " |"]


def build_model_card(model: Any) -> ModelCard:
    info: Mapping[str, Any] = getattr(model, "card", None) or {}
    licence = info.get("license")
    base = _hub_id(info.get("base_model"))
    training = info.get("training") or {}
    evaluation = info.get("evaluation") or {}
    data = ModelCardData(
        license=licence or None, library_name="depthsmith", pipeline_tag="depth-estimation",
        tags=["depth-estimation", "monocular-depth", model.encoder.name, type(model.decoder).__name__],
        base_model=base, datasets=list(training.get("datasets") or []) or None,
    )
    lines = [f"# {model.name}", "",
             f"Monocular depth model built with depthsmith: timm encoder `{model.encoder.name}` + "
             f"`{type(model.decoder).__name__}`, {model.num_parameters() / 1e6:.1f}M parameters.", "",
             "Input: RGB in [0, 1], B x 3 x H x W at any size (normalisation is inside the model). "
             "Output: B x 1 x H x W, " + model.output_kind.describe(model.max_depth) + ".", ""]
    if info.get("converted_from") or info.get("base_model"):
        lines += ["## Origin", "",
                  f"Weights from `{info.get('base_model')}`"
                  + (f" ({info['converted_from']})" if info.get("converted_from") else "") + ".", ""]
    if training:
        lines += ["## Training data", ""]
        if training.get("recipe"):
            lines.append(f"Recipe: `{training['recipe']}`.")
        for split in ("train", "val"):
            if training.get(split):
                lines.append(f"- {split}: `{training[split]}`")
        if training.get("init_from"):
            lines.append(f"- initialised from `{training['init_from']}` ({', '.join(training.get('init_parts', []))})")
        lines.append("")
    if evaluation:
        lines += ["## Evaluation", "",
                  f"Held-out set: `{evaluation.get('dataset')}`, {evaluation.get('n_images', '?')} images; "
                  f"protocol: {evaluation.get('protocol', 'depthsmith held-out evaluation')}.", ""]
        lines += _metrics_table(evaluation.get("metrics") or {}) + [""]
    lines += ["## Licence", ""]
    if licence:
        lines.append(f"`{licence}`" + (f", from the card of `{info.get('base_model')}`." if info.get("base_model")
                                        else "."))
    else:
        lines.append("Not recorded. Check the licences of the encoder weights and of any base model before use.")
    lines += ["", "## Use", "", "```python", "import depthsmith",
              f"model = depthsmith.load_model({(base or '<this folder>')!r})", "```", ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))


def run_card(config: Mapping[str, Any], holdout: Mapping[str, Any] | None, base_license: str | None) -> dict[str, Any]:
    """``model.card`` of a training run: recipe, data, init source, held-out metrics, licence."""
    model_cfg = config.get("model") or {}
    data = config.get("data") or {}
    card: dict[str, Any] = {"training": {
        "recipe": config.get("name"), "train": data.get("train"), "val": data.get("val"),
        "init_from": model_cfg.get("init_from"), "init_parts": model_cfg.get("init_parts", ["encoder"]),
    }}
    if model_cfg.get("init_from"):
        card["base_model"] = model_cfg["init_from"]
    if base_license:
        card["license"] = base_license
    if holdout:
        card["evaluation"] = {"dataset": config.get("final_eval"), "n_images": holdout.get("n_images"),
                              "protocol": f"depthsmith held-out evaluation, valid depth in "
                                          f"({holdout.get('min_depth')}, {holdout.get('max_depth')}) m",
                              "metrics": dict(holdout.get("model") or {})}
    return card


def write_run_card(model: Any, model_dir: Any, config: Mapping[str, Any], holdout: Mapping[str, Any] | None) -> None:
    """Record the run in ``model.card`` and rewrite model_dir's config.json and README.md with it."""
    from pathlib import Path

    from .hub import source_license

    model_dir = Path(model_dir)
    model.card.update(run_card(config, holdout, source_license((config.get("model") or {}).get("init_from"))))
    # config.json is written from the init arguments the mixin captured at construction (a private
    # dict of huggingface_hub); the card is one of them, so update it there too. A test checks it.
    captured = getattr(model, "_hub_mixin_config", None)
    if isinstance(captured, dict):
        captured["card"] = dict(model.card)
    (model_dir / "README.md").unlink(missing_ok=True)  # the mixin never overwrites a card
    model.save_pretrained(model_dir)
