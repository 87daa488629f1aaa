"""depthsmith: train, evaluate and deploy monocular depth estimation models."""

from .inference import predict
from .models import DepthModel, create_model, list_decoders, list_models, load_model

__version__ = "0.1.0"

__all__ = ["DepthModel", "create_model", "list_models", "list_decoders", "load_model", "predict", "__version__"]
