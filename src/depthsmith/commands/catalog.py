"""``depthsmith models`` and ``depthsmith recipes``: what ships with the package."""

from __future__ import annotations

import json
import re

from ..models import list_decoders, list_models
from ..evaluate.multi import published
from ..models.presets import PRESETS
from ..models.zoo import DEFAULT_MODEL, ZOO, ZooEntry, converter_present, weights_cached
from ..resize import describe_working_size
from ..train import list_recipes

__all__ = ["models_cli", "recipes_cli", "zoo_cli", "zoo_table"]


def models_cli() -> int:
    for name in list_models():
        print(f"{name:26s} {PRESETS.get(name).note if name in PRESETS else ''}")
    print(f"\ndecoders: {', '.join(list_decoders())}; encoders: any timm model name")
    return 0


def _published(entry: ZooEntry, protocol: str) -> str:
    """'AbsRel / delta1 (source)' of the entry's row in results/<protocol>.csv, or '-'."""
    if protocol not in entry.published:
        return "-"
    method, backbone = entry.published[protocol]
    row = next(r for r in published(protocol) if (r["method"], r["backbone"]) == (method, backbone))
    source = re.split(r"[:,]", row["source"], maxsplit=1)[0].strip()
    return f"{row['abs_rel']:.3f} / {row['d1']:.3f} ({source})"


def zoo_table(cached: bool = False) -> str:
    """The zoo as a Markdown table (README's is this, between its ``zoo-table`` markers). ``cached``
    adds whether the weights are in the local Hugging Face cache (machine-specific: not in README)."""
    head = ["id", "family", "output", "params (M)", "licence", "working size", "NYU AbsRel / δ1 (nyu-eigen)",
            "KITTI AbsRel / δ1 (kitti-garg)", "loads here"] + (["weights"] if cached else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in ZOO.values():
        if entry.unsupported:
            status = f"not supported: {entry.unsupported}"
        else:
            status = "yes (converter present)" if converter_present(entry) else "no (converter not written yet)"
        cells = [f"`{entry.id}`" if not entry.unsupported else entry.id, entry.family, entry.output,
                 f"{entry.params:g}" if entry.params else "-", entry.licence or "-",
                 describe_working_size(entry.working_size) if not entry.unsupported else "-",
                 _published(entry, "nyu-eigen"), _published(entry, "kitti-garg"), status]
        if cached:
            cells.append("-" if entry.unsupported else "cached" if weights_cached(entry) else
                         f"download ({entry.download or entry.id})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def zoo_cli() -> int:
    """``depthsmith models --pretrained``: the zoo table, with the local cache's state."""
    print(zoo_table(cached=True))
    print(f"\nload any with depthsmith.load_model(<id>) or --model <id>; `depthsmith predict` without --model uses "
          f"{DEFAULT_MODEL}. Hub ids download on first use; a .pth file is read from the path you give.")
    return 0


def recipes_cli(keys: bool = False) -> int:
    """The shipped recipes; with ``keys``, every checked config key (for ``--set``), its default
    and what it accepts, from the typed schema (``train.schema``)."""
    if not keys:
        for name, note in list_recipes().items():
            print(f"{name:28s} {note}")
        return 0
    from ..train.config import DEFAULTS, config_value
    from ..train.schema import field_rules

    for key, rule in field_rules().items():
        default = config_value(DEFAULTS, key)
        print(f"{key:36s} default {json.dumps(default):14s} {rule}")  # YAML spelling: null, true, "scene"
    return 0
