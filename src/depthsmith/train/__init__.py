"""Training on Lightning: recipes, the LightningModule, and ``train()``.

    from depthsmith.train import train, list_recipes
    result = train("quickstart", overrides=["trainer.max_epochs=2"])
    result.model_dir  # -> depthsmith.load_model(result.model_dir)
"""

from .config import ConfigError, list_recipes, load_train_config, resolve_config
from .module import CollapsedOutputError, DepthTrainModule, NonFiniteLossError
from .run import TrainResult, train

__all__ = ["train", "TrainResult", "list_recipes", "load_train_config", "resolve_config", "ConfigError",
           "DepthTrainModule", "NonFiniteLossError", "CollapsedOutputError"]
