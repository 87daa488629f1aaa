"""``depthsmith models`` and ``depthsmith recipes``: what ships with the package."""

from __future__ import annotations

from ..models import list_decoders, list_models
from ..models.presets import PRESET_NOTES
from ..train import list_recipes

__all__ = ["models_cli", "recipes_cli"]


def models_cli() -> int:
    for name in list_models():
        print(f"{name:26s} {PRESET_NOTES.get(name, '')}")
    print(f"\ndecoders: {', '.join(list_decoders())}; encoders: any timm model name")
    return 0


def recipes_cli() -> int:
    for name, note in list_recipes().items():
        print(f"{name:28s} {note}")
    return 0
