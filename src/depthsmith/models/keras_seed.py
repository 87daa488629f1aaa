"""Import the seed paper's own Keras checkpoint (``irv2_unet_15.keras``) as an enc-dec-irv2.

A Keras 3 ``.keras`` file is a zip of ``config.json`` (the layer graph), ``metadata.json``
and ``model.weights.h5``. It is read with ``zipfile`` and ``h5py`` only: no TensorFlow or
Keras at run time, nothing unpickled.

How layers are matched (every shape is checked, and every Keras layer holding weights
must find a place):

* The decoder by the names the seed code gives it: ``up1_convA``, ``up1_convB``,
  ``up1_convC`` ... ``up4_*`` and ``conv10``; each BatchNorm is the one that follows its
  conv (through the LeakyReLU).
* Inception-ResNet-v2 by order: its conv layers carry automatic names (``conv2d_17``) that
  depend on Keras' global counters, so they are taken in the graph's depth-first post-order
  from the output (inputs in argument order, so branch 0 before branch 1), which is the
  order timm's forward runs its convs in. Each conv's BatchNorm is the layer it feeds.
* ``model.weights.h5`` keys layers by class, not by name: the n-th Conv2D of
  ``config.json``'s layer list is ``layers/conv2d_<n>`` (``keras.saving.saving_lib``).

The result is the ``enc-dec-irv2`` preset with the seed's input handling (BGR, per-image
min-max, eq. 1) and output (the sigmoid of per-image min-max depth: relative, not metres).
"""

from __future__ import annotations

import copy
import io
import json
import math
import re
import zipfile
from pathlib import Path
from typing import Any, NoReturn

import h5py
import numpy as np
import torch
from torch import nn

from .decoders.common import size_at, split_padding
from .model import DepthModel
from .presets import PRESETS
from .weights import WeightFileError

__all__ = ["load_keras_seed", "convert_keras", "SEED_KERAS_CONFIG"]

# What the seed notebook does around the network: cv2.imread (BGR), normalize_img (eq. 1),
# targets min-max normalised per image with a sigmoid head.
SEED_KERAS_CONFIG = dict(input_norm="minmax", channel_order="bgr", output="relative")
_PRESET = "enc-dec-irv2"
_HEAD = "conv10"
_ACTIVATIONS = ("Activation", "LeakyReLU", "ReLU")


def load_keras_seed(path: str | Path) -> DepthModel:
    """An enc-dec-irv2 DepthModel holding the weights of the seed's ``.keras`` file."""
    path = Path(path)
    graph = _KerasGraph.read(path)
    cfg = {**copy.deepcopy(PRESETS.get(_PRESET).config), **SEED_KERAS_CONFIG}
    model = DepthModel(encoder_weights=None, name=f"{_PRESET} (seed Keras checkpoint {path.name})", **cfg)
    try:
        graph.check_padding(model.decoder.bottleneck_stride)
        used: set[str] = set()
        with torch.no_grad():
            for layer, module in _pairs(graph, model):
                _copy(graph, layer, module)
                used.add(layer)
        unused = [n for n in graph.order if n not in used and graph.has_weights(n)]
    finally:
        graph.weights.close()
    if unused:
        raise WeightFileError(
            f"{path}: Keras layer {unused[0]!r} ({graph.layers[unused[0]]['class_name']}) holds weights that "
            f"enc-dec-irv2 has no place for ({len(unused)} such layers): not the seed's Enc-Dec-IRv2."
        )
    return model.eval()


def convert_keras(path: str | Path, out_dir: str | Path) -> Path:
    """Write the seed's ``.keras`` checkpoint as a ``save_pretrained`` folder (config.json +
    model.safetensors) that ``load_model(out_dir)`` reloads."""
    out = Path(out_dir)
    load_keras_seed(path).save_pretrained(out)
    return out


