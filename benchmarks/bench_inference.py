"""Inference benchmark: one table, every backend side by side, measured in one run, and the targets.

    python benchmarks/bench_inference.py                       # the paper's model, 240x320, batch 1 and 8
    python benchmarks/bench_inference.py --loaded              # + every row again with a busy neighbour
    python benchmarks/bench_inference.py --train-quickstart 4  # accuracy of a trained model (4 epochs)
    python benchmarks/bench_inference.py --no-smp --backends fp32 predict openvino-int8
    python benchmarks/bench_inference.py --zoo-shape da-v2-small  # a zoo shape, random weights, batch 1, peers
    python benchmarks/bench_inference.py --zoo-shape depth-pro    # ~19 TFLOP a call: one timed call per row

Same code as `depthsmith bench` (depthsmith.bench); this script adds the segmentation_models_pytorch
reference row by default, fits a random preset's depth head to the shared NYU sample's depth when
present, measures accuracy on the real frames under shared/data/real/ when present, and checks the
targets of issue #15 (below). Targets live here, not in the library.

``--zoo-shape``: a model shaped like a zoo checkpoint (depthsmith.bench.zoo: transformers config,
random weights, read through the real converter) at its working size, batch 1, with ONNX Runtime and
OpenVINO at their own default settings on the same ONNX file, and issue #19's targets.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from depthsmith.bench import BACKENDS, BenchReport
from depthsmith.commands.bench import bench_cli

SHARED_REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
NYU_SAMPLE = SHARED_REAL / "metric3d_nyu"

# Issue #15's targets.
MAX_DEFAULT_REL_DIFF = 0.01  # predict default: mean relative difference from fp32
INT8_SPEEDUP = 3.0  # int8 vs fp32 eager
INT8_MAX_REL_DIFF = 0.02
INT8_MIN_DELTA1 = 0.98
BF16_MAX_X_FLOOR = 1.2  # the bf16 path within this factor of its floor, on CPUs with native bf16
FP32_PEERS = ("onnx", "openvino-fp32")

# Issue #19's targets, for zoo shapes.
ZOO_PEER_SPEEDUP = 1.5  # predict default vs each runtime at its own default settings, same ONNX file
ZOO_MAX_X_FLOOR = 2.0  # predict default within this factor of its floor on native-bf16 CPUs
ZOO_ROWS = ["fp32", "torch-bf16", "openvino-bf16", "ort-default", "openvino-default", "predict"]
# Depth Pro-shaped: ~19 TFLOP a call (a minute or more each here) and 3.8 GB of fp32 weights, which
# every row holds a copy of: the reference, the two peers and predict (whose auto probes the backends,
# torch-bf16 and openvino-bf16 among them, keeping only the fastest so far: runtime/auto.py).
ZOO_ROWS_BIG = ["fp32", "ort-default", "openvino-default", "predict"]
BIG_SHAPES = ("depth-pro",)


def zoo_targets(report: BenchReport) -> list[str]:
    """Issue #19: predict default >= 1.5x each peer at its own defaults, <= 1% from fp32, <= 2x its floor."""
    from depthsmith.cpu import has_native_bf16

    row = {r.backend: r for r in report.rows if r.batch == 1}
    default = row.get("predict")
    if default is None:
        torch_rows = [r for r in row.values() if r.backend in ("torch-bf16", "fp32")]
        if not torch_rows:
            return ["NOT MEASURED: the targets need predict's default row and a torch row"]
        best = min(torch_rows, key=lambda r: r.latency_ms)
        # (a refused export is printed above the table, by zoo_bench)
        return [f"NOT MEASURED: the targets need predict's default row; fastest torch row {best.backend} "
                f"{best.latency_ms:.0f} ms, {best.latency_ms / best.floor_ms:.2f}x its floor, "
                f"{100 * best.rel_diff:.3f}% from fp32"]
    out = []
    for peer in ("ort-default", "openvino-default"):
        if peer in row:
            ratio = row[peer].latency_ms / default.latency_ms
            verdict = "MET" if ratio >= ZOO_PEER_SPEEDUP else "NOT MET"
            out.append(f"{verdict}: predict default {default.latency_ms:.0f} ms is {ratio:.2f}x faster than {peer} "
                       f"{row[peer].latency_ms:.0f} ms (target >= {ZOO_PEER_SPEEDUP}x)")
    out.append(f"{'MET' if default.rel_diff <= MAX_DEFAULT_REL_DIFF else 'NOT MET'}: predict default mean rel diff "
               f"from fp32 {100 * default.rel_diff:.3f}% (real frames {100 * default.rel_diff_real:.3f}%; target <= "
               f"{100 * MAX_DEFAULT_REL_DIFF:g}%)")
    if has_native_bf16():
        x_floor = default.latency_ms / (1000.0 * default.gflops / report.rates["bf16"])
        out.append(f"{'MET' if x_floor <= ZOO_MAX_X_FLOOR else 'NOT MET'}: predict default at {x_floor:.2f}x its bf16 "
                   f"floor (target <= {ZOO_MAX_X_FLOOR}x; {report.gflops:.1f} GFLOPs at the measured bf16 GEMM rate "
                   f"{report.rates['bf16']:.0f} GFLOP/s)")
    else:
        out.append("floor target not applicable: this CPU has no native bf16 (avx512_bf16/amx_bf16)")
    return out


