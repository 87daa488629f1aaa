"""Prediction: depth for an image, many images or video frames, on the fast path by default.

Network input size: each image runs at its own size (the models take any height and
width), except that an image whose longest side exceeds ``max_side`` (default 640) is
downscaled for the network, and one whose shortest side is under ``MIN_SIDE`` is
upscaled (Inception-ResNet-v2's valid convolutions need about 48 px). The prediction is
always resized back bilinearly to the input's resolution, aspect ratio kept.

Precision ``"auto"``: on CPUs with native bf16 (AVX-512 BF16 or AMX) and on CUDA GPUs that
support it, the encoder and decoder run in bf16 with channels-last memory, while the input
normalisation and the depth head (sigmoid and scaling to metres) stay in fp32. Elsewhere fp32
(emulated bf16 is slower than fp32). On the CPU, BatchNorm is folded into the convolutions and
their weights are pre-packed for oneDNN once per input shape. ``depthsmith bench`` measures the speed-up and the
accuracy cost of this against fp32 eager PyTorch.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .io import ReadError, expand_inputs, is_video, load_image, read_video, write_outputs
from .packing import pack_convolutions

__all__ = ["predict", "Predictor", "predict_cli", "resolve_precision", "cpu_has_native_bf16",
           "fast_model", "fold_batchnorm", "load_any", "DEFAULT_MAX_SIDE", "MIN_SIDE"]

DEFAULT_MAX_SIDE = 640
MIN_SIDE = 64
K = TypeVar("K")


# ----------------------------------------------------------------------------- devices and precision


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (x86 ``avx512_bf16`` or ``amx_bf16``).

    torch's own check (``torch.backends.mkldnn.is_bf16_supported``) also says yes on plain
    AVX-512 CPUs, where bf16 is emulated and slower than fp32, so read the CPU flags.
    """
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: stay on fp32 unless asked
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' where the hardware runs it natively, else 'fp32'."""
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision={precision!r} is not valid; choose auto, fp32 or bf16.")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if device.type == "cpu" and cpu_has_native_bf16() else "fp32"


# ----------------------------------------------------------------------------- the fast model


def fold_batchnorm(module: nn.Module) -> int:
    """Fold eval-mode BatchNorm into the convolution right before it, in an fx GraphModule
    (the paper's tapped Inception-ResNet-v2 encoder is one). Returns how many were folded.

    One fewer pass over every activation map. timm's ``BatchNormAct2d`` keeps its activation.
    """
    if not isinstance(module, torch.fx.GraphModule):
        return 0
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    modules = dict(module.named_modules())
    folded = 0
    for node in module.graph.nodes:
        bn = modules.get(node.target) if node.op == "call_module" else None
        if not isinstance(bn, nn.BatchNorm2d) or bn.training or not bn.track_running_stats:
            continue
        prev = node.args[0]
        conv = modules.get(prev.target) if isinstance(prev, torch.fx.Node) and prev.op == "call_module" else None
        if not isinstance(conv, nn.Conv2d) or len(prev.users) != 1:
            continue
        if type(bn) is nn.BatchNorm2d:
            rest: nn.Module = nn.Identity()
        elif type(bn).__name__ == "BatchNormAct2d" and hasattr(bn, "act") and hasattr(bn, "drop"):
            rest = nn.Sequential(bn.drop, bn.act)  # timm: batchnorm -> drop -> act
        else:
            continue
        module.set_submodule(prev.target, fuse_conv_bn_eval(conv, bn))
        module.set_submodule(node.target, rest)
        folded += 1
    return folded