class _KerasGraph:
    """The layer graph of ``config.json`` and the weights of ``model.weights.h5``."""

    def __init__(self, path: Path, config: dict[str, Any], weights: h5py.File) -> None:
        self.path = path
        self.layers = {layer["name"]: layer for layer in config["layers"]}
        self.inputs = {name: _inbound(layer) for name, layer in self.layers.items()}
        self.consumers: dict[str, list[str]] = {name: [] for name in self.layers}
        for name, sources in self.inputs.items():
            for src in sources:
                self.consumers.setdefault(src, []).append(name)
        self.h5_names = _h5_names(config["layers"])
        self.weights = weights
        outputs = config.get("output_layers", [])
        # Keras 3 writes one output as ["conv10", 0, 0] and several as a list of those.
        outputs = [outputs[0]] if outputs and isinstance(outputs[0], str) else [o[0] for o in outputs]
        if len(outputs) != 1 or outputs[0] not in self.layers:
            self.fail(f"has outputs {outputs}; the seed model has one (conv10)")
        self.output = outputs[0]
        self.input_shape = next((layer["config"].get("batch_shape") for layer in config["layers"]
                                 if layer["class_name"] == "InputLayer"), None)
        self.order = _post_order(self.output, self.inputs)

    @classmethod
    def read(cls, path: Path) -> "_KerasGraph":
        if not path.is_file():
            raise WeightFileError(f"Keras checkpoint {path} does not exist.")
        try:
            with zipfile.ZipFile(path) as zf:
                names = set(zf.namelist())
                missing = [m for m in ("config.json", "model.weights.h5") if m not in names]
                if missing:
                    raise WeightFileError(
                        f"{path} is a zip without {' and '.join(missing)}: not a Keras 3 .keras model file "
                        "(model.save('x.keras'))."
                    )
                config = json.loads(zf.read("config.json"))
                if not isinstance(config, dict) or "layers" not in config.get("config", {}):
                    kind = config.get("class_name") if isinstance(config, dict) else type(config).__name__
                    raise WeightFileError(
                        f"{path}: config.json describes a {kind}, not a functional Keras model like the seed's."
                    )
                weights = h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r")
        except WeightFileError:
            raise
        except zipfile.BadZipFile as err:
            raise WeightFileError(f"{path} is not a .keras file (a zip archive): {err}.") from err
        except (OSError, ValueError) as err:  # bad JSON, a damaged HDF5 file
            raise WeightFileError(f"Cannot read Keras checkpoint {path}: {err}.") from err
        try:
            return cls(path, config["config"], weights)
        except (KeyError, TypeError, IndexError) as err:  # a layer entry without the Keras 3 fields
            raise WeightFileError(f"{path}: config.json is not a Keras 3 layer graph ({err!r}).") from err

    def fail(self, problem: str) -> NoReturn:
        raise WeightFileError(f"{self.path}: {problem}: not the seed's Enc-Dec-IRv2.")

    def of_class(self, names: list[str], *classes: str) -> list[str]:
        return [n for n in names if self.layers[n]["class_name"] in classes]

    def has_weights(self, name: str) -> bool:
        group = self.weights.get(f"layers/{self.h5_names[name]}/vars")
        return group is not None and len(group) > 0

    def vars(self, name: str) -> list[np.ndarray]:
        group = self.weights.get(f"layers/{self.h5_names[name]}/vars")
        if group is None:
            self.fail(f"model.weights.h5 has no weights for layer {name!r} (looked for layers/{self.h5_names[name]})")
        return [np.asarray(group[k]) for k in sorted(group, key=int)]

    def following_batchnorm(self, name: str) -> str | None:
        """The BatchNorm a layer feeds, through activations only; None when there is none."""
        while len(self.consumers.get(name, [])) == 1:
            name = self.consumers[name][0]
            cls = self.layers[name]["class_name"]
            if cls == "BatchNormalization":
                return name
            if cls not in _ACTIVATIONS:
                return None
        return None

    def check_padding(self, stride: int) -> None:
        """Each ZeroPadding2D must be what the decoder's pad rule does at the saved input size."""
        if not self.input_shape or None in self.input_shape[1:3]:
            return  # built for any size: nothing fixed to compare
        height, width = self.input_shape[1:3]
        for name in self.of_class(self.order, "ZeroPadding2D"):
            src = self.layers[name].get("build_config", {}).get("input_shape") or [None] * 4
            if None in src[1:3]:
                continue
            tap_stride = 2 ** round(math.log2(height / src[1]))  # valid convs lose a few pixels
            grid = [g * (stride // tap_stride) for g in size_at((height, width), stride)]
            expected = [list(split_padding(g - have)) for g, have in zip(grid, src[1:3])]
            got = self.layers[name]["config"]["padding"]
            if [list(p) for p in got] != expected:
                self.fail(f"layer {name!r} pads {src[1]}x{src[2]} by {got}, the seed rule by {expected}")


def _inbound(layer: dict[str, Any]) -> list[str]:
    """Names of a layer's input layers, in argument order (Keras 3 ``keras_history``)."""
    found: list[str] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            is_tensor = obj.get("class_name") == "__keras_tensor__"
            history = obj.get("config", {}).get("keras_history") if is_tensor else None
            if history:
                found.append(history[0])
                return
            for value in obj.values():
                walk(value)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)

    walk(layer.get("inbound_nodes", []))
    return found


def _post_order(output: str, inputs: dict[str, list[str]]) -> list[str]:
    """Depth-first post-order from ``output``, inputs in argument order (iterative: IRv2 is deep)."""
    seen, order, stack = {output}, [], [(output, iter(inputs.get(output, [])))]
    while stack:
        name, pending = stack[-1]
        nxt = next((s for s in pending if s not in seen), None)
        if nxt is None:
            order.append(name)
            stack.pop()
        else:
            seen.add(nxt)
            stack.append((nxt, iter(inputs.get(nxt, []))))
    return order


def _h5_names(layers: list[dict[str, Any]]) -> dict[str, str]:
    """Keras' weights-file key for each layer: snake_case class name, numbered by occurrence."""
    counts: dict[str, int] = {}
    names = {}
    for layer in layers:
        base = re.sub(r"\W+", "", layer["class_name"])
        base = re.sub("([a-z])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", base)).lower()
        n = counts.get(base, -1) + 1
        counts[base] = n
        names[layer["name"]] = base if n == 0 else f"{base}_{n}"
    return names


