"""AbsRel of a trained model on synthetic rooms rendered at several sizes, run at each image's own
size (``--working-size native``: what predict and eval did before models carried a working size)
and at the model's working size (the default now). README, "Working size".

    python benchmarks/bench_working_size.py --model runs/quickstart/model --sizes 96x128 240x320

Scored as the training run's held-out evaluation scores (protocol 'none', 0.001 m < gt < 10 m) on
rooms of seed 2, which training (seed 0) and validation (seed 1) never saw.
"""

from __future__ import annotations

import argparse

import depthsmith
from depthsmith.data import build_dataset
from depthsmith.evaluate import evaluate
from depthsmith.resize import describe_working_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--sizes", nargs="+", default=["96x128", "240x320"], help="room sizes, HxW")
    parser.add_argument("--rooms", type=int, default=200)
    a = parser.parse_args()
    model = depthsmith.load_model(a.model)
    print(f"model {a.model}: working size {describe_working_size(model.working_size)}")
    print("| rooms | run at | AbsRel | RMSE (m) | delta1 |\n|---|---|---|---|---|")
    for size in a.sizes:
        h, w = (int(v) for v in size.split("x"))
        rooms = build_dataset({"type": "synthetic", "num_samples": a.rooms, "size": [h, w], "seed": 2})
        data = [rooms[i] for i in range(len(rooms))]  # rendered once, scored twice
        for mode in ("native", "model"):
            r = evaluate(model, data, protocol="none", min_depth=1e-3, max_depth=10.0, device="cpu", progress=False,
                         working_size=mode)
            where = "own size (native, before)" if mode == "native" else "working size (now)"
            m = r.metrics
            print(f"| {h}x{w} | {where} | {m['abs_rel']:.3f} | {m['rmse']:.3f} | {m['d1']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
