"""Inference benchmark: one table, every backend side by side, measured in one run.

    python benchmarks/bench_inference.py                 # the paper's model, 240x320, batch 1 and 8
    python benchmarks/bench_inference.py --no-smp --backends fp32 predict

Same code as `depthsmith bench` (depthsmith.bench); this script adds the segmentation_models_pytorch
reference row by default and, when the repository's shared NYU sample is present, fits the random
preset's depth head to that real frame's depth for the accuracy columns.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from depthsmith.bench import BACKENDS, bench_cli

NYU_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "metric3d_nyu"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="enc-dec-irv2", help="preset name or saved model folder")
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    p.add_argument("--backends", nargs="+", choices=list(BACKENDS), default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-smp", action="store_true", help="leave out the smp Unet reference row")
    p.add_argument("--image", help="RGB for the accuracy columns (default: the shared NYU sample if present)")
    p.add_argument("--depth", help="16-bit PNG depth (mm) of --image, used to fit a random preset's head")
    args = p.parse_args(argv)
    image, depth = args.image, args.depth
    if image is None and (NYU_SAMPLE / "00000_rgb.png").is_file():
        image, depth = NYU_SAMPLE / "00000_rgb.png", NYU_SAMPLE / "00000_depth.png"
    return bench_cli(model=args.model, height=args.height, width=args.width, batch_sizes=args.batch_sizes,
                     backends=args.backends, repeats=args.repeats, smp_reference=not args.no_smp,
                     image=image, depth=depth)


if __name__ == "__main__":
    sys.exit(main())
