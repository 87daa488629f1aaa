"""The PyTorch inference fast path: an eval copy with BatchNorm folded, channels-last memory,
bf16 encoder/decoder where asked, and oneDNN pre-packed convolution weights on the CPU.

The ``torch-fp32`` / ``torch-bf16`` backends (``runtime.torch_backends``) run this model.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..packing import pack_convolutions

__all__ = ["fast_model", "fold_batchnorm"]


def fold_batchnorm(module: nn.Module) -> int:
    """Fold eval-mode BatchNorm into the convolution right before it, in an fx GraphModule
    (the paper's tapped Inception-ResNet-v2 encoder is one). Returns how many were folded.

    One fewer pass over every activation map. timm's ``BatchNormAct2d`` keeps its activation.
    """
    if not isinstance(module, torch.fx.GraphModule):
        return 0
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    modules = dict(module.named_modules())
    folded = 0
    for node in module.graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, nn.BatchNorm2d) or bn.training or not bn.track_running_stats:
            continue
        prev = node.args[0]
        conv = modules.get(prev.target) if isinstance(prev, torch.fx.Node) and prev.op == "call_module" else None
        if not isinstance(conv, nn.Conv2d) or len(prev.users) != 1:
            continue
        if type(bn) is nn.BatchNorm2d:
            rest: nn.Module = nn.Identity()
        elif type(bn).__name__ == "BatchNormAct2d" and hasattr(bn, "act") and hasattr(bn, "drop"):
            rest = nn.Sequential(bn.drop, bn.act)  # timm: batchnorm -> drop -> act
        else:
            continue
        module.set_submodule(prev.target, fuse_conv_bn_eval(conv, bn))
        module.set_submodule(node.target, rest)
        folded += 1
    return folded


def fast_model(model: nn.Module, device: torch.device, precision: str, prepack: bool = True) -> nn.Module:
    """An inference copy of a DepthModel: BatchNorm folded, channels-last, encoder and decoder in
    bf16 when ``precision == 'bf16'`` (the input normalisation, the sigmoid and the scaling to
    metres stay fp32). Other modules are cast whole, with fp32 in and out. On the CPU, with
    ``prepack``, convolution weights are kept pre-packed for oneDNN (see ``depthsmith.packing``)."""
    # A copy in eval mode whatever the caller's model is in (Encoder.__deepcopy__ keeps modes).
    m = copy.deepcopy(model).eval().to(device)
    for p in m.parameters():
        p.requires_grad_(False)
    encoder_net = getattr(getattr(m, "encoder", None), "net", None)
    if encoder_net is not None:
        fold_batchnorm(encoder_net)
    m = m.to(memory_format=torch.channels_last)
    if precision == "bf16":
        dtype = torch.bfloat16
        parts = [m.encoder, m.decoder] if hasattr(m, "encoder") and hasattr(m, "decoder") else [m]
        for part in parts:
            part.to(dtype)
        # Casting at the two boundaries (instead of autocast) avoids re-casting every weight
        # on every call and keeps the sigmoid and the scaling to metres in fp32.
        parts[0].register_forward_pre_hook(lambda mod, args: tuple(a.to(dtype) for a in args))
        parts[-1].register_forward_hook(lambda mod, args, out: out.float())
    if prepack and device.type == "cpu":
        pack_convolutions(m)
    return m
