"""Inference backends behind one interface, and ``auto``, which measures and picks among them.

    from depthsmith.runtime import create_runner, list_backends
    runner = create_runner("openvino-fp32", model)      # or "auto", "torch-bf16", "onnx", ...
    depth = runner(batch)   # B x 3 x H x W RGB in [0, 1] -> B x 1 x H x W depth (model units)

Every backend lives in one module of this package and registers itself (``base.register``);
importing it here is the one other line a new backend needs. ``Predictor``, ``depthsmith predict
--backend``, the app and ``depthsmith bench`` all take their choices from this registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from . import torch_backends, onnx, openvino  # noqa: F401, I001  (each registers its backends, in this order)
from .auto import AutoRunner
from .base import Backend, Runner, available_backends, get_backend, list_backends, register
from ..errors import InputError

__all__ = ["create_runner", "open_model", "model_working_size", "file_metadata", "backend_choices", "list_backends", "available_backends",
           "get_backend", "register", "Backend", "Runner", "AutoRunner"]


def backend_choices() -> list[str]:
    """Names accepted by ``--backend``: auto, ``torch`` (fp32 or bf16 by ``--precision``), every
    registered backend and its aliases."""
    from .base import BACKEND_REGISTRY

    return ["auto", "torch", *list_backends(), *(a for a in BACKEND_REGISTRY.aliases() if a != "torch")]


def open_model(model: Any) -> Any:
    """A DepthModel (module, folder, Hub id, preset) or, for an exported file a backend runs
    directly (.onnx, .xml), its Path."""
    suffixes = {s for n in list_backends() for s in _suffixes(n)}
    if not isinstance(model, nn.Module) and Path(str(model)).suffix in suffixes:
        return Path(model)
    from ..models import load_any

    return load_any(model)


def file_metadata(path: Path) -> dict[str, str]:
    """The depthsmith metadata an exported ``.onnx`` (``depthsmith.*`` metadata_props) or ``.xml``
    (rt_info) file carries, keys without the prefix: name, units, output kind, working size, ..."""
    if path.suffix == ".onnx":
        import onnx

        props = onnx.load(str(path), load_external_data=False).metadata_props
        return {p.key.removeprefix("depthsmith."): p.value for p in props if p.key.startswith("depthsmith.")}
    from .openvino_ir import core, read_metadata

    return read_metadata(core().read_model(str(path)))


def model_working_size(model: Any, metadata: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The working size (``depthsmith.resize``) of an opened model: a DepthModel's field, or the
    ``working_size`` metadata an exported ``.onnx`` / ``.xml`` file carries (null when absent);
    ``metadata``: that file's ``file_metadata``, when the caller has already read it."""
    import json

    if not isinstance(model, Path):
        return getattr(model, "working_size", None)
    text = (file_metadata(model) if metadata is None else metadata).get("working_size")
    return json.loads(text) if text else None


def _suffixes(name: str) -> tuple[str, ...]:
    return get_backend(name, installed=False).file_suffixes


def create_runner(backend: str, model: Any, device: Any = "auto", precision: str = "auto",
                  compile: bool = False, **options: Any) -> Runner:
    """A runner for ``model`` (see ``open_model``) on ``backend``.

    ``auto``: on a CUDA device, PyTorch at ``precision``; on the CPU, the measured choice
    (``AutoRunner``); an exported file runs on the backend that reads its format. ``torch``: the
    PyTorch fast path in fp32 or bf16 as ``precision`` resolves (bf16 where native).
    """
    from ..device import resolve_device, resolve_precision

    model = open_model(model)
    if compile and backend in ("auto", "torch"):
        backend = "torch-compile"
    if isinstance(model, Path):
        own = next((n for n in list_backends() if model.suffix in _suffixes(n)), None)
        if backend in ("auto", "torch"):
            backend = own or backend
        if backend.startswith("torch"):
            raise InputError(f"{model}: an exported {model.suffix} file cannot run on backend {backend!r}; "
                             f"use --backend {own} or give the saved model folder")
    dev = resolve_device(device)
    if backend == "auto":
        if dev.type != "cpu":
            backend = "torch"
        else:
            return AutoRunner(model, "cpu", precision, **options)
    if backend == "torch":
        backend = f"torch-{resolve_precision(precision, dev)}"
    spec = get_backend(backend)
    if spec.name == "torch-compile":
        return spec.factory(model, device=dev, precision=precision, **options)
    return spec.factory(model, device=dev, **options)
