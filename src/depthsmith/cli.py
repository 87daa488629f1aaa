"""Command line: parses arguments and calls ``depthsmith.commands``. No logic lives here.

Sub-commands import their module lazily so ``depthsmith --help`` stays fast. Choice lists
(protocols, alignment and crop modes, backends, benchmark rows) come from the registries.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from typing import Sequence

from .errors import InputError

__all__ = ["main", "build_parser"]


def _working_size(text: str):
    """An argparse type for --working-size: native, model or WxH (depthsmith.resize.parse_working_size)."""
    from .resize import parse_working_size

    try:
        return parse_working_size(text) or "model"
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


_WORKING_SIZE_HELP = ("network input size: model (default: the size the model was trained for, from its config), "
                      "native (each image at its own size) or WxH, e.g. 640x480")


def _int_at_least(minimum: int):
    """An argparse type: an integer >= ``minimum``, refused with the valid range otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer (give one >= {minimum})") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small: give an integer >= {minimum}")
        return value

    parse.__name__ = f"integer >= {minimum}"  # what argparse prints for a bad value
    return parse


def _cmap(text: str) -> str:
    """An argparse type: a matplotlib colour map name, checked before any model runs."""
    from .viz import check_cmap

    try:
        return check_cmap(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _protocol_names() -> list[str]:
    from .evaluate.protocols import PROTOCOLS

    return list(PROTOCOLS)


def _catalog(sub: argparse._SubParsersAction) -> None:
    def models(a: argparse.Namespace) -> int:
        from .commands.catalog import models_cli, zoo_cli

        return zoo_cli() if a.pretrained else models_cli()

    def recipes(a: argparse.Namespace) -> int:
        from .commands.catalog import recipes_cli

        return recipes_cli(keys=a.keys)

    s = sub.add_parser("models", help="list model presets and decoders (--pretrained: the pretrained zoo)")
    s.add_argument("--pretrained", action="store_true",
                   help="list the pretrained checkpoints: family, output kind, licence, working size, published "
                        "NYU/KITTI numbers, and whether each loads here (converter present, weights cached)")
    s.set_defaults(func=models)
    s = sub.add_parser("recipes", help="list the training recipes shipped with depthsmith")
    s.add_argument("--keys", action="store_true", help="list every config key --set takes: default, valid values")
    s.set_defaults(func=recipes)


def _train(sub: argparse._SubParsersAction) -> None:
    def run(a: argparse.Namespace) -> int:
        from .commands.train import train_cli

        return train_cli(a.config, a.set, run_dir=a.run_dir, resume=a.resume, devices=a.devices,
                         strategy=a.strategy, accelerator=a.accelerator)

    s = sub.add_parser("train", help="train a model from a recipe name or YAML file")
    s.add_argument("--config", required=True, help="recipe name (see `depthsmith recipes`) or a YAML path")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set optim.lr=3e-4 (repeatable)")
    s.add_argument("--run-dir", help="where to write the run (default runs/<recipe>-<time>)")
    s.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    s.add_argument("--devices", help="Lightning devices, e.g. 1, 2 or auto")
    s.add_argument("--strategy", help="Lightning strategy, e.g. ddp")
    s.add_argument("--accelerator", help="cpu, gpu or auto")
    s.set_defaults(func=run)


def _eval(sub: argparse._SubParsersAction) -> None:
    from .metrics import ALIGN_MODES, CROP_MODES
    from .metrics.clip_align import TEMPORAL_MODES

    def run(a: argparse.Namespace) -> int:
        from .commands.evaluate import evaluate_cli

        return evaluate_cli(a.model, a.data, protocol=a.protocol, flip_tta=a.flip_tta, align=a.align,
                            batch_size=a.batch_size, device=a.device, out_dir=a.out, report_dir=a.report,
                            min_depth=a.min_depth, max_depth=a.max_depth, seed_input=a.seed_input,
                            crop_mode=a.crop_mode, temporal=a.temporal, working_size=a.working_size)

    s = sub.add_parser("eval", help="evaluate a model on a dataset with a named protocol")
    s.add_argument("--model", required=True, action="append",
                   help="saved model folder or Hugging Face Hub id (repeat for several models)")
    s.add_argument("--data", required=True, action="append",
                   help="dataset config YAML (repeat for several datasets: one table, a row per model and "
                        "dataset; a config may set its own 'protocol' and 'crop_mode')")
    s.add_argument("--protocol", default="nyu-eigen", choices=_protocol_names(),
                   help="evaluation protocol (see the README's protocol table)")
    s.add_argument("--flip-tta", action="store_true", help="average with the flipped prediction")
    s.add_argument("--align", default="auto", choices=["auto", *ALIGN_MODES],
                   help="auto: the model's output kind decides (metric: none; relative: lstsq; disparity: "
                        "lstsq_disparity); median / lstsq fit in depth space, lstsq_disparity in disparity space")
    s.add_argument("--crop-mode", default="exact", choices=list(CROP_MODES),
                   help="a 480x640 crop on ground truth of another size: refuse (exact), scale it, or slice literally")
    s.add_argument("--working-size", type=_working_size, default="model",
                   help=_WORKING_SIZE_HELP + "; a protocol that fixes the input (seed) keeps its own")
    s.add_argument("--batch-size", type=_int_at_least(1), default=8)
    s.add_argument("--device", default="auto")
    s.add_argument("--min-depth", type=float, help="valid ground-truth range (protocol 'none')")
    s.add_argument("--max-depth", type=float)
    s.add_argument("--out", default="eval_out", help="folder for metrics.json and per_image.csv")
    s.add_argument("--report", help="also write a report (Markdown + figures) into this folder")
    s.add_argument("--seed-input", default="model", choices=["model", "raw"],
                   help="protocol seed only: 'raw' feeds RGB x/255 without the model's normalisation, as the "
                        "seed's evaluate.py did (labelled in the output)")
    s.add_argument("--temporal", default="none", choices=list(TEMPORAL_MODES),
                   help="video datasets (synthetic_video): the frames' temporal alignment before TAE and flicker, "
                        "as predict --temporal")
    s.set_defaults(func=run)


def _report(sub: argparse._SubParsersAction) -> None:
    def run(a: argparse.Namespace) -> int:
        from .commands.train import report_cli

        return report_cli(models=a.model, data=a.data, runs=a.run, out_dir=a.out, protocol=a.protocol,
                          device=a.device, error_maps=a.error_maps)

    s = sub.add_parser("report", help="tables and figures comparing models and training runs")
    s.add_argument("--model", action="append", default=[], help="model folder or hub id (repeatable)")
    s.add_argument("--data", action="append", help="dataset config for the metric table and qualitative grid "
                                                   "(repeat for several datasets: a row per model and dataset)")
    s.add_argument("--run", action="append", default=[], help="training run folder for curves (repeatable)")
    s.add_argument("--protocol", default="nyu-eigen", choices=_protocol_names())
    s.add_argument("--device", default="auto")
    s.add_argument("--error-maps", action="store_true", help="add absolute-error maps to the qualitative grid")
    s.add_argument("--out", required=True)
    s.set_defaults(func=run)


def _predict(sub: argparse._SubParsersAction) -> None:
    from .device import PRECISIONS
    from .metrics.clip_align import TEMPORAL_MODES
    from .runtime import backend_choices

    def run(a: argparse.Namespace) -> int:
        from .commands.predict import predict_cli

        return predict_cli(a.inputs, model=a.model, out_dir=a.out, outputs=a.save, cmap=a.cmap, backend=a.backend,
                           batch_size=a.batch_size, device=a.device, intrinsics=a.intrinsics,
                           precision=a.precision, max_side=a.max_side, compile=a.compile, temporal=a.temporal,
                           ply_every=a.ply_every, skip_existing=a.skip_existing, max_pixels=a.max_pixels,
                           working_size=a.working_size)

    s = sub.add_parser("predict", help="depth for images, folders, globs or videos")
    s.add_argument("inputs", nargs="+", help="image files, folders, glob patterns or videos (mp4/avi)")
    s.add_argument("--model", default=None,
                   help="saved model folder, Hub id, .pth, seed .keras file, exported .onnx or OpenVINO .xml file "
                        "(default: depth-anything/Depth-Anything-V2-Small-hf, Apache-2.0, fetched on first use)")
    s.add_argument("--out", required=True)
    s.add_argument("--save", nargs="+", default=["png16", "color"],
                   choices=["png16", "npy", "color", "side", "ply"], help="what to write per image")
    s.add_argument("--cmap", default="inferno_r", type=_cmap, help="matplotlib colour map of the colour images")
    s.add_argument("--max-pixels", type=_int_at_least(1), default=None,
                   help="largest image decoded (default Pillow's 89.5 million); larger JPEGs are decoded at 1/2, 1/4 "
                        "or 1/8 size to fit it (outputs at that size), other formats are refused")
    s.add_argument("--skip-existing", action="store_true",
                   help="skip inputs whose outputs are all in --out already (finish an interrupted run)")
    s.add_argument("--backend", default="auto", choices=backend_choices(),
                   help="auto: the fastest backend within 1%% of fp32, measured on the first batch and cached")
    s.add_argument("--precision", default="auto", choices=list(PRECISIONS),
                   help="auto: bf16 on CPUs/GPUs that have it, else fp32")
    s.add_argument("--max-side", type=_int_at_least(64), default=640,
                   help="with --working-size native: network input cap (>= 64); the depth is resized back to "
                        "each image's resolution")
    s.add_argument("--working-size", type=_working_size, default="model", help=_WORKING_SIZE_HELP)
    s.add_argument("--compile", action="store_true", help="torch.compile (faster after a long first call per size)")
    s.add_argument("--batch-size", type=_int_at_least(1), default=4)
    s.add_argument("--device", default="auto")
    s.add_argument("--intrinsics", nargs=4, type=float, metavar=("FX", "FY", "CX", "CY"),
                   help="camera intrinsics for .ply (default: NYU Kinect, scaled to the image); for a "
                        "Depth Anything 3 Metric model also the focal that turns its output into metres")
    s.add_argument("--temporal", default="auto", choices=list(TEMPORAL_MODES),
                   help="videos: align each frame's scale and shift to the clip (auto: align for relative and "
                        "disparity models, none for metric ones; align on a metric model: light scale smoothing); "
                        "filter: align, then filter each frame along the optical flow (needs OpenCV): least flicker")
    s.add_argument("--ply-every", type=_int_at_least(1), default=1,
                   help="videos with --save ply: one point cloud every N frames")
    s.set_defaults(func=run)


def _export(sub: argparse._SubParsersAction) -> None:
    def run(a: argparse.Namespace) -> int:
        from .commands.export import export_cli

        return export_cli(a.model, out=a.out, fmt=a.format, height=a.height, width=a.width, opset=a.opset,
                          int8=a.int8, calibration=a.calibration,
                          **({"tolerance": a.tolerance} if a.format == "openvino" else {}))

    def convert(a: argparse.Namespace) -> int:
        from .commands.export import convert_cli

        return convert_cli(a.checkpoint, a.out)

    s = sub.add_parser("export", help="export a model (ONNX or OpenVINO IR, dynamic height and width)")
    s.add_argument("--model", required=True)
    s.add_argument("--out", required=True, help="output file, e.g. model.onnx")
    s.add_argument("--format", default="onnx", choices=["onnx", "openvino"])
    s.add_argument("--int8", action="store_true", help="openvino: NNCF int8 post-training quantization")
    s.add_argument("--calibration", help="int8: dataset config YAML or image folder (default: synthetic rooms)")
    s.add_argument("--tolerance", type=float, default=0.02,
                   help="int8: largest mean relative difference from fp32 on held-out calibration images")
    s.add_argument("--height", type=_int_at_least(1), default=None,
                   help="example input height used for tracing/checking (default: a 480x640 photo at the model's "
                        "working size; 240 for a native model)")
    s.add_argument("--width", type=_int_at_least(1), default=None)
    s.add_argument("--opset", type=int, default=18)
    s.set_defaults(func=run)

    s = sub.add_parser("convert", help="the seed paper's Keras checkpoint (.keras) as a depthsmith model folder")
    s.add_argument("checkpoint", help="a .keras file saved by the seed notebook (e.g. irv2_unet_15.keras)")
    s.add_argument("--out", required=True, help="output folder (config.json + model.safetensors)")
    s.set_defaults(func=convert)


def _app(sub: argparse._SubParsersAction) -> None:
    from .runtime import backend_choices

    def run(a: argparse.Namespace) -> int:
        from .app import launch

        launch(a.model, host=a.host, port=a.port, max_pixels=a.max_pixels, max_file_mb=a.max_file_mb,
               backend=a.backend)
        return 0

    s = sub.add_parser("app", help="web page: upload an image, get its depth")
    s.add_argument("--model", required=True)
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=7860)
    s.add_argument("--max-pixels", type=_int_at_least(1), default=4096 * 4096)
    s.add_argument("--max-file-mb", type=float, default=20.0)
    s.add_argument("--backend", default="auto", choices=backend_choices())
    s.set_defaults(func=run)


