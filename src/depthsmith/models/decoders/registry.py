"""The decoder registry: ``@register_decoder("name")`` on a class makes it buildable by name."""

from __future__ import annotations

from typing import Callable

from torch import nn

__all__ = ["register_decoder", "build_decoder", "list_decoders"]

_DECODERS: dict[str, type[nn.Module]] = {}


def register_decoder(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    def wrap(cls: type[nn.Module]) -> type[nn.Module]:
        _DECODERS[name] = cls
        return cls

    return wrap


def list_decoders() -> list[str]:
    return sorted(_DECODERS)


def build_decoder(name: str, channels: list[int], reductions: list[int], **kwargs) -> nn.Module:
    if name not in _DECODERS:
        raise ValueError(f"Unknown decoder {name!r}. Valid decoders: {', '.join(list_decoders())}.")
    return _DECODERS[name](channels, reductions, **kwargs)
