"""DepthModel: timm encoder + our decoder + a depth head, saved as config + safetensors."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

from ..resize import check_working_size
from .decoders import build_decoder
from .encoders import Encoder
from .heads import DISPARITY_RANGE, OUTPUT_KINDS, DepthHead, output_kind
from ..errors import InputError

__all__ = ["DepthModel", "INPUT_NORMS", "OUTPUTS", "CHANNEL_ORDERS", "DISPARITY_RANGE"]

INPUT_NORMS = ("timm", "minmax", "none")
# The channel order the encoder was trained on; the model's input is RGB either way
# (the seed reads images with cv2.imread, so its weights expect BGR).
CHANNEL_ORDERS = ("rgb", "bgr")
# What the logits mean (sigmoid x max_depth, ReLU disparity, ...): one record per kind in heads.py.
OUTPUTS = tuple(OUTPUT_KINDS.names())


class InputNorm(nn.Module):
    """Normalises RGB in [0, 1] the way the encoder was trained, then puts the channels in
    the encoder's order (``channel_order``; ``mean``/``std`` are per colour, RGB order).

    Living inside the model (not in a data pipeline) means predict, ONNX export and
    the web app cannot forget it or apply the wrong one.
    """

    def __init__(self, mode: str, mean: tuple[float, ...], std: tuple[float, ...], channel_order: str = "rgb") -> None:
        super().__init__()
        if mode not in INPUT_NORMS:
            raise InputError(f"input_norm={mode!r} is not valid; choose one of {INPUT_NORMS}.")
        if channel_order not in CHANNEL_ORDERS:
            raise InputError(f"channel_order={channel_order!r} is not valid; choose one of {CHANNEL_ORDERS}.")
        self.mode = mode
        self.channel_order = channel_order
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._normalize(x)
        return x.flip(1) if self.channel_order == "bgr" else x

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "timm":
            return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        if self.mode == "minmax":  # paper eq. 1, per image over all channels
            lo = x.amin(dim=(1, 2, 3), keepdim=True)
            hi = x.amax(dim=(1, 2, 3), keepdim=True)
            return (x - lo) / (hi - lo).clamp_min(1e-6)
        return x


class DepthModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="depthsmith",
    tags=["depth-estimation", "monocular-depth"],
    pipeline_tag="depth-estimation",
):
    """Monocular depth model. ``forward`` takes RGB in [0, 1] (B x 3 x H x W, any H and W)
    and returns B x 1 x H x W depth in metres (for ``output='relative'``: in [0, 1]).

    The ``__init__`` arguments are the whole config: ``save_pretrained`` writes them to
    ``config.json`` and the weights to ``model.safetensors``.

    ``working_size``: the input size the model was trained for (``depthsmith.resize``: null =
    native, ``{"height", "width"}`` fixed, ``{"short_side", "multiple_of"}`` aspect kept);
    ``predict``, ``eval``, the app and ``bench`` resize to it, predict and resize back.
    ``forward`` itself runs at the size it is given.
    """

    def __init__(
        self,
        encoder: str = "resnet50",
        decoder: str = "unet",
        encoder_weights: str | None = None,
        encoder_kwargs: dict[str, Any] | None = None,
        decoder_kwargs: dict[str, Any] | None = None,
        input_norm: str = "timm",
        channel_order: str = "rgb",
        output: str = "metric",
        max_depth: float = 10.0,
        min_depth: float = 0.1,
        name: str | None = None,
        card: dict[str, Any] | None = None,
        working_size: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if output not in OUTPUT_KINDS:
            raise InputError(f"output={output!r} is not valid; choose one of {', '.join(OUTPUT_KINDS.names())}.")
        if not 0 < min_depth < max_depth:
            raise InputError(f"Need 0 < min_depth < max_depth, got {min_depth} and {max_depth}.")
        self.name = name or f"{encoder}-{decoder}"
        self.output = output
        self.max_depth = float(max_depth)
        self.min_depth = float(min_depth)
        self.working_size = check_working_size(working_size, f"{self.name}: working_size")
        self.card = dict(card or {})  # licence, base model, training data, metrics: see card.py
        self.encoder = Encoder(encoder, weights=encoder_weights, **(encoder_kwargs or {}))
        cfg = self.encoder.pretrained_cfg
        self.input_norm = InputNorm(input_norm, cfg.get("mean", (0.485, 0.456, 0.406)),
                                    cfg.get("std", (0.229, 0.224, 0.225)), channel_order)
        self.decoder = build_decoder(decoder, self.encoder.channels, self.encoder.reductions, **(decoder_kwargs or {}))
        self.head = DepthHead(output, self.min_depth, self.max_depth)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's logits at the input size, before the output kind's head."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputError(
                f"{self.name} expects a B x 3 x H x W RGB tensor in [0, 1], got shape {tuple(x.shape)}."
            )
        size = (x.shape[-2], x.shape[-1])  # no int(): keeps H and W symbolic for export
        logits = self.decode(self.input_norm(x), size)
        if tuple(logits.shape[-2:]) != size:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits

    def decode(self, x: torch.Tensor, size: tuple) -> torch.Tensor:
        """The decoder's logits for the normalised input ``x`` (before any resize to ``size``).
        A decoder that must feed the encoder itself (``depth_pro`` tiles the image at three scales:
        models/decoders/depth_pro.py) declares ``runs_encoder`` and is handed the encoder."""
        if getattr(self.decoder, "runs_encoder", False):
            return self.decoder(x, size, encoder=self.encoder)
        return self.decoder(self.encoder(x), size)

    @property
    def export_unsupported(self) -> str:
        """Why ``export_onnx`` cannot write this model ("" when it can; runtime/cache.py reads it, so
        ``auto`` leaves ONNX and OpenVINO out). A decoder may declare its own reason (ZoeDepth's input
        frame: models/decoders/zoedepth.py). Size is no reason: weights past protobuf's 2 GB go to
        ONNX external data beside the file (runtime/export_onnx.py), as Depth Pro's 3.8 GB do."""
        return getattr(self.decoder, "export_unsupported", "") or ""

    @property
    def estimates_focal(self) -> bool:
        """True when the model estimates the camera's focal length itself (Depth Pro's field of view)."""
        return bool(getattr(self.decoder, "estimates_focal", False))

    def focal_length(self, x: torch.Tensor) -> torch.Tensor | None:
        """The model's own estimate of fx (= fy) in pixels of ``x`` (RGB in [0, 1], B x 3 x H x W),
        one per image; None for models without one (``predict`` then uses its default intrinsics)."""
        if not self.estimates_focal:
            return None
        return self.decoder.focal_length(self.input_norm(x), self.encoder, x.shape[-1])

    def forward_normalized(self, x: torch.Tensor) -> torch.Tensor:
        """The activated head at the input size: what the losses compare with targets
        (``models/heads.py``: sigmoid in [0, 1], ReLU for ``metric_relu`` and ``disparity``, ...)."""
        return self.head.activate(self.logits(x))

    def to_depth(self, normalized: torch.Tensor) -> torch.Tensor:
        """Map the normalised output to the model's output units (metres unless unitless)."""
        return self.head.to_depth(normalized)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.logits(x))

    @property
    def output_kind(self):
        return output_kind(self.output)

    @property
    def is_metric(self) -> bool:
        return not self.output_kind.unitless

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Encoder vs decoder parameters, for separate learning rates (the report)."""
        return {
            "encoder": [p for p in self.encoder.parameters() if p.requires_grad],
            "decoder": [p for p in self.decoder.parameters() if p.requires_grad],
        }

    def generate_model_card(self, *args: Any, **kwargs: Any):
        """README.md for save_pretrained / push_to_hub (the mixin calls this)."""
        from .card import build_model_card

        return build_model_card(self)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
