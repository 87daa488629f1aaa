"""Inference benchmark: every backend side by side in one run, with its FLOP floor and accuracy.

    from depthsmith.bench import run_bench, bench_table
    print(bench_table(run_bench("enc-dec-irv2", 240, 320, batch_sizes=(1, 8))))

``inputs``: the accuracy images and the depth-head fit; ``rows``: one callable per row;
``run``: timing and the report; ``table``: the Markdown table.
"""

from ..flops import count_flops
from ..runtime.base import agreement
from .inputs import HELDOUT_SEED, fit_depth_head, real_frames, synthetic_rooms, synthetic_scene
from .rows import BACKENDS, default_backends
from .run import BenchReport, BenchRow, matmul_rate, run_bench
from .table import ceilings, bench_table

__all__ = ["run_bench", "bench_table", "ceilings", "BenchReport", "BenchRow", "BACKENDS", "default_backends",
           "matmul_rate", "count_flops", "agreement", "fit_depth_head", "synthetic_scene", "synthetic_rooms",
           "real_frames", "HELDOUT_SEED"]
