"""Prediction: depth for an image, many images or video frames, on the fast path by default.

Network input size: the model's ``working_size`` (its config: the size it was trained for, see
``depthsmith.resize``), since a network learns objects at a pixel scale: the quickstart model,
trained at 96 x 128, scored AbsRel 0.427 on 240 x 320 rooms run at their own size and 0.208 at
96 x 128 (README, "Working size"). ``working_size="native"`` (or a model without one) runs each
image at its own size (the models take any height and width), except that an image whose longest
side exceeds ``max_side`` (default 640) is downscaled for the network, and one whose shortest side
is under ``MIN_SIDE`` is upscaled (Inception-ResNet-v2's valid convolutions need about 48 px). Both
sides then stay within [``MIN_SIDE``, ``max_side``]: for very thin images (2 x 40000) the aspect
ratio gives way, or the upscale would run the network at 64 x 1,280,000. A ``{"height", "width"}``
dict fixes the size. The prediction is always resized back bilinearly to the input's resolution. Images with a side under ``MIN_INPUT_SIDE`` are
refused (naming the file): a one-pixel line holds nothing to estimate depth from.

Precision ``"auto"``: on CPUs with native bf16 (AVX-512 BF16 or AMX) and on CUDA GPUs that
support it, the encoder and decoder run in bf16 with channels-last memory, while the input
normalisation and the depth head (sigmoid and scaling to metres) stay in fp32. Elsewhere fp32
(emulated bf16 is slower than fp32). On the CPU, BatchNorm is folded into the convolutions and
their weights are pre-packed for oneDNN once per input shape. ``depthsmith bench`` measures the speed-up and the
accuracy cost of this against fp32 eager PyTorch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError, check_intrinsics, check_positive_int
from .io import load_image
from .metrics.clip_align import TEMPORAL_MODES, ClipAligner
from .metrics.clip_filter import FlowFilter
from .models.heads import output_kind, units_text
from .resize import check_working_size, describe_working_size, resized, working_size_for

__all__ = ["predict", "Predictor", "check_size", "TEMPORAL_MODES", "DEFAULT_MAX_SIDE", "MIN_SIDE", "MIN_INPUT_SIDE"]

DEFAULT_MAX_SIDE = 640
MIN_SIDE = 64
MIN_INPUT_SIDE = 2
K = TypeVar("K")


# ----------------------------------------------------------------------------- predictor


def _to_batch(images: Sequence[np.ndarray]) -> torch.Tensor:
    """B x 3 x H x W float32 in [0, 1] from same-size images (uint8 video frames, floats, grey ...)."""
    return torch.from_numpy(np.stack([load_image(a) for a in images])).permute(0, 3, 1, 2)


class Predictor:
    """A model made ready for inference once, then called on many images.

    ``model``: a DepthModel, a saved model folder, a Hub id or an exported ``.onnx`` / OpenVINO ``.xml`` file.
    ``backend``: 'auto' (measured fastest accurate backend on the CPU), 'torch' (fp32 or bf16 by
    ``precision``) or any name of ``depthsmith.runtime.list_backends()``; a DepthModel given to an
    export-based backend is exported first (cached).
    ``compile``: the ``torch-compile`` backend (see ``depthsmith.runtime.torch_backends``).
    ``working_size``: None or 'model' (the model's own), 'native' (each image at its own size,
    ``max_side`` capped) or a ``{"height": H, "width": W}`` dict (see the module docstring).
    ``intrinsics``: (fx, fy, cx, cy) in pixels of the input images. A focal-normalised model (DA3-Metric,
    models/da3.py) then returns metres: focal x output / 300, the focal scaled to the size the network runs
    at, as depth_anything_3's InputProcessor scales the intrinsics before ``apply_metric_scaling``. Without
    them its output stays unitless (``units`` says so). Other models ignore them (they are for point clouds).
    """

    def __init__(
        self,
        model: Any,
        device: str | torch.device = "auto",
        precision: str = "auto",
        backend: str = "auto",
        max_side: int = DEFAULT_MAX_SIDE,
        compile: bool = False,
        working_size: dict[str, Any] | str | None = None,
        intrinsics: tuple[float, float, float, float] | None = None,
    ) -> None:
        from .runtime import create_runner, file_metadata, model_working_size, open_model

        self.max_side = check_positive_int(max_side, "max_side", MIN_SIDE)
        model = open_model(model)  # a folder or Hub id loaded once, for the runner and the focal estimate
        # The backend registry builds the runner; "auto" measures on the first batch (depthsmith.runtime.auto).
        self.runner: Any = create_runner(backend, model, device=device, precision=precision, compile=compile)
        # After the runner: building it checks an exported file and names it when it is broken.
        # An exported file carries the model's working size, output kind and focal rule (runtime/export_onnx.py).
        meta = file_metadata(model) if isinstance(model, Path) else {}
        # None: native size (max_side capped); a dict: the rule of depthsmith.resize.
        self.size_rule = (None if working_size == "native" else model_working_size(model, meta)
                          if working_size in (None, "model") else check_working_size(working_size, "working_size"))
        # Kept only for models that estimate the focal length themselves (Depth Pro): see ``intrinsics``.
        self.focal_model = model if getattr(model, "estimates_focal", False) else None
        self.name, self.is_metric, self.max_depth = self.runner.name, self.runner.is_metric, self.runner.max_depth
        # model.output (models/model.py), None if unknown
        self.output = _output_kind(model, self.runner) or meta.get("output_kind") or None
        # DA3-Metric's card marks its output as focal-normalised (models/da3.py da3_model_kwargs).
        self.focal_normalised = bool(getattr(model, "card", {}).get("focal_normalised") or meta.get("focal_normalised"))
        camera = check_intrinsics(intrinsics)
        self.metric_camera = camera if self.focal_normalised else None
        if self.metric_camera is not None:
            self.is_metric = True

    # From the runner: under backend "auto" they name the measured choice once the first batch ran.
    backend = property(lambda self: self.runner.backend)
    precision = property(lambda self: self.runner.precision)
    device = property(lambda self: self.runner.device)

    @property
    def units(self) -> str:
        return units_text(self.is_metric, self.output, self.focal_normalised)

    def describe(self) -> str:
        size = describe_working_size(self.size_rule) if self.size_rule else f"native (sides capped to {self.max_side})"
        return (f"{self.name} on {self.device} ({self.backend}, {self.precision}); working size {size}; "
                f"output in {self.units}")

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the network sees for an image of ``height`` x ``width`` (see module docstring)."""
        check_size(height, width)
        if self.size_rule is not None:
            return working_size_for(self.size_rule, height, width)
        scale = min(1.0, self.max_side / max(height, width))
        scale = max(scale, MIN_SIDE / min(height, width))
        return tuple(min(self.max_side, max(MIN_SIDE, round(side * scale))) for side in (height, width))

    @torch.inference_mode()
    def run(self, batch: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W RGB in [0, 1] -> B x H x W float32 depth at the same H x W, on the CPU."""
        size = tuple(batch.shape[-2:])
        work = self.working_size(*size)
        x = batch.to(self.device, non_blocking=True)
        if work != size:
            x = resized(x, work)
        depth = self.runner(x)
        if self.metric_camera is not None:
            depth = self._metres(depth, size, work)
        if work != size:
            depth = F.interpolate(depth, size=size, mode="bilinear", align_corners=False)
        return depth[:, 0].cpu()

    def _metres(self, depth: torch.Tensor, size: tuple[int, int], work: tuple[int, int]) -> torch.Tensor:
        """DA3-Metric's output in metres (models/da3.py ``metric_depth``): fx and fy scaled to the network's
        input size (depth_anything_3/utils/io/input_processor.py ``_resize_ixt``: fx by the width ratio, fy
        by the height ratio), then their mean, as ``apply_metric_scaling`` (utils/alignment.py) takes it."""
        from .models.da3 import metric_depth

        fx, fy = self.metric_camera[:2]
        return metric_depth(depth, (fx * work[1] / size[1] + fy * work[0] / size[0]) / 2)

    @property
    def estimates_focal(self) -> bool:
        return self.focal_model is not None

    @torch.inference_mode()
    def intrinsics(self, image: Any) -> tuple[float, float, float, float] | None:
        """(fx, fy, cx, cy) of ``image`` at its own resolution from the model's focal estimate (Depth
        Pro's field of view, ``DepthModel.focal_length``), fx = fy, principal point at the image centre;
        None for models without an estimate. Runs on the working size, as ``run`` does."""
        if self.focal_model is None:
            return None
        rgb = load_image(image)
        height, width = rgb.shape[:2]
        work = self.working_size(height, width)
        x = _to_batch([rgb])
        if work != (height, width):
            x = resized(x, work)
        device = next(self.focal_model.parameters()).device
        fx = float(self.focal_model.focal_length(x.to(device))[0]) * width / work[1]  # pixels scale with the width
        return fx, fx, (width - 1) / 2, (height - 1) / 2

    def predict(self, image: Any) -> np.ndarray:
        """H x W float32 depth of one image (path, PIL image or H x W x 3 array)."""
        rgb = load_image(image)
        try:
            check_size(*rgb.shape[:2])
        except InputError as err:
            raise InputError(f"{image}: {err}" if isinstance(image, (str, Path)) else str(err)) from err
        return self.run(_to_batch([rgb]))[0].numpy()

    def predict_many(
        self, items: Iterable[tuple[K, np.ndarray]], batch_size: int = 4,
        on_error: Callable[[K, Exception], None] | None = None,
    ) -> Iterator[tuple[K, np.ndarray, np.ndarray]]:
        """Yield (key, image, depth) for (key, image) pairs, in order, batching consecutive
        images of the same size (video frames, a folder of one camera's photos).

        ``on_error(key, error)``: when given, an image that cannot be run (too small, out of
        memory) is reported through it and skipped, and the rest of its batch still runs;
        without it the error is raised.
        """
        check_positive_int(batch_size, "batch_size")
        pending: list[tuple[K, np.ndarray]] = []

        def flush() -> Iterator[tuple[K, np.ndarray, np.ndarray]]:
            try:
                depth = self.run(_to_batch([img for _, img in pending])).numpy()
                done = [(key, img, d) for (key, img), d in zip(pending, depth)]
            except (InputError, RuntimeError, MemoryError) as err:
                if on_error is None:
                    raise
                done = []
                for key, img in (pending if len(pending) > 1 else ()):  # one by one: only the culprit fails
                    try:
                        done.append((key, img, self.run(_to_batch([img])).numpy()[0]))
                    except (InputError, RuntimeError, MemoryError) as single:
                        on_error(key, single)
                if len(pending) == 1:
                    on_error(pending[0][0], err)
            pending.clear()
            yield from done

        for key, image in items:
            if pending and (len(pending) >= batch_size or image.shape != pending[0][1].shape):
                yield from flush()
            pending.append((key, image))
        if pending:
            yield from flush()


    def aligner(self, temporal: str = "auto", anchor: np.ndarray | None = None, window: int = 4,
                strength: float = 0.5) -> ClipAligner | None:
        """The temporal aligner ``stream`` uses (None for ``temporal='none'``), see ``metrics/clip_align.py``.

        ``auto``: ``align`` for unitless outputs, ``none`` for metric ones. ``align`` on a metric model
        is the light scale smoothing at ``strength``; on a relative or disparity model, a scale and
        shift per frame fitted to the last ``window`` aligned frames, in the output kind's affine
        space; ``anchor`` (metric depth of the first frame) puts the clip in metres. ``filter``: the
        same fit (none on a metric model), then each frame filtered along the optical flow from the
        previous one (``metrics/clip_filter.py``; needs OpenCV), which removes the per-pixel flicker
        a per-frame fit leaves (README, "Video").
        """
        if temporal not in TEMPORAL_MODES:
            raise InputError(f"temporal must be one of {', '.join(TEMPORAL_MODES)}, got {temporal!r}")
        if temporal == "none" or (temporal == "auto" and self.is_metric):
            return None
        # The space the output kind is affine in (models/heads.py): disparity for disparity models.
        space = "metric" if self.is_metric else output_kind(self.output).affine_space if self.output else "depth"
        flow = FlowFilter() if temporal == "filter" else None
        smoothing = strength if space == "metric" and flow is None else 0.0
        return ClipAligner(space, window=window, anchor=anchor, strength=smoothing, flow=flow)

    def stream(self, frames: Iterable[np.ndarray], temporal: str = "auto", anchor: np.ndarray | None = None,
               batch_size: int = 4, window: int = 4) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (frame, depth) for video frames in order, each depth aligned to the clip so far
        (see ``aligner``). Frames are read, batched and yielded as a stream: memory stays flat."""
        align = self.aligner(temporal, anchor, window)
        for _, frame, depth in self.predict_many(enumerate(frames), batch_size):
            yield frame, (depth if align is None else align(depth, frame))



def _output_kind(model: Any, runner: Any) -> str | None:
    """The model's output kind (``model.output``) from the model, its runner or a saved folder's config."""
    for obj in (model, getattr(runner, "model", None)):
        kind = getattr(obj, "output", None)
        if isinstance(kind, str):
            return kind
    config = Path(str(model)) / "config.json"
    if isinstance(model, (str, Path)) and config.is_file():
        import json

        kind = json.loads(config.read_text()).get("output")
        return kind if isinstance(kind, str) else None
    return None


def check_size(height: int, width: int) -> None:
    """Refuse images with a side under MIN_INPUT_SIDE (see the module docstring)."""
    if min(height, width) < MIN_INPUT_SIDE:
        raise InputError(f"image is {width} x {height} pixels; depth needs at least "
                         f"{MIN_INPUT_SIDE} x {MIN_INPUT_SIDE}.")


def predict(
    model: Any,
    image: Any,
    max_side: int = DEFAULT_MAX_SIDE,
    precision: str = "auto",
    device: str | torch.device = "auto",
    working_size: dict[str, Any] | str | None = None,
    intrinsics: tuple[float, float, float, float] | None = None,
) -> np.ndarray:
    """Depth of one image as an H x W float32 array at the image's own resolution.

    ``model``: a DepthModel, a saved model folder, a Hub id, an exported ``.onnx`` file, or a
    ``Predictor`` (reused: building one prepares the model, so do it once for many images).
    ``image``: a path, a PIL image, or an H x W x 3 (or H x W) uint8 / uint16 / float [0, 1]
    array; EXIF orientation, grey, RGBA and 16-bit images are handled.
    Values are metres, except for relative models (``model.is_metric`` False): unitless [0, 1].
    The network runs at the model's working size (``working_size``: see ``Predictor``; 'native' runs
    it at the image's own size, the longest side capped to ``max_side``); the prediction is then
    resized back bilinearly, so the output always has the input's resolution.
    ``intrinsics`` (fx, fy, cx, cy of the image): metres for a focal-normalised model (DA3-Metric; see
    ``Predictor``); a given ``Predictor`` keeps its own.
    """
    if isinstance(model, Predictor) and intrinsics is not None:
        raise InputError("predict: intrinsics belong to the Predictor (Predictor(model, intrinsics=...)); "
                         "a Predictor passed as model keeps the ones it was built with.")
    predictor = model if isinstance(model, Predictor) else Predictor(model, device, precision, max_side=max_side,
                                                                     working_size=working_size, intrinsics=intrinsics)
    return predictor.predict(image)