def zoo_bench(name: str, args: argparse.Namespace) -> int:
    from depthsmith.bench.zoo import ZOO_SHAPES, zoo_shape_folder
    from depthsmith.runtime.cache import cache_dir, export_failure

    import depthsmith

    folder = zoo_shape_folder(name, cache_dir() / "bench-zoo")
    size = ZOO_SHAPES[name][1]
    refused = export_failure(depthsmith.load_model(folder))
    big = refused or name in BIG_SHAPES  # accuracy on the one synthetic room, one timed call per row
    backends = args.backends or (["fp32", "torch-bf16"] if refused else ZOO_ROWS_BIG if big else ZOO_ROWS)
    print(f"zoo shape {name}: {ZOO_SHAPES[name][0]}; random weights (seed 0) saved to {folder}, read by "
          f"depthsmith.load_model; {size}x{size}, batch 1")
    if refused:
        print(f"ONNX export refused, so ONNX Runtime and OpenVINO (the peers, and predict's ONNX-based candidates) "
              f"cannot run it: {refused}")
    print(f"load average before the run: {os.getloadavg()[0]:.2f}")
    return bench_cli(model=str(folder), height=size, width=size, batch_sizes=[1], backends=backends,
                     repeats=args.repeats, smp_reference=False, image=None, depth=None,
                     rooms=0 if big else args.rooms, real_dir=None if big else args.real_dir,
                     quick=bool(big), extra=zoo_targets)


def targets(report: BenchReport) -> list[str]:
    """MET / NOT MET per target and batch, with the measured numbers and, where unmet, the ceiling."""
    from depthsmith.cpu import has_int8_dot, has_native_bf16

    out = []
    for batch in sorted({r.batch for r in report.rows}):
        row = {r.backend: r for r in report.rows if r.batch == batch}
        base, default = row.get("fp32"), row.get("predict")
        peers = [row[p] for p in FP32_PEERS if p in row]
        if default is not None and peers:
            fastest = min(peers, key=lambda r: r.latency_ms)
            ok = default.latency_ms <= fastest.latency_ms and default.rel_diff <= MAX_DEFAULT_REL_DIFF
            out.append(f"{'MET' if ok else 'NOT MET'}: batch {batch}, predict default {default.latency_ms:.1f} ms vs "
                       f"fastest fp32 peer {fastest.backend} {fastest.latency_ms:.1f} ms, mean rel diff "
                       f"{100 * default.rel_diff:.3f}% (target <= {100 * MAX_DEFAULT_REL_DIFF:g}%)"
                       + _loaded(default, fastest))
        int8 = row.get("openvino-int8")
        if int8 is not None and base is not None:
            ok = (int8.speedup >= INT8_SPEEDUP and int8.rel_diff <= INT8_MAX_REL_DIFF
                  and int8.delta1 >= INT8_MIN_DELTA1)
            ceiling = base.latency_ms / int8.floor_ms
            failed = [what for what, bad in (("speed", int8.speedup < INT8_SPEEDUP),
                                             ("accuracy", int8.rel_diff > INT8_MAX_REL_DIFF
                                              or int8.delta1 < INT8_MIN_DELTA1)) if bad]
            why = "" if ok else (f"; unmet: {' and '.join(failed)}; speed ceiling: an int8 path at its floor would be "
                                 f"{ceiling:.2f}x fp32 eager"
                                 + ("" if has_int8_dot() else " (no VNNI/AMX: int8 is not accelerated here)")
                                 + ("; accuracy depends on the calibration images: the int8 row is calibrated on "
                                    "synthetic rooms, give real ones with export --calibration" if "accuracy" in failed
                                    else ""))
            real = "" if int8.rel_diff_real != int8.rel_diff_real else \
                f", real frames {100 * int8.rel_diff_real:.3f}% / delta1 {int8.delta1_real:.4f}"
            out.append(f"{'MET' if ok else 'NOT MET'}: batch {batch}, int8 {int8.speedup:.2f}x fp32 eager (target >= "
                       f"{INT8_SPEEDUP:g}x), mean rel diff {100 * int8.rel_diff:.3f}% (<= {100 * INT8_MAX_REL_DIFF:g}%), "
                       f"delta1 {int8.delta1:.4f} (>= {INT8_MIN_DELTA1}){real}{why}")
        bf16 = [r for r in row.values() if r.precision == "bf16" and r.backend in ("predict", "torch-bf16", "openvino-bf16")]
        if bf16 and has_native_bf16():
            best = min(bf16, key=lambda r: r.latency_ms / r.floor_ms)
            x_floor = best.latency_ms / best.floor_ms
            out.append(f"{'MET' if x_floor <= BF16_MAX_X_FLOOR else 'NOT MET'}: batch {batch}, best bf16 path "
                       f"{best.backend} at {x_floor:.2f}x its floor (target <= {BF16_MAX_X_FLOOR}x; floor from the "
                       "measured bf16 GEMM rate)")
    if not has_native_bf16():
        out.append("bf16 target not applicable: this CPU has no native bf16 (avx512_bf16/amx_bf16)")
    return out