def fast_model(model: nn.Module, device: torch.device, precision: str, prepack: bool = True) -> nn.Module:
    """An inference copy of a DepthModel: BatchNorm folded, channels-last, encoder and decoder in
    bf16 when ``precision == 'bf16'`` (the input normalisation, the sigmoid and the scaling to
    metres stay fp32). Other modules are cast whole, with fp32 in and out. On the CPU, with
    ``prepack``, convolution weights are kept pre-packed for oneDNN (see ``depthsmith.packing``)."""
    # A copy in eval mode whatever the caller's model is in (Encoder.__deepcopy__ keeps modes).
    m = copy.deepcopy(model).eval().to(device)
    for p in m.parameters():
        p.requires_grad_(False)
    encoder_net = getattr(getattr(m, "encoder", None), "net", None)
    if encoder_net is not None:
        fold_batchnorm(encoder_net)
    m = m.to(memory_format=torch.channels_last)
    if precision == "bf16":
        dtype = torch.bfloat16
        parts = [m.encoder, m.decoder] if hasattr(m, "encoder") and hasattr(m, "decoder") else [m]
        for part in parts:
            part.to(dtype)
        # Casting at the two boundaries (instead of autocast) avoids re-casting every weight
        # on every call and keeps the sigmoid and the scaling to metres in fp32.
        parts[0].register_forward_pre_hook(lambda mod, args: tuple(a.to(dtype) for a in args))
        parts[-1].register_forward_hook(lambda mod, args, out: out.float())
    if prepack and device.type == "cpu":
        pack_convolutions(m)
    return m


# ----------------------------------------------------------------------------- predictor


