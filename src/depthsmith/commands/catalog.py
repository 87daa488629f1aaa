"""``depthsmith models`` and ``depthsmith recipes``: what ships with the package."""

from __future__ import annotations

import json

from ..models import list_decoders, list_models
from ..models.presets import PRESETS
from ..train import list_recipes

__all__ = ["models_cli", "recipes_cli"]


def models_cli() -> int:
    for name in list_models():
        print(f"{name:26s} {PRESETS.get(name).note if name in PRESETS else ''}")
    print(f"\ndecoders: {', '.join(list_decoders())}; encoders: any timm model name")
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
