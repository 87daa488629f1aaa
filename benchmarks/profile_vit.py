"""Where a ViT depth model's CPU time goes: torch.profiler (fp32 eager, the torch-bf16 fast path) and
OpenVINO's per-layer performance counters (PERF_COUNT; its defaults: dynamic shapes, and a static
shape compiled for the working size), grouped into the same categories.

    python benchmarks/profile_vit.py --zoo-shape da-v2-small          # 518 x 518, batch 1
    python benchmarks/profile_vit.py --model path/to/saved/folder --size 518

Categories: attention (the q.k and attention.v matmuls with their softmax: torch's fused
scaled_dot_product_attention, OpenVINO's MHA subgraph), linear layers of the ViT (qkv and output
projections, MLP), LayerNorm / GELU and other element-wise work, convolutions of the DPT head by
the resolution they run at, resize (interpolate), layout (transpose/reorder/copies).
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path

import numpy as np
import torch


def _torch_category(name: str, shapes: list) -> str:
    if "scaled_dot_product" in name or name in ("aten::bmm", "aten::softmax", "aten::_softmax", "aten::baddbmm"):
        return "attention (q.k, softmax, attn.v)"
    if name in ("aten::linear", "aten::addmm", "aten::mm", "aten::matmul", "mkldnn::_linear_pointwise"):
        w = shapes[1] if len(shapes) > 1 and shapes[1] else []
        if len(w) == 2 and w[0] == 3 * w[1]:
            return "linear: qkv / proj"
        if len(w) == 2 and w[0] == w[1]:
            return "linear: qkv / proj"
        return "linear: MLP (fc1, fc2) and other"
    if name in ("aten::layer_norm", "aten::native_layer_norm", "aten::gelu"):
        return "LayerNorm / GELU"
    if "conv" in name:
        x = shapes[0] if shapes and shapes[0] else []
        return _conv_bucket(x[-2] if len(x) == 4 else 0)
    if "upsample" in name or "interpolate" in name:
        return "resize (interpolate)"
    if name in ("aten::copy_", "aten::contiguous", "aten::clone", "aten::to", "aten::_to_copy", "aten::permute",
                "aten::transpose", "aten::cat"):
        return "layout / copies / casts"
    return "other element-wise"


def _conv_bucket(h: int) -> str:
    return f"conv at {h} px high" if h else "conv"


def torch_profile(model: torch.nn.Module, x: torch.Tensor, label: str) -> dict[str, float]:
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        model(x)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            model(x)
    out: dict[str, float] = collections.Counter()
    # Top-level ops only (those no other op encloses), so nothing is counted twice.
    events = sorted(prof.events(), key=lambda e: (e.time_range.start, -e.time_range.end))
    end = -1.0
    for e in events:
        if e.time_range.start < end or not e.name.startswith(("aten::", "mkldnn::")):
            continue
        end = e.time_range.end
        out[_torch_category(e.name, e.input_shapes)] += e.cpu_time_total / 1e3
    print(f"{label}: {sum(out.values()):.0f} ms in top-level ops")
    return out


def openvino_profile(onnx_path: Path, size: int, static: bool) -> dict[str, float]:
    from depthsmith.runtime.openvino_ir import core

    model = core().read_model(str(onnx_path))
    if static:
        model.reshape([1, 3, size, size])
    compiled = core().compile_model(model, "CPU", {"PERF_COUNT": True})
    heights = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        shape = op.get_output_partial_shape(0) if op.get_output_size() else None
        four_d = shape is not None and shape.rank.is_static and shape.rank.get_length() == 4 and shape[2].is_static
        heights[op.get_friendly_name()] = shape[2].get_length() if four_d else 0
    request = compiled.create_infer_request()
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    request.infer({0: x})
    out: dict[str, float] = collections.Counter()
    calls = 2
    for _ in range(calls):
        request.infer({0: x})
        for p in request.profiling_info:
            ms = p.real_time.total_seconds() * 1e3 / calls
            t, name = p.node_type, p.node_name
            if "scaled_dot_product" in name or (t == "Subgraph" and "attention" in name):
                cat = "attention (q.k, softmax, attn.v)"
            elif t in ("FullyConnected", "MatMul"):
                cat = "linear: qkv / proj / MLP"
            elif t in ("MVN", "Gelu") or (t == "Subgraph"):
                cat = "LayerNorm / GELU" if t != "Subgraph" else "fused element-wise subgraphs"
            elif t.startswith("Convolution"):
                cat = _conv_bucket(heights.get(name, 0))
            elif t == "Interpolate":
                cat = "resize (interpolate)"
            elif t in ("Transpose", "Reorder", "Concat", "Reshape", "Slice"):
                cat = "layout / copies / casts"
            else:
                cat = "other element-wise"
            out[cat] += ms
    print(f"OpenVINO {'static' if static else 'dynamic'} ({compiled.get_property('INFERENCE_PRECISION_HINT')}): "
          f"{sum(out.values()):.0f} ms")
    return out


def main(argv: list[str] | None = None) -> int:
    import depthsmith
    from depthsmith.runtime.cache import cache_dir, exported_onnx
    from depthsmith.runtime.fast import fast_model

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo-shape", default="da-v2-small")
    p.add_argument("--model", help="a saved model folder instead of a zoo shape")
    p.add_argument("--size", type=int, default=518)
    args = p.parse_args(argv)
    if args.model:
        folder = Path(args.model)
    else:
        from depthsmith.bench.zoo import zoo_shape_folder

        folder = zoo_shape_folder(args.zoo_shape, cache_dir() / "bench-zoo")
    model = depthsmith.load_model(folder).eval()
    x = torch.rand(1, 3, args.size, args.size, generator=torch.Generator().manual_seed(0))
    print(f"load average {os.getloadavg()[0]:.1f}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    columns = {"torch fp32 eager": torch_profile(model, x, "torch fp32 eager"),
               "torch-bf16 fast path": torch_profile(fast_model(model, torch.device("cpu"), "bf16"),
                                                     x.contiguous(memory_format=torch.channels_last), "torch bf16")}
    onnx_path = exported_onnx(model)
    columns["OpenVINO defaults (dynamic)"] = openvino_profile(onnx_path, args.size, static=False)
    columns["OpenVINO static shape"] = openvino_profile(onnx_path, args.size, static=True)
    cats = sorted({c for col in columns.values() for c in col},
                  key=lambda c: -max(col.get(c, 0) for col in columns.values()))
    print("\n| category | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for c in cats:
        cells = []
        for col in columns.values():
            total = sum(col.values())
            cells.append(f"{col.get(c, 0):.0f} ms ({100 * col.get(c, 0) / total:.0f}%)" if c in col else "-")
        print(f"| {c} | " + " | ".join(cells) + " |")
    print("| total | " + " | ".join(f"{sum(col.values()):.0f} ms" for col in columns.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