def _bench(sub: argparse._SubParsersAction) -> None:
    from .bench import BACKENDS

    def run(a: argparse.Namespace) -> int:
        from .commands.bench import bench_cli

        return bench_cli(model=a.model, height=a.height, width=a.width, batch_sizes=a.batch_sizes,
                         backends=a.backends, repeats=a.repeats, smp_reference=a.smp, loaded=a.loaded)

    s = sub.add_parser("bench", help="inference latency and throughput per backend")
    s.add_argument("--model", default="enc-dec-irv2", help="preset name or saved model folder")
    # At least 2 pixels a side, the smallest image depth is estimated for (inference.MIN_INPUT_SIDE).
    s.add_argument("--height", type=_int_at_least(2), default=None, help="default: the model's working size "
                   "(240 if native)")
    s.add_argument("--width", type=_int_at_least(2), default=None, help="default: the model's working size "
                   "(320 if native)")
    s.add_argument("--batch-sizes", type=_int_at_least(1), nargs="+", default=[1, 8])
    s.add_argument("--backends", nargs="+", default=None, choices=list(BACKENDS), help="subset of backends to run")
    s.add_argument("--loaded", action="store_true",
                   help="also time every row with a busy-loop neighbour process on one core")
    s.add_argument("--repeats", type=_int_at_least(1), default=10)
    s.add_argument("--smp", action="store_true", help="add the segmentation_models_pytorch reference row")
    s.set_defaults(func=run)


