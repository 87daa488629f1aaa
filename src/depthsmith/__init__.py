"""depthsmith: train, evaluate and deploy monocular depth estimation models."""

import importlib
from typing import Any

from .inference import predict
from .models import DepthModel, create_model, list_decoders, list_models, load_model

__version__ = "0.1.0"

__all__ = ["DepthModel", "create_model", "list_models", "list_decoders", "load_model", "predict", "__version__",
           "data", "losses", "metrics", "evaluate", "train", "export", "report"]

# Sub-packages reachable as attributes after a plain `import depthsmith` (depthsmith.metrics.compute_metrics),
# imported on first use so that `import depthsmith` stays as fast as the model API needs.
_LAZY = {"data", "losses", "metrics", "evaluate", "train", "export", "report", "viz", "io"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'depthsmith' has no attribute {name!r}")
