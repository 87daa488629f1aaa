"""OpenVINO IR: conversion from the checked ONNX export, metadata, a runner, and the int8 rate probe.

The IR is converted from the ONNX file that ``export_onnx`` writes and checks (dynamic batch,
height and width) rather than from the torch module: ``ov.convert_model(module)`` traces with
TorchScript, which freezes the Python size comparisons in ``DepthModel.forward`` to the example size.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ..cpu import usable_cores
from ..models.weights import WeightFileError
from .base import Runner
from ..paths import cache_dir
from ..errors import InputError

__all__ = ["core", "convert_to_openvino", "save_openvino", "OpenVinoRunner", "read_metadata", "int8_conv_rate", "HINTS"]

HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
STATIC_SHAPES = 3  # compiled shapes an OpenVinoRunner keeps (each holds its own copy of the weights)
META_KEYS = ("name", "is_metric", "max_depth", "precision", "input", "output", "working_size", "output_kind",
             "focal_normalised")


@lru_cache(maxsize=1)
def core() -> Any:
    """The one OpenVINO Core of this process, its CPU plugin loaded at once and never released.

    Why one: each ``ov.Core`` loads its own CPU plugin, whose constructor (``SigAltStackSetup`` in
    OpenVINO's intel_cpu plugin) maps a signal alternate stack for the thread and whose destructor
    re-installs the stack that was current before it. Two plugins released in creation order (two
    runners, ``auto`` dropping a candidate, garbage collection) leave the thread's alternate stack
    pointing at unmapped memory, and the next Python-handled signal (CPython installs handlers with
    SA_ONSTACK; torch's DataLoader handles SIGCHLD) kills the process with SIGSEGV and no traceback
    (reproduced by tests/test_runtime.py::test_two_openvino_runners_survive_a_signal). One Core made
    first and kept keeps every later plugin (NNCF's) nested inside it.
    """
    import openvino as ov

    shared = ov.Core()
    shared.get_versions("CPU")  # load the CPU plugin now, before any other Core's
    return shared


def save_openvino(ov_model: Any, out: str | Path, meta: dict[str, str]) -> Path:
    """Write ``ov_model`` as IR (``out`` .xml + .bin next to it) with depthsmith metadata in its rt_info."""
    import openvino as ov

    out = Path(out)
    if out.suffix != ".xml":
        raise InputError(f"{out}: an OpenVINO IR path must end in .xml (the weights go to {out.stem}.bin beside it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    for key, value in meta.items():
        ov_model.set_rt_info(str(value), ["depthsmith", key])
    # compress_to_fp16=False: the default halves the weights on disk, which costs accuracy.
    ov.save_model(ov_model, str(out), compress_to_fp16=False)
    return out


def convert_to_openvino(onnx_path: str | Path, out: str | Path) -> Path:
    """IR from an exported ONNX file, carrying over its depthsmith metadata (name, units)."""
    import onnx
    import openvino as ov

    proto = onnx.load(str(onnx_path), load_external_data=False)
    meta = {p.key.removeprefix("depthsmith."): p.value for p in proto.metadata_props if p.key.startswith("depthsmith.")}
    meta.setdefault("precision", "fp32")
    return save_openvino(ov.convert_model(str(onnx_path)), out, meta)


def read_metadata(ov_model: Any) -> dict[str, str]:
    return {k: str(ov_model.get_rt_info(["depthsmith", k]).astype(str))
            for k in META_KEYS if ov_model.has_rt_info(["depthsmith", k])}


class OpenVinoRunner(Runner):
    """Runs an IR (``.xml``) on the CPU with the given precision hint and thread count.

    ``static``: compile the model for each input shape it meets (reshaped from the IR's dynamic
    batch, height and width) instead of once for any shape. predict always runs at the model's
    working size, and a static shape lets the CPU plugin fold the shape arithmetic and plan fixed
    kernels and buffers: measured on DA-V2-Small at 518 x 518 (benchmarks/profile_vit.py, README),
    the ViT's attention and linear layers took 1.5x less time than in the dynamic-shape compile."""

    def __init__(self, path: str | Path, precision: str = "fp32", threads: int | None = None,
                 backend: str = "", static: bool = False) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"OpenVINO IR {self.path} does not exist "
                                    "(write one with `depthsmith export --format openvino`).")
        ov_core = core()
        try:
            ov_model = ov_core.read_model(str(self.path))
        except RuntimeError as err:  # OpenVINO's message ends with the line that says what is wrong
            lines = [line.strip() for line in str(err).splitlines() if line.strip()]
            raise WeightFileError(f"{self.path}: not a readable OpenVINO IR ({lines[-1] if lines else err}); expected "
                                  f"the .xml and the {self.path.stem}.bin beside it written by "
                                  "`depthsmith export --format openvino`.") from err
        meta = read_metadata(ov_model)
        self.name = meta.get("name", self.path.stem)
        self.is_metric = meta.get("is_metric", "True") == "True"
        self.max_depth = float(meta.get("max_depth") or "nan")
        self.file_precision = meta.get("precision", "fp32")
        self.precision = "int8" if self.file_precision == "int8" else precision
        self.backend = backend or f"openvino-{self.precision}"
        self.config = {"INFERENCE_PRECISION_HINT": HINTS[self.precision], "PERFORMANCE_HINT": "LATENCY",
                       "INFERENCE_NUM_THREADS": int(threads or usable_cores())}
        self.static = static
        self.model = ov_model  # kept for the static compiles: reshaped copies, the file read once
        self.requests: OrderedDict[tuple[int, ...], Any] = OrderedDict()  # input shape -> infer request
        if not static:
            self.requests[()] = ov_core.compile_model(ov_model, "CPU", self.config).create_infer_request()

    def request(self, shape: tuple[int, ...]) -> Any:
        """The infer request for inputs of ``shape``: one compiled model for every shape, or with
        ``static`` one compiled for this very shape (the last ``STATIC_SHAPES`` kept)."""
        key = shape if self.static else ()
        if key in self.requests:
            self.requests.move_to_end(key)
            return self.requests[key]
        ov_model = self.model.clone()
        ov_model.reshape(list(shape))
        # Compiling for a static shape takes 10 s to minutes on a ViT (measured: 50 s for DA-V2-Small at
        # 518 x 518 on a busy 2-core Xeon); OpenVINO's model cache (CACHE_DIR) makes the next process's
        # compile a 2 s load. Its key covers the model, the shape and the config.
        config = {**self.config, "CACHE_DIR": str(cache_dir() / "openvino-blobs")}
        self.requests[key] = core().compile_model(ov_model, "CPU", config).create_infer_request()
        while len(self.requests) > STATIC_SHAPES:
            self.requests.popitem(last=False)
        return self.requests[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.cpu().contiguous()
        request = self.request(tuple(x.shape))
        # share_inputs/outputs avoid copies; the output is copied once into a tensor we own,
        # because the request reuses its buffer on the next call.
        request.infer({0: x.numpy()}, share_inputs=True)
        return torch.from_numpy(request.get_output_tensor(0).data.copy())


def int8_conv_rate(channels: int = 256, height: int = 60, width: int = 80, repeats: int = 5) -> float:
    """GOP/s (a multiply-add counted as 2) of one 3x3 convolution quantized to int8 by NNCF and run
    by OpenVINO on the CPU: the int8 rate real int8 models can reach here (VNNI or AMX kernels),
    for the int8 floor of the benchmark. Best of ``repeats`` after a warm-up."""
    import time

    import nncf
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    x = ops.parameter([1, channels, height, width], np.float32, name="x")
    w = ops.constant(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.05)
    conv = ops.convolution(x, w, [1, 1], [1, 1], [1, 1], [1, 1])
    model = ov.Model([ops.relu(conv)], [x], "conv")
    data = [rng.random((1, channels, height, width), dtype=np.float32) for _ in range(4)]
    quantized = nncf.quantize(model, nncf.Dataset(data), subset_size=4, preset=nncf.QuantizationPreset.PERFORMANCE)
    compiled = core().compile_model(quantized, "CPU", {"PERFORMANCE_HINT": "LATENCY",
                                                         "INFERENCE_NUM_THREADS": usable_cores()})
    request = compiled.create_infer_request()
    request.infer({0: data[0]})
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        request.infer({0: data[0]})
        best = min(best, time.perf_counter() - start)
    return 2 * channels * channels * 9 * height * width / best / 1e9