def _data(sub: argparse._SubParsersAction) -> None:
    def check(a: argparse.Namespace) -> int:
        from .commands.train import data_check_cli

        return data_check_cli(a.config, a.out, max_samples=a.max_samples)

    dsub = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    s = dsub.add_parser("check", help="statistics, unreadable files and a preview grid of a dataset")
    s.add_argument("config", help="dataset config YAML")
    s.add_argument("--out", default="data_check")
    s.add_argument("--max-samples", type=_int_at_least(1))
    s.set_defaults(func=check)

    def video(a: argparse.Namespace) -> int:
        from .commands.video import data_video_cli

        return data_video_cli(a.out, a.path, a.frames, a.height, a.width, a.seed, a.fps)

    from .data.video import PATHS

    s = dsub.add_parser("video", help="a synthetic video with exact depth, poses and intrinsics (mp4 + ground truth)")
    s.add_argument("--out", required=True, help="folder for rgb.mp4, depth/*.npy, poses.npy, intrinsics.json")
    s.add_argument("--path", default="walk", choices=list(PATHS), help="camera path")
    s.add_argument("--frames", type=_int_at_least(2), default=200)
    s.add_argument("--height", type=_int_at_least(8), default=240)
    s.add_argument("--width", type=_int_at_least(8), default=320)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--fps", type=float, default=25.0)
    s.set_defaults(func=video)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="depthsmith", description="Monocular depth estimation: train, evaluate, deploy.")
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_catalog, _train, _eval, _report, _predict, _export, _app, _bench, _data):
        add(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command. Bad input ends with ``error: <message>`` and exit code 2, never a
    traceback: every reader, loader and check raises ``depthsmith.errors.InputError`` naming the
    file, the problem and what is valid; file-system errors name their path too. Anything else is a
    bug in depthsmith: its traceback is printed, with a line saying so, and the exit code is 1."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (InputError, OSError) as err:
        # Bad config, unknown names, unreadable files: the message already says what to fix.
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception:  # not the user's input: the traceback is what a bug report needs
        traceback.print_exc()
        print(f"depthsmith {_version()} failed with an internal error (a bug, not your input): please report it "
              "with the traceback above.", file=sys.stderr)
        return 1


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("depthsmith")
    except PackageNotFoundError:
        return "(not installed)"

if __name__ == "__main__":
    sys.exit(main())
