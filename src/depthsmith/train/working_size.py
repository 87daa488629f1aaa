"""A trained model's working size (``DepthModel.working_size``) from its training config.

The network learns objects at the pixel scale of its training images, so that is the size predict
and eval should give it. The images it saw come from ``data.train`` through ``data.transforms``:

* the last ``resize`` sets the size (a crop after it, e.g. Depth-Anything-V2's 518 x 686 then a
  518 x 518 crop, keeps the resize's pixel scale, so the working size is the resize's, not the crop's);
* without a resize the training set's own size, where its config states it (``synthetic``'s
  ``size``: the quickstart's 96 x 128);
* otherwise None (native: images of the training camera at their own size).

``model.working_size`` in the config, when set (null included), wins.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping
from typing import Any

from ..data.transforms import transform_items
from .schema import DataConfig, TrainConfig

__all__ = ["training_working_size", "model_section"]


def _fixed(size: Any) -> dict[str, int]:
    height, width = (size, size) if isinstance(size, int) else (size[0], size[1])
    return {"height": int(height), "width": int(width)}


def training_working_size(data: DataConfig) -> dict[str, int] | None:
    """The working size of a model trained on the ``data:`` section (see the module docstring)."""
    resizes = [opts["size"] for name, opts in transform_items(data.transforms) if name == "resize"]
    if resizes:
        return _fixed(resizes[-1])
    train = data.train or {}
    if isinstance(train, Mapping) and train.get("type") == "synthetic":
        from ..data.synthetic import SyntheticScenes

        default = inspect.signature(SyntheticScenes.__init__).parameters["size"].default
        return _fixed(train.get("size") or default)
    return None


def model_section(config: TrainConfig) -> dict[str, Any]:
    """The ``model:`` section with ``working_size`` filled in from the data when not set."""
    model = copy.deepcopy(dict(config.model))
    if "working_size" not in model:
        model["working_size"] = training_working_size(config.data)
    return model
