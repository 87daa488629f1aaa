"""The backend registry and the one interface every backend implements.

A *runner* takes a batch of RGB in [0, 1] (B x 3 x H x W float32, a tensor or an array) and
returns depth in the model's units (B x 1 x H x W float32 tensor on the CPU). A *backend* is a
registered factory that builds a runner from a model (a DepthModel, or for file-based backends
an exported file). Adding a backend is one new module with one ``register(...)`` call, imported
in ``depthsmith/runtime/__init__.py``.

``tolerance`` is the backend's documented accuracy against fp32 eager PyTorch: the largest mean
relative difference it is expected to show on a real model (tests hold every backend to it);
``auto`` only considers backends that say ``auto=True`` and pass the accuracy gate when probed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..registry import Registry, UnknownNameError
from ..errors import InputError

__all__ = ["agreement", "Backend", "Runner", "register", "get_backend", "list_backends", "available_backends",
           "to_rgb_batch", "model_meta", "BACKEND_REGISTRY"]


class Runner:
    """Base of every backend's runner; subclasses set the attributes and implement ``forward``."""

    backend: str = ""
    precision: str = "fp32"
    device: torch.device = torch.device("cpu")
    name: str = ""
    is_metric: bool = True
    max_depth: float = float("nan")

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        out = self.forward(to_rgb_batch(x))
        return out.float().cpu() if out.device.type != "cpu" or out.dtype != torch.float32 else out


@dataclass(frozen=True)
class Backend:
    name: str
    factory: Callable[..., Runner]  # factory(model, device=..., **options) -> Runner
    description: str
    precision: str
    tolerance: float  # documented mean relative difference vs fp32 eager PyTorch
    requires: tuple[str, ...] = ()  # importable modules it needs
    auto: bool = True  # may ``--backend auto`` pick it (subject to the probe's accuracy gate)
    condition: Callable[[], bool] | None = None  # hardware condition for auto (e.g. native bf16)
    file_suffixes: tuple[str, ...] = ()  # exported files it runs directly
    aliases: tuple[str, ...] = field(default=())
    # unsupported(model) -> why this backend cannot run the model ("" when it can); asked before
    # anything is built or timed, so auto never spends time on a backend that is bound to fail.
    unsupported: Callable[[Any], str] | None = None

    def why_not(self, model: Any) -> str:
        return self.unsupported(model) if self.unsupported is not None else ""

    def installed(self) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in self.requires)

    def suits_hardware(self) -> bool:
        return self.condition is None or bool(self.condition())


BACKEND_REGISTRY: Registry[Backend] = Registry("backend")


def register(backend: Backend) -> Backend:
    return BACKEND_REGISTRY.add(backend.name, backend, backend.aliases)


def list_backends() -> list[str]:
    """Every registered backend name (installed or not), in registration order."""
    return BACKEND_REGISTRY.names()


def available_backends() -> list[str]:
    """The registered backends whose Python packages are installed."""
    return [n for n, b in BACKEND_REGISTRY.items() if b.installed()]


def get_backend(name: str, installed: bool = True) -> Backend:
    """The backend registered as ``name`` (or an alias); with ``installed``, refused when its packages
    are missing, saying what to install."""
    if name not in BACKEND_REGISTRY:
        aliases = BACKEND_REGISTRY.aliases()
        raise UnknownNameError(f"backend {name!r} is not known; valid: auto, {', '.join(BACKEND_REGISTRY)} "
                               f"(aliases: {', '.join(f'{a}={t}' for a, t in aliases.items())})")
    key = BACKEND_REGISTRY.canonical(name)
    backend = BACKEND_REGISTRY.get(key)
    if installed and not backend.installed():
        missing = [m for m in backend.requires if importlib.util.find_spec(m) is None]
        raise InputError(f"backend {key!r} needs {', '.join(missing)}, which is not installed "
                         f"(pip install 'depthsmith[{'openvino' if 'openvino' in missing else 'export'}]')")
    return backend


def to_rgb_batch(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """A B x 3 x H x W float32 tensor from a tensor or an array, checked."""
    t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else x
    if t.ndim != 4 or t.shape[1] != 3:
        raise InputError(f"expected a B x 3 x H x W batch of RGB in [0, 1], got shape {tuple(t.shape)}")
    return t.float()


def model_meta(model: Any) -> tuple[str, bool, float]:
    """(name, is_metric, max_depth) of a DepthModel or any module."""
    return (getattr(model, "name", type(model).__name__), bool(getattr(model, "is_metric", True)),
            float(getattr(model, "max_depth", float("nan"))))


def agreement(fast: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """How close a backend's depth is to the fp32 reference: (mean |fast - ref| / ref, fraction of
    pixels with max(fast/ref, ref/fast) < 1.25). The auto gate, int8's check and bench use it."""
    fast, ref = fast.float().clamp_min(1e-6), ref.float().clamp_min(1e-6)
    rel = ((fast - ref).abs() / ref).mean().item()
    delta1 = (torch.maximum(fast / ref, ref / fast) < 1.25).float().mean().item()
    return rel, delta1