def _pairs(graph: _KerasGraph, model: DepthModel) -> list[tuple[str, nn.Module]]:
    """(Keras layer name, torch module) for every conv and BatchNorm, in forward order."""
    decoder_convs: dict[str, nn.Conv2d] = {}
    decoder_bns: dict[str, nn.BatchNorm2d] = {}
    for i, block in enumerate(model.decoder.blocks, start=1):
        decoder_convs.update({f"up{i}_convA": block.up_conv[0], f"up{i}_convB": block.fuse[0],
                              f"up{i}_convC": block.fuse[3]})
        decoder_bns.update({f"up{i}_convB": block.fuse[2], f"up{i}_convC": block.fuse[5]})
    decoder_convs[_HEAD] = model.decoder.head

    pairs: list[tuple[str, nn.Module]] = []
    keras_convs = [n for n in graph.of_class(graph.order, "Conv2D") if n not in decoder_convs]
    torch_convs = _convs_in_forward_order(model.encoder.net)
    for name, (qualname, conv) in zip(keras_convs, torch_convs):
        _check_conv(graph, name, conv, f"encoder module {qualname}")
        parent = model.encoder.net.get_submodule(qualname.rpartition(".")[0])
        pairs += _with_batchnorm(graph, name, conv, getattr(parent, "bn", None), f"encoder module {qualname}")
    if len(keras_convs) != len(torch_convs):
        n = min(len(keras_convs), len(torch_convs))
        first = torch_convs[n][0] if n < len(torch_convs) else keras_convs[n]
        graph.fail(f"its encoder has {len(keras_convs)} conv layers, the truncated Inception-ResNet-v2 "
                   f"{len(torch_convs)} (the first without a match: {first!r})")

    for name, conv in decoder_convs.items():
        if name not in graph.layers:
            graph.fail(f"it has no layer {name!r}, a conv of the seed's decoder")
        _check_conv(graph, name, conv, "the seed decoder's")
        pairs += _with_batchnorm(graph, name, conv, decoder_bns.get(name), f"decoder conv {name}")
    return pairs