def load_any(model: Any) -> Any:
    """A DepthModel from a module, a saved folder, a Hub id or a preset name (random weights,
    said loudly: useful for benchmarks and export tests only); an ``.onnx`` path is returned as a Path."""
    if isinstance(model, nn.Module):
        return model
    if str(model).endswith(".onnx"):
        return Path(model)
    from .models import create_model, list_models, load_model

    if not Path(model).exists() and model in list_models():
        print(f"warning: {model!r} is a preset name: building it with RANDOM weights (not a trained model)")
        return create_model(model)
    return load_model(model)


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
    """

    def __init__(
        self,
        model: Any,
        device: str | torch.device = "auto",
        precision: str = "auto",
        backend: str = "auto",
        max_side: int = DEFAULT_MAX_SIDE,
        compile: bool = False,
    ) -> None:
        from .runtime import create_runner

        self.max_side = int(max_side)
        # The backend registry builds the runner; "auto" measures on the first batch (depthsmith.runtime.auto).
        self.runner: Any = create_runner(backend, model, device=device, precision=precision, compile=compile)
        self.name, self.is_metric, self.max_depth = self.runner.name, self.runner.is_metric, self.runner.max_depth

    # From the runner: under backend "auto" they name the measured choice once the first batch ran.
    backend = property(lambda self: self.runner.backend)
    precision = property(lambda self: self.runner.precision)
    device = property(lambda self: self.runner.device)

    @property
    def units(self) -> str:
        return "metres" if self.is_metric else "relative depth (unitless, 0-1, not metres)"

    def describe(self) -> str:
        return f"{self.name} on {self.device} ({self.backend}, {self.precision}); output in {self.units}"

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """The size the network sees for an image of ``height`` x ``width`` (see module docstring)."""
        scale = min(1.0, self.max_side / max(height, width))
        scale = max(scale, MIN_SIDE / min(height, width))
        return max(1, round(height * scale)), max(1, round(width * scale))

    @torch.inference_mode()
    def run(self, batch: torch.Tensor) -> torch.Tensor:
        """B x 3 x H x W RGB in [0, 1] -> B x H x W float32 depth at the same H x W, on the CPU."""
        size = tuple(batch.shape[-2:])
        work = self.working_size(*size)
        x = batch.to(self.device, non_blocking=True)
        if work != size:
            x = F.interpolate(x, size=work, mode="bilinear", align_corners=False, antialias=work[0] < size[0])
        depth = self.runner(x)
        if work != size:
            depth = F.interpolate(depth, size=size, mode="bilinear", align_corners=False)
        return depth[:, 0].cpu()

    def predict(self, image: Any) -> np.ndarray:
        """H x W float32 depth of one image (path, PIL image or H x W x 3 array)."""
        return self.run(_to_batch([load_image(image)]))[0].numpy()

    def predict_many(
        self, items: Iterable[tuple[K, np.ndarray]], batch_size: int = 4
    ) -> Iterator[tuple[K, np.ndarray, np.ndarray]]:
        """Yield (key, image, depth) for (key, image) pairs, in order, batching consecutive
        images of the same size (video frames, a folder of one camera's photos)."""
        pending: list[tuple[K, np.ndarray]] = []

        def flush() -> Iterator[tuple[K, np.ndarray, np.ndarray]]:
            depth = self.run(_to_batch([img for _, img in pending])).numpy()
            yield from ((key, img, d) for (key, img), d in zip(pending, depth))
            pending.clear()

        for key, image in items:
            if pending and (len(pending) >= batch_size or image.shape != pending[0][1].shape):
                yield from flush()
            pending.append((key, image))
        if pending:
            yield from flush()


def predict(
    model: Any,
    image: Any,
    max_side: int = DEFAULT_MAX_SIDE,
    precision: str = "auto",
    device: str | torch.device = "auto",
) -> np.ndarray:
    """Depth of one image as an H x W float32 array at the image's own resolution.

    ``model``: a DepthModel, a saved model folder, a Hub id, an exported ``.onnx`` file, or a
    ``Predictor`` (reused: building one prepares the model, so do it once for many images).
    ``image``: a path, a PIL image, or an H x W x 3 (or H x W) uint8 / uint16 / float [0, 1]
    array; EXIF orientation, grey, RGBA and 16-bit images are handled.
    Values are metres, except for relative models (``model.is_metric`` False): unitless [0, 1].
    The network runs at the image's own size, except that the longest side is capped to
    ``max_side`` (and the shortest raised to ``MIN_SIDE``); the prediction is then resized back
    bilinearly, so the output always has the input's resolution.
    """
    predictor = model if isinstance(model, Predictor) else Predictor(model, device, precision, max_side=max_side)
    return predictor.predict(image)


# ----------------------------------------------------------------------------- command line


def _stems(files: Sequence[Path]) -> dict[Path, str]:
    """Output name per input: its stem, prefixed by its folder when two inputs share a stem."""
    counts: dict[str, int] = {}
    for f in files:
        counts[f.stem] = counts.get(f.stem, 0) + 1
    stems = {f: f.stem if counts[f.stem] == 1 else f"{f.parent.name}_{f.stem}" for f in files}
    seen: dict[str, int] = {}
    for f, s in stems.items():  # still clashing (same folder name too): number them
        seen[s] = seen.get(s, 0) + 1
        if seen[s] > 1:
            stems[f] = f"{s}_{seen[s]}"
    return stems


def _progress(iterable: Iterable, total: int | None, unit: str, desc: str) -> Iterable:
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, unit=unit, desc=desc, dynamic_ncols=True)


def predict_video(
    predictor: Predictor, path: Path, out_dir: Path, stem: str, outputs: Sequence[str],
    cmap: str = "inferno_r", batch_size: int = 4,
) -> None:
    """Depth video(s) for a video: ``color`` -> <stem>_depth.mp4, ``side`` -> <stem>_side.mp4,
    ``png16``/``npy`` -> one file per frame in <stem>_frames/. Frames are batched."""
    from .io import VideoWriter, render_color, side_by_side

    frames, info = read_video(path)
    writers = {kind: VideoWriter(out_dir / f"{stem}_{'depth' if kind == 'color' else kind}.mp4", info["fps"])
               for kind in ("color", "side") if kind in outputs}
    frame_outputs = [o for o in outputs if o in ("png16", "npy")]
    if frame_outputs:
        (out_dir / f"{stem}_frames").mkdir(exist_ok=True)
    vrange: tuple[float, float] | None = None
    try:
        stream = predictor.predict_many(enumerate(frames), batch_size)
        for i, frame, depth in _progress(stream, info["n_frames"], "frame", path.name):
            if vrange is None:  # one colour scale for the whole video: per-frame scales flicker
                lo, hi = np.percentile(depth[np.isfinite(depth)], [1, 99])
                vrange = (float(lo), float(hi) if hi > lo else float(lo) + 1e-6)
            if frame_outputs:
                write_outputs(out_dir / f"{stem}_frames", f"{i:06d}", frame, depth, frame_outputs, cmap)
            if writers:
                colored = render_color(depth, cmap, vrange)
                for kind, writer in writers.items():
                    writer.write(colored if kind == "color" else side_by_side(frame, colored))
    finally:
        for writer in writers.values():
            writer.close()


