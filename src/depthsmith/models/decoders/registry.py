"""The decoder registry: ``@register_decoder("name")`` on a class makes it buildable by name."""

from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from ...errors import InputError
from ...registry import Registry

__all__ = ["DECODERS", "register_decoder", "build_decoder", "list_decoders", "standalone_decoders"]

DECODERS: Registry[type[nn.Module]] = Registry("decoder")


def register_decoder(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: the decoder is built by ``name`` (a second class under a name is refused)."""
    return DECODERS.register(name)


def list_decoders() -> list[str]:
    return sorted(DECODERS.names())


def build_decoder(name: str, channels: list[int], reductions: list[int], **kwargs) -> nn.Module:
    cls = DECODERS.get(name)
    # Some decoders are built only from a converted checkpoint's config (depth_pro: its image and
    # field-of-view ViTs): name what is missing instead of a TypeError from __init__.
    params = list(inspect.signature(cls.__init__).parameters.values())[3:]  # after self, channels, reductions
    missing = [p.name for p in params if p.default is inspect.Parameter.empty
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in kwargs]
    if missing:
        raise InputError(f"decoder {name!r} needs decoder_kwargs {', '.join(missing)}; it is built from a converted "
                         "checkpoint's config (load_model), not on an arbitrary encoder.")
    return cls(channels, reductions, **kwargs)


def standalone_decoders() -> list[str]:
    """The decoders that build on any encoder from their defaults (every one except those that need a
    converted checkpoint's config)."""
    out = []
    for name in list_decoders():
        params = list(inspect.signature(DECODERS.get(name).__init__).parameters.values())[3:]
        if all(p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
            out.append(name)
    return out