def _with_batchnorm(graph: _KerasGraph, name: str, conv: nn.Conv2d, bn: nn.BatchNorm2d | None,
                    what: str) -> list[tuple[str, nn.Module]]:
    bn_name = graph.following_batchnorm(name)
    if (bn_name is None) != (bn is None):
        graph.fail(f"Keras conv {name!r} is{' not' if bn_name is None else ''} followed by a BatchNormalization, "
                   f"{what} is{' not' if bn is None else ''}")
    return [(name, conv)] + ([(bn_name, bn)] if bn is not None else [])


def _convs_in_forward_order(net: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """The encoder's convs in the order its (fx-traced) forward calls them."""
    modules = dict(net.named_modules())
    graph = getattr(net, "graph", None)
    names = [n.target for n in graph.nodes if n.op == "call_module"] if graph is not None else list(modules)
    return [(n, modules[n]) for n in names if isinstance(modules.get(n), nn.Conv2d)]


def _check_conv(graph: _KerasGraph, name: str, conv: nn.Conv2d, what: str) -> None:
    """Kernel shape, stride and padding: other strides or paddings would silently compute something else."""
    cfg = graph.layers[name]["config"]
    kh, kw = conv.kernel_size
    pads = set()  # the Keras paddings this conv computes (a 1x1 conv: both)
    if tuple(conv.padding) == (0, 0):
        pads.add("valid")
    if tuple(conv.padding) == (kh // 2, kw // 2) and kh % 2 == kw % 2 == 1 and tuple(conv.stride) == (1, 1):
        pads.add("same")
    kernel = tuple(graph.vars(name)[0].shape) if graph.layers[name]["class_name"] == "Conv2D" else None
    want = (kh, kw, conv.in_channels, conv.out_channels)
    if kernel != want or tuple(cfg.get("strides", (1, 1))) != tuple(conv.stride) or cfg.get("padding") not in pads:
        graph.fail(f"Keras layer {name!r} ({graph.layers[name]['class_name']}, kernel {kernel}, strides "
                   f"{cfg.get('strides')}, padding {cfg.get('padding')!r}) does not fit {what} (kernel {want}, "
                   f"stride {tuple(conv.stride)}, padding {tuple(conv.padding)})")


def _copy(graph: _KerasGraph, name: str, module: nn.Module) -> None:
    """Copy one layer's arrays, in Keras' variable order, after checking each shape."""
    values = graph.vars(name)
    cfg = graph.layers[name]["config"]
    if isinstance(module, nn.BatchNorm2d):
        if abs(cfg.get("epsilon", 1e-3) - module.eps) > 1e-9:
            graph.fail(f"BatchNorm {name!r} has epsilon {cfg.get('epsilon')}, the matching module {module.eps}")
        # Keras stores gamma only with scale=True (IRv2 uses scale=False: gamma is 1).
        module.weight.fill_(1.0)
        module.bias.zero_()
        attrs = (["weight"] if cfg.get("scale", True) else []) + (["bias"] if cfg.get("center", True) else [])
        attrs += ["running_mean", "running_var"]
    else:
        attrs = ["weight"] + (["bias"] if module.bias is not None else [])
    if len(values) != len(attrs):
        graph.fail(f"layer {name!r} ({graph.layers[name]['class_name']}) holds {len(values)} weight arrays, "
                   f"the matching {type(module).__name__} needs {len(attrs)} ({', '.join(attrs)})")
    for value, attr in zip(values, attrs):
        if isinstance(module, nn.Conv2d) and attr == "weight":
            value = value.transpose(3, 2, 0, 1)  # Keras HWIO -> torch OIHW
        dst = getattr(module, attr)
        if tuple(value.shape) != tuple(dst.shape):
            graph.fail(f"layer {name!r} {attr} has shape {tuple(value.shape)}, the matching "
                       f"{type(module).__name__} needs {tuple(dst.shape)}")
        dst.copy_(torch.from_numpy(np.ascontiguousarray(value)).to(dst.dtype))
