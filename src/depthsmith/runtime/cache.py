"""The cache folder: exported files per model, and measured backend choices per machine.

Location: ``$DEPTHSMITH_CACHE`` if set, else ``~/.cache/depthsmith``. A model is identified by
a hash of its class, parameters and buffers (so two saves of the same weights share one export
and a retrained model gets its own), a file by its resolved path, size and modification time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..paths import cache_dir  # here too, for the callers of the cache

__all__ = ["cache_dir", "model_key", "exported_onnx", "exported_openvino", "export_failure", "ExportMismatchError",
           "implicit_export_refusal", "export_refusal"]

FAILED_FILE = "export-failed.txt"  # beside a model's cached exports: why its ONNX export was refused
# ``--backend auto`` exports a model itself only up to this many bytes of float32 weights. Measured on
# Depth Pro's 3.8 GB (2 cores, 24 GB): the trace and write took 8 minutes and the check 11; converting
# that export to OpenVINO IR inside auto, with the model and a candidate loaded, was killed for memory.
AUTO_EXPORT_LIMIT = 2**31


class ExportMismatchError(InputError):
    """An export whose output does not match the PyTorch model it came from: the message names the
    model and every check (input size, difference, tolerance)."""


def model_key(model: Any) -> str:
    """A short hash that changes whenever the model's weights, architecture or file change.

    A module's key is kept on the module with a fingerprint of its tensors (storage address and
    version counter, which every in-place write, optimiser step and ``load_state_dict`` bumps), so
    asking again costs nothing until a weight changes: hashing Depth Pro's 3.8 GB takes seconds,
    and ``auto`` asks once per export backend.
    """
    if not isinstance(model, nn.Module):
        path = Path(model).resolve()
        stat = path.stat()
        return hashlib.sha1(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    state = model.state_dict()
    fingerprint = tuple((name, t.data_ptr(), t._version, tuple(t.shape), t.dtype) for name, t in state.items())
    cached = model.__dict__.get("_depthsmith_key")
    if cached is not None and cached[0] == fingerprint:
        return cached[1]
    h = hashlib.sha1()
    h.update(type(model).__qualname__.encode())
    h.update(str(getattr(model, "_hub_mixin_config", "")).encode())
    for name, t in state.items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(memoryview(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy()))  # no copy
    key = h.hexdigest()[:16]
    model.__dict__["_depthsmith_key"] = (fingerprint, key)
    return key


def _model_folder(model: nn.Module, make: bool = True) -> Path:
    """Where ``model``'s exports are cached (made unless ``make`` is False: a look-up writes nothing)."""
    folder = cache_dir() / "models" / model_key(model)
    if make:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def exported_onnx(model: Any) -> Path:
    """An ONNX file for ``model``: the path itself if it is one, else the model's cached export
    (written once, checked against PyTorch at two sizes; a failed check raises)."""
    if not isinstance(model, nn.Module):
        path = Path(model)
        if path.suffix != ".onnx":
            raise InputError(f"{path}: expected a DepthModel or an .onnx file for the ONNX Runtime backend")
        if not path.is_file():
            raise FileNotFoundError(f"ONNX file {path} does not exist (write one with `depthsmith export`).")
        return path
    from .export_onnx import export_onnx

    out = _model_folder(model) / "model.onnx"
    if failure := export_failure(model):
        raise ExportMismatchError(failure)
    if not out.is_file():
        # Written next to its final name, then renamed: a killed export leaves no half file.
        tmp = Path(tempfile.mkdtemp(dir=out.parent)) / "model.onnx"
        # A small example size keeps the export and its two checks quick; the file serves every size.
        result = export_onnx(model, tmp, height=96, width=128)
        if not result.ok:
            shutil.rmtree(tmp.parent, ignore_errors=True)
            message = (f"the ONNX export of model {getattr(model, 'name', type(model).__name__)} "
                       f"(output kind {getattr(model, 'output', '?')}) does not match PyTorch:\n{result.summary()}")
            (out.parent / FAILED_FILE).write_text(message)  # so the next run does not export it again
            raise ExportMismatchError(message)
        data = tmp.with_name("model.onnx.data")  # weights beside the file when over 2 GB (export_onnx)
        if data.is_file():
            os.replace(data, out.with_name(data.name))
        os.replace(tmp, out)
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return out


def export_failure(model: Any) -> str:
    """Why this model cannot be exported: its own declaration (``export_unsupported``), or the
    recorded message of an export that was refused before; "" when nothing is known against it."""
    if declared := getattr(model, "export_unsupported", ""):
        return f"model {getattr(model, 'name', type(model).__name__)} cannot be exported: {declared}"
    if not isinstance(model, nn.Module):
        return ""
    path = _model_folder(model, make=False) / FAILED_FILE
    return path.read_text() if path.is_file() else ""


def implicit_export_refusal(model: Any, artefact: str = "model.onnx") -> str:
    """Why ``--backend auto`` does not make ``model``'s export (``artefact``: model.onnx for ONNX
    Runtime, model.xml for OpenVINO) on its own ("" when it may): float32 weights past
    ``AUTO_EXPORT_LIMIT`` and that file not cached yet. ``depthsmith export`` still exports it."""
    if not isinstance(model, nn.Module):
        return ""
    size = 4 * sum(t.numel() for t in model.state_dict().values())
    if size <= AUTO_EXPORT_LIMIT or (_model_folder(model, make=False) / artefact).is_file():
        return ""
    return (f"auto does not make the {artefact} of a model of {size / 1e9:.1f} GB itself (minutes, and over 24 GB "
            "of memory for Depth Pro's OpenVINO conversion); export it once with `depthsmith export --model ... "
            "--out model.onnx` (or --format openvino) and pass the file, or name the backend")


def export_refusal(artefact: str) -> Callable[[Any], str]:
    """The ``unsupported`` hook (runtime/base.py, asked by auto only) of a backend that runs the model's
    export ``artefact``: a known export failure, or a model too big for auto to export itself."""
    def unsupported(model: Any) -> str:
        return export_failure(model) or implicit_export_refusal(model, artefact)

    return unsupported


def exported_openvino(model: Any) -> Path:
    """An OpenVINO IR (.xml) for ``model``: the path itself if it is one, else converted (once,
    cached) from the checked ONNX export of a DepthModel or from a given .onnx file."""
    from .openvino_ir import convert_to_openvino

    if not isinstance(model, nn.Module):
        path = Path(model)
        if path.suffix == ".xml":
            if not path.is_file():
                raise FileNotFoundError(f"OpenVINO IR {path} does not exist (write one with "
                                        "`depthsmith export --format openvino`).")
            return path
        if path.suffix != ".onnx":
            raise InputError(f"{path}: expected a DepthModel, an .onnx or an OpenVINO .xml file")
        out = cache_dir() / "models" / model_key(path) / "model.xml"
    else:
        out = _model_folder(model) / "model.xml"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        # Converted beside its final name, then renamed .bin first and .xml last: the .xml is what
        # "already cached" looks for, so another process never reads an IR whose weights are missing.
        tmp = Path(tempfile.mkdtemp(dir=out.parent)) / "model.xml"
        convert_to_openvino(exported_onnx(model), tmp)
        os.replace(tmp.with_suffix(".bin"), out.with_suffix(".bin"))
        os.replace(tmp, out)
        shutil.rmtree(tmp.parent, ignore_errors=True)
    return out
