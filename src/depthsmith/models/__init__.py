"""Model construction: ``create_model``, ``list_models``, ``load_model``."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import timm

from ..errors import InputError, MissingInputError
from .decoders import list_decoders
from .encoders import WEIGHT_CHOICES
from .loading import ModelConfigError, load_hub, load_local, looks_like_path
from .model import DepthModel
from .presets import PRESETS, Preset
from .vit import is_plain_vit
from .weights import WeightFileError, check_finite

__all__ = ["DepthModel", "create_model", "list_models", "load_model", "load_any", "convert_keras", "list_decoders",
           "WeightFileError", "ModelConfigError"]


def list_models() -> list[str]:
    """Names of the presets. Any timm encoder name works with ``create_model`` too."""
    return sorted(PRESETS.names())


def create_model(
    name: str,
    decoder: str | None = None,
    encoder_weights: str | None = None,
    **overrides: Any,
) -> DepthModel:
    """Build a preset (``create_model("enc-dec-irv2")``) or any timm encoder with any
    decoder (``create_model("convnext_tiny", decoder="residual_unet")``).

    ``encoder_weights``: 'imagenet' (timm pretrained; needs the internet or the HF
    cache), None (random init, the default as in timm) or a local .safetensors/.pth
    path. ``None``-valued overrides are dropped so CLI defaults never override a
    preset's own values.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if decoder is not None:
        overrides["decoder"] = decoder
    if name in PRESETS:
        cfg = copy.deepcopy(PRESETS.get(name).config)
        for key in ("encoder_kwargs", "decoder_kwargs"):  # merge, do not replace
            if key in overrides:
                cfg[key] = {**cfg.get(key, {}), **overrides.pop(key)}
        cfg.update(overrides)
        cfg.setdefault("name", name)
    elif timm.is_model(name):
        # A plain ViT gives one-stride token grids: DPT is the decoder made for them.
        cfg = {"encoder": name, "decoder": "dpt" if is_plain_vit(name) else "unet", **overrides}
    else:
        raise InputError(
            f"Unknown model {name!r}. Presets: {', '.join(list_models())}. "
            f"Or give any timm encoder name (timm.list_models()) with decoder= one of "
            f"{', '.join(list_decoders())}."
        )
    return DepthModel(encoder_weights=encoder_weights, **cfg)


def _finite(load: Any) -> Any:
    """Every model ``load_model`` returns, whatever its format, is checked for NaN/inf tensors."""
    @functools.wraps(load)
    def checked(path_or_hub_id: str | Path, *args: Any, **kwargs: Any) -> DepthModel:
        return check_finite(load(path_or_hub_id, *args, **kwargs), path_or_hub_id)

    return checked


@_finite
def load_model(path_or_hub_id: str | Path, map_location: str = "cpu", output: str | None = None,
               max_depth: float | None = None, **hub_kwargs: Any) -> DepthModel:
    """Rebuild a model written by ``save_pretrained`` (a local folder or a Hub repo id), import the
    seed paper's Keras checkpoint (a ``.keras`` file, see ``keras_seed``), convert a transformers
    Depth Anything, DPT, ZoeDepth or Depth Pro checkpoint (folder or Hub id; see ``hf_depth``, ``hf_dpt``,
    ``hf_zoedepth``, ``hf_depth_pro``), an original Depth Anything V2 ``.pth`` checkpoint (see ``da2_pth``) or a
    Depth Anything 3 monocular checkpoint (folder, its model.safetensors, or Hub id; see ``da3``).

    Weights come from safetensors, the .keras file's HDF5 or ``torch.load(weights_only=True)`` only
    and every tensor must match (strict): nothing but tensors is unpickled, and the encoder's ImageNet
    weights are not fetched again. A bad local folder raises ModelConfigError (config.json) or
    WeightFileError (model.safetensors) naming the file.

    ``output`` ('disparity' or 'metric') and ``max_depth`` (metres) are for ``.pth`` files only: they
    override what the file name says (relative, or metric Hypersim 20 m / Virtual KITTI 80 m).
    """
    from .da3 import da3_folder, load_da3
    from .hf_depth import hf_depth_folder

    path = Path(path_or_hub_id).expanduser()
    if path.suffix == ".pth":  # before the Hub, as .keras; encoder .pth files go to create_model instead
        from .da2_pth import load_da2_pth

        return load_da2_pth(path, output=output, max_depth=max_depth).to(map_location)
    if output is not None or max_depth is not None:
        raise InputError(f"load_model({str(path_or_hub_id)!r}): output= and max_depth= are for original Depth "
                         "Anything V2 .pth checkpoints only; other models carry their output kind in their config.")
    if path.suffix == ".keras":  # before the Hub: a missing file must say so, not look like a repo id
        from .keras_seed import load_keras_seed

        return load_keras_seed(path).to(map_location)
    if path.exists():
        hf = hf_depth_folder(path)  # a transformers checkpoint folder: converted
        if hf:
            return _load_hf(hf, map_location, str(path))
        da3 = da3_folder(path)  # Depth Anything 3's own layout (a folder, or its model.safetensors)
        return load_da3(da3, map_location, str(path)) if da3 else load_local(path, map_location)
    if looks_like_path(str(path_or_hub_id)):
        raise MissingInputError(
            f"model path {path} does not exist (not tried as a Hub id: Hub ids look like 'owner/name'); "
            "give a folder written by save_pretrained, or a Hub repo id."
        )
    hf = hf_depth_folder(str(path_or_hub_id), **hub_kwargs)
    if hf is not None:
        return _load_hf(hf, map_location, str(path_or_hub_id))
    da3 = da3_folder(str(path_or_hub_id), **hub_kwargs)
    if da3 is not None:
        return load_da3(da3, map_location, str(path_or_hub_id))
    return load_hub(str(path_or_hub_id), map_location, **hub_kwargs)


def _load_hf(folder: Path, map_location: str, source: str) -> DepthModel:
    """A transformers checkpoint folder, converted by the converter of its config's ``model_type``."""
    import json

    from .hf_depth import load_hf_depth
    from .hf_depth_pro import load_hf_depth_pro
    from .hf_dpt import load_hf_dpt
    from .hf_zoedepth import load_hf_zoedepth

    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    # load_hf_depth names the unsupported ones
    converters = {"dpt": load_hf_dpt, "zoedepth": load_hf_zoedepth, "depth_pro": load_hf_depth_pro}
    load = converters.get(model_type, load_hf_depth)
    return load(folder, map_location=map_location, source=source)


def load_any(model: Any) -> Any:
    """What every ``--model`` takes: a module (as it is), a saved folder, a ``.keras`` file or a Hub
    id (``load_model``), or a preset name (built with RANDOM weights, said loudly: for benchmarks and
    export tests only); an ``.onnx`` path comes back as a Path for the runtime to run."""
    from torch import nn

    if isinstance(model, nn.Module):
        return model
    if str(model).endswith(".onnx"):
        return Path(model)
    if not Path(model).exists() and model in list_models():
        print(f"warning: {model!r} is a preset name: building it with RANDOM weights (not a trained model)")
        return create_model(model)
    return load_model(model)


def __getattr__(name: str):
    # convert_keras is models/keras_seed.py's own function, imported on first use: keras_seed imports
    # h5py, which `import depthsmith` should not pay for.
    if name == "convert_keras":
        from .keras_seed import convert_keras

        return convert_keras
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
