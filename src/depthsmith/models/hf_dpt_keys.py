"""transformers DPT checkpoint keys -> depthsmith ``DepthModel`` keys (used by models/hf_dpt.py).

Every tensor is renamed by one rule, or is one of the few the published models hold but never run
(``_UNUSED``); q/k/v projections are concatenated into timm's fused ``qkv`` (a BEiT has no key bias:
its q and v biases are timm's ``q_bias`` / ``v_bias``). Then each is shape-checked against the
model built from ``config.json``: the error names the checkpoint key and the file.
Names of transformers 4 (``encoder.layer``, ``attention.attention.query``) and 5 (``beit.layers``,
``q_proj``) checkpoints are both read for the BEiT backbone.
"""

from __future__ import annotations

import re

import torch

from .hf_depth import DPT_NECK_RULES
from .weights import WeightFileError, check_fit

__all__ = ["convert_state_dict"]

# HF name -> depthsmith name. q/k/v are handled apart (concatenated into qkv).
_V = "encoder.net.vit."
_RULES = [
    (r"dpt\.embeddings\.cls_token", _V + "cls_token"),
    (r"dpt\.embeddings\.position_embeddings", _V + "pos_embed"),
    (r"dpt\.embeddings\.patch_embeddings\.projection\.(weight|bias)", _V + r"patch_embed.proj.\1"),
    (r"dpt\.encoder\.layer\.(\d+)\.layernorm_before\.(weight|bias)", _V + r"blocks.\1.norm1.\2"),
    (r"dpt\.encoder\.layer\.(\d+)\.layernorm_after\.(weight|bias)", _V + r"blocks.\1.norm2.\2"),
    (r"dpt\.encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)", _V + r"blocks.\1.attn.proj.\2"),
    (r"dpt\.encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)", _V + r"blocks.\1.mlp.fc1.\2"),
    (r"dpt\.encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)", _V + r"blocks.\1.mlp.fc2.\2"),
    (r"neck\.reassemble_stage\.readout_projects\.(\d)\.0\.(weight|bias)", r"encoder.net.readout.\1.0.\2"),
    *DPT_NECK_RULES,
    (r"neck\.fusion_stage\.layers\.(\d)\.residual_layer([12])\.batch_norm([12])\."
     r"(weight|bias|running_mean|running_var|num_batches_tracked)", r"decoder.fusion.\1.res\2.bn\3.\4"),
    (r"head\.projection\.(weight|bias)", r"decoder.head.projection.\1"),
    (r"head\.head\.0\.(weight|bias)", r"decoder.head.conv1.\1"),
    (r"head\.head\.2\.(weight|bias)", r"decoder.head.conv2.\1"),
    (r"head\.head\.4\.(weight|bias)", r"decoder.head.conv3.\1"),
]
_B = _V + "patch_embed.backbone."
_RULES += [  # DPT-Hybrid: transformers BitBackbone -> timm ResNetV2, and the 1 x 1 projection to tokens
    (r"dpt\.embeddings\.backbone\.bit\.embedder\.convolution\.weight", _B + "stem.conv.weight"),
    (r"dpt\.embeddings\.backbone\.bit\.embedder\.norm\.(weight|bias)", _B + r"stem.norm.\1"),
    (r"dpt\.embeddings\.backbone\.bit\.encoder\.stages\.(\d)\.layers\.(\d+)\.(conv[123]|norm[123]|downsample\.conv"
     r"|downsample\.norm)\.(weight|bias)", _B + r"stages.\1.blocks.\2.\3.\4"),
    (r"dpt\.embeddings\.projection\.(weight|bias)", _V + r"patch_embed.proj.\1"),
]
_BE = r"backbone\.(?:beit\.)?(?:encoder\.layer|layers)\.(\d+)\."  # DPT-BEiT: transformers BeitBackbone
_RULES += [
    (r"backbone\.(?:beit\.)?embeddings\.cls_token", _V + "cls_token"),
    (r"backbone\.(?:beit\.)?embeddings\.patch_embeddings\.projection\.(weight|bias)", _V + r"patch_embed.proj.\1"),
    (_BE + r"lambda_([12])", _V + r"blocks.\1.gamma_\2"),
    (_BE + r"layernorm_before\.(weight|bias)", _V + r"blocks.\1.norm1.\2"),
    (_BE + r"layernorm_after\.(weight|bias)", _V + r"blocks.\1.norm2.\2"),
    (_BE + r"attention\.(?:output\.dense|o_proj)\.(weight|bias)", _V + r"blocks.\1.attn.proj.\2"),
    (_BE + r"(?:intermediate\.dense|mlp\.fc1)\.(weight|bias)", _V + r"blocks.\1.mlp.fc1.\2"),
    (_BE + r"(?:output\.dense|mlp\.fc2)\.(weight|bias)", _V + r"blocks.\1.mlp.fc2.\2"),
    (_BE + r"(?:attention\.attention\.)?relative_position_bias\.relative_position_bias_table",
     _V + r"blocks.\1.attn.relative_position_bias_table"),
]
_QKV = re.compile(r"(?:dpt\.encoder\.layer\.|backbone\.(?:beit\.)?(?:encoder\.layer|layers)\.)(\d+)\.attention\."
                  r"(?:attention\.)?(query|key|value|q_proj|k_proj|v_proj)\.(weight|bias)")
_LAYER = re.compile(r"(?:dpt\.encoder\.layer\.|backbone\.(?:beit\.)?(?:encoder\.layer|layers)\.)(\d+)\.")
_UNUSED = (re.compile(r"dpt\.layernorm\."), re.compile(r"neck\.fusion_stage\.layers\.0\.residual_layer1\."),
           re.compile(r"backbone\.(?:beit\.)?(?:layernorm\.|embeddings\.mask_token)"),
           re.compile(_BE + r".*relative_position_index"))


def convert_state_dict(hf: dict[str, torch.Tensor], target: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Rename and shape-check every tensor; the message names the first key that does not fit."""
    depth = 1 + max((int(k.split(".")[4]) for k in target if k.startswith(_V + "blocks.")), default=-1)
    out: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in hf.items():
        layer = _LAYER.match(key)
        if any(p.match(key) for p in _UNUSED) or (layer and int(layer.group(1)) >= depth):
            continue
        match = _QKV.fullmatch(key)
        if match:
            qkv.setdefault((match.group(1), match.group(3)), {})[match.group(2)[0]] = value
            continue
        for pattern, repl in _RULES:
            if re.fullmatch(pattern, key):
                name = re.sub(pattern, repl, key)
                out[name], origin[name] = value, key
                break
        else:
            raise WeightFileError(f"{source}: checkpoint key {key!r} has no place in the depthsmith model.")
    for (layer, kind), parts in qkv.items():
        where = f"layer {layer} attention query/key/value {kind}"
        if kind == "bias" and set(parts) == {"q", "v"}:  # BEiT: no key bias
            for part in "qv":
                out[f"{_V}blocks.{layer}.attn.{part}_bias"], origin[f"{_V}blocks.{layer}.attn.{part}_bias"] = parts[part], where
            continue
        if set(parts) != {"q", "k", "v"}:
            raise WeightFileError(f"{source}: layer {layer} has {sorted(parts)} of the q/k/v {kind}s, needs all three.")
        name = f"{_V}blocks.{layer}.attn.qkv.{kind}"
        out[name], origin[name] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0), where
    check_fit(out, target, lambda name: source, origin)
    return out
