"""The decoder registry: ``@register_decoder("name")`` on a class makes it buildable by name."""

from __future__ import annotations

from typing import Callable

from torch import nn

from ...registry import Registry

__all__ = ["DECODERS", "register_decoder", "build_decoder", "list_decoders"]

DECODERS: Registry[type[nn.Module]] = Registry("decoder")


def register_decoder(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: the decoder is built by ``name`` (a second class under a name is refused)."""
    return DECODERS.register(name)


def list_decoders() -> list[str]:
    return sorted(DECODERS.names())


def build_decoder(name: str, channels: list[int], reductions: list[int], **kwargs) -> nn.Module:
    return DECODERS.get(name)(channels, reductions, **kwargs)