def _loaded(default, peer) -> str:
    if default.loaded_ms != default.loaded_ms:
        return ""
    return f"; with a busy neighbour: predict {default.loaded_ms:.1f} ms vs {peer.backend} {peer.loaded_ms:.1f} ms"


def train_quickstart(epochs: int) -> Path:
    """The quickstart recipe trained for ``epochs`` (cached under $DEPTHSMITH_CACHE) -> its model folder."""
    from depthsmith.runtime.cache import cache_dir
    from depthsmith.train import train

    run_dir = cache_dir() / f"bench-quickstart-{epochs}ep"
    if (run_dir / "model" / "config.json").is_file():
        return run_dir / "model"
    result = train("quickstart", [f"trainer.max_epochs={epochs}", "logging.progress_bar=false"], run_dir=run_dir)
    if not result.ok:
        raise SystemExit(f"training the quickstart recipe failed: {result.summary}")
    return Path(result.model_dir)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="enc-dec-irv2", help="preset name or saved (trained) model folder")
    p.add_argument("--zoo-shape", choices=["da-v2-small", "depth-pro"],
                   help="benchmark a zoo-shaped model (random weights) against its peers' defaults; see above")
    p.add_argument("--train-quickstart", type=int, metavar="EPOCHS",
                   help="train the quickstart recipe this many epochs and benchmark that trained model")
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--backends", nargs="+", choices=list(BACKENDS), default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rooms", type=int, default=3, help="held-out synthetic rooms for the accuracy columns")
    p.add_argument("--real-dir", default=str(SHARED_REAL), help="folder with *_rgb frames for accuracy")
    p.add_argument("--loaded", action="store_true", help="also time every row with a busy-loop neighbour")
    p.add_argument("--no-smp", action="store_true", help="leave out the smp Unet reference row")
    p.add_argument("--image", help="RGB for the accuracy columns (default: the shared NYU sample if present)")
    p.add_argument("--depth", help="16-bit PNG depth (mm) of --image, used to fit a random preset's head")
    args = p.parse_args(argv)
    if args.zoo_shape:
        return zoo_bench(args.zoo_shape, args)
    model = str(train_quickstart(args.train_quickstart)) if args.train_quickstart else args.model
    image, depth = args.image, args.depth
    if image is None and (NYU_SAMPLE / "00000_rgb.png").is_file():
        image, depth = NYU_SAMPLE / "00000_rgb.png", NYU_SAMPLE / "00000_depth.png"
    print(f"load average before the run: {os.getloadavg()[0]:.2f}")
    return bench_cli(model=model, height=args.height, width=args.width, batch_sizes=args.batch_sizes,
                     backends=args.backends, repeats=args.repeats, smp_reference=not args.no_smp,
                     image=image, depth=depth, rooms=args.rooms, real_dir=args.real_dir, loaded=args.loaded,
                     extra=targets)


if __name__ == "__main__":
    sys.exit(main())
