"""ONNX Runtime: the session settings and a runner for exported ``.onnx`` files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, MissingInputError

__all__ = ["onnx_session", "OnnxRunner"]


def onnx_session(path: str | Path, threads: int | None = None, lean: bool = False) -> Any:
    """ONNX Runtime session: all graph optimisations (conv + BN + activation fusion), one
    intra-op thread per core, CUDA first when onnxruntime-gpu is installed. ``lean``: no memory arena
    and no prepacked copy of the weights, for a few calls where memory matters more than speed (the
    export check: Depth Pro's 3.8 GB at 1536 x 1536 ran out of 24 GB with both)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads is None:  # the cores this process may use (0 = let ONNX Runtime decide)
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # By default idle ONNX Runtime threads spin after each run, taking the cores from whatever
    # runs next in this process (PyTorch, the next frame's decoding): measured, a PyTorch call
    # right after an ONNX Runtime call was 35% slower on 2 cores. Not spinning is also what keeps
    # it fast when another process shares the cores.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if lean:
        opts.enable_cpu_mem_arena = False
        opts.enable_mem_pattern = False
        opts.add_session_config_entry("session.disable_prepacking", "1")
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
    return ort.InferenceSession(str(path), opts, providers=providers)


class OnnxRunner:
    """Calls an exported depth model: B x 3 x H x W float32 array in, B x 1 x H x W depth out."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise MissingInputError(f"ONNX file {self.path} does not exist (write one with `depthsmith export`).")
        try:
            self.session = onnx_session(self.path, threads)
        except Exception as err:  # ONNX Runtime raises its own types (InvalidProtobuf, Fail, ...) for bad files
            raise InputError(f"{self.path}: not a valid ONNX model ({type(err).__name__}: {str(err)[:300]}); "
                             "expected a file written by `depthsmith export`.") from err
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise InputError(f"{self.path}: an ONNX model with inputs {[(i.name, i.shape) for i in inputs]}; a depth "
                             "model written by `depthsmith export` takes one B x 3 x H x W input.")
        meta = self.session.get_modelmeta().custom_metadata_map
        self.name = meta.get("depthsmith.name", self.path.stem)
        self.is_metric = meta.get("depthsmith.is_metric", "True") == "True"
        self.max_depth = float(meta.get("depthsmith.max_depth") or "nan")
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
