"""Decoder registry: our own code, sized from the encoder's pyramid.

Every decoder takes the encoder's ``channels`` and ``reductions`` (shallow to deep)
and maps the feature list to one-channel logits; the model head resizes them to the
input size and applies the output activation.
"""

from __future__ import annotations

from .registry import build_decoder, list_decoders, register_decoder

__all__ = ["register_decoder", "build_decoder", "list_decoders"]

# Each decoder module registers itself on import; a new decoder is one module and one name here.
from . import densedepth, depth_pro, dpt, dpt_sky, dual_dpt, residual_unet, transposed, unet, zoedepth  # noqa: E402,F401,I001