def predict_cli(
    inputs: Sequence[str],
    model: str,
    out_dir: str | Path,
    outputs: Sequence[str] = ("png16", "color"),
    cmap: str = "inferno_r",
    backend: str = "auto",
    batch_size: int = 4,
    device: str = "auto",
    intrinsics: Sequence[float] | None = None,
    precision: str = "auto",
    max_side: int = DEFAULT_MAX_SIDE,
    compile: bool = False,
) -> int:
    """``depthsmith predict``: writes the chosen outputs per input into ``out_dir``.

    Inputs that cannot be read are listed by name at the end and the exit code is 1;
    the others are still processed.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files, problems = expand_inputs(inputs)
    failures = [f"{name}: {reason}" for name, reason in problems]
    if backend == "onnx" and not str(model).endswith(".onnx"):
        model = _onnx_file_for(model, out)
    predictor = Predictor(model, device=device, precision=precision, backend=backend, max_side=max_side,
                          compile=compile)
    print(f"model {predictor.describe()}")
    if not predictor.is_metric:
        print("note: relative model: depth files hold unitless values (16-bit PNG: value x 1000), not metres")
    if "ply" in outputs and intrinsics is None:
        print("point clouds use NYU Kinect intrinsics scaled to each image (pass --intrinsics FX FY CX CY)")

    stems = _stems(files)
    images = [f for f in files if not is_video(f)]
    done = 0

    def readable() -> Iterator[tuple[Path, np.ndarray]]:
        for f in images:
            try:
                yield f, load_image(f)
            except ReadError as err:
                failures.append(str(err))

    for f, rgb, depth in _progress(predictor.predict_many(readable(), batch_size), len(images), "img", "images"):
        try:
            write_outputs(out, stems[f], rgb, depth, outputs, cmap, intrinsics, predictor.units)
            done += 1
        except OSError as err:
            failures.append(f"{f}: cannot write outputs ({err})")
    for f in (f for f in files if is_video(f)):
        try:
            predict_video(predictor, f, out, stems[f], outputs, cmap, batch_size)
            done += 1
        except (ReadError, OSError, RuntimeError) as err:
            failures.append(str(err) if str(f) in str(err) else f"{f}: {err}")

    info = {"model": predictor.name, "units": predictor.units, "png16_scale": 1000, "backend": predictor.backend,
            "precision": predictor.precision, "max_side": max_side}
    (out / "depth_info.json").write_text(json.dumps(info, indent=2))
    print(f"{done} of {len(files) + len(problems)} inputs written to {out}")
    if failures:
        print(f"{len(failures)} input(s) failed:")
        for message in failures:
            print(f"  {message}")
        return 1
    return 0


def _onnx_file_for(model: str, out: Path) -> Path:
    """The ONNX file for ``predict --backend onnx``: <model dir>/model.onnx if it exists, else an
    export written to <out>/model.onnx (checked against PyTorch)."""
    folder_file = Path(model) / "model.onnx"
    if folder_file.is_file():
        return folder_file
    from .export import export_onnx
    from .models import load_model

    print(f"exporting {model} to {out / 'model.onnx'} for ONNX Runtime ...")
    result = export_onnx(load_model(model), out / "model.onnx")
    print(result.summary())
    return result.path
