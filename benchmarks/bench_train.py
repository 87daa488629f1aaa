"""Training throughput: our Lightning Trainer vs a bare PyTorch loop doing the same steps.

Both sides train the paper's Enc-Dec-IRv2 (random init) at 240x320 on the same cached
synthetic batches, with the same optimiser (Adam-AMSGrad, encoder/decoder groups), loss
(paper preset, computed in float32) and precision (fp32, or bf16 autocast). Only steps in the
middle of the second epoch are timed (the first renders and caches the scenes), so the ratio
is the per-step cost of the Trainer (hooks, logging, the NaN guard, in-training RMSE/SSIM),
not of checkpoints or validation, which run once per epoch.

    python benchmarks/bench_train.py                       # fp32 and bf16, batch 4
    python benchmarks/bench_train.py --precisions bf16 --batch 8 --steps 10
"""

from __future__ import annotations

import argparse
import tempfile
import time

import lightning.pytorch as pl
import torch

from depthsmith.data import depth_to_target
from depthsmith.losses import build_loss
from depthsmith.train import resolve_config, train
from depthsmith.train.data import DepthDataModule
from depthsmith.train.module import build_model
from depthsmith.train.optim import build_optimizer

PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}


def bench_config(precision: str, batch: int, steps: int, warmup: int, height: int, width: int) -> list[str]:
    samples = batch * (steps + warmup)
    return [
        f"data.train={{type: synthetic, num_samples: {samples}, size: [{height}, {width}], seed: 0}}",
        "data.val_fraction=0", "data.num_workers=0", "data.cache=true", f"data.batch_size={batch}",
        "model.encoder_weights=null", "trainer.max_epochs=2", f"trainer.precision={PRECISIONS[precision]}",
        "trainer.accelerator=cpu", "trainer.devices=1", "logging.progress_bar=false", "trainer.log_every_n_steps=1",
    ]


class StepTimer(pl.Callback):
    """Wall time from the start of batch `warmup` to the start of the last batch, epoch 1 only."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.end, self.images = warmup, None, None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch != 1 or batch_idx < self.warmup:
            return
        now = time.perf_counter()
        if self.start is None:
            self.start = now
        else:
            self.end, self.images = now, self.images + self._last
        self._last = batch["image"].shape[0]


def run_trainer(overrides: list[str], warmup: int) -> float:
    timer = StepTimer(warmup)
    with tempfile.TemporaryDirectory() as tmp:
        result = train("enc-dec-irv2-nyu", overrides, run_dir=f"{tmp}/run", callbacks=[timer])
    assert result.ok, result.error
    return timer.images / (timer.end - timer.start)


def run_bare(overrides: list[str], warmup: int, bf16: bool) -> float:
    cfg = resolve_config("enc-dec-irv2-nyu", overrides)
    pl.seed_everything(0, verbose=False)
    data = DepthDataModule(cfg)
    loader = data.train_dataloader()
    model = build_model(cfg.model).train()
    optimizer = build_optimizer(model, cfg.optim)
    loss_fn = build_loss(cfg.loss)
    start = end = None
    images = last = 0
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if epoch == 1 and i >= warmup:
                now = time.perf_counter()
                if start is None:
                    start = now
                else:
                    end, images = now, images + last
                last = batch["image"].shape[0]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                pred = model.forward_normalized(batch["image"])
            target = depth_to_target(batch["depth"], batch["mask"], "metric", model.max_depth, model.min_depth)
            loss, _ = loss_fn(pred.float(), target, batch["mask"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return images / (end - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=list(PRECISIONS))
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=6, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of the timed epoch")
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--width", type=int, default=320)
    args = p.parse_args()
    rows = []
    for precision in args.precisions:
        # steps + 1 batches after warm-up: `steps` intervals between batch starts are timed.
        overrides = bench_config(precision, args.batch, args.steps + 1, args.warmup, args.height, args.width)
        bare = run_bare(overrides, args.warmup, bf16=precision == "bf16")
        ours = run_trainer(overrides, args.warmup)
        rows.append((precision, bare, ours))
        print(f"{precision}: bare {bare:.2f} img/s, trainer {ours:.2f} img/s", flush=True)
    print(f"\nEnc-Dec-IRv2 training, {args.height}x{args.width}, batch {args.batch}, "
          f"{torch.get_num_threads()} threads, {args.steps} timed steps")
    print("| precision | bare loop img/s | depthsmith Trainer img/s | overhead (bare / Trainer) |")
    print("|---|---|---|---|")
    for precision, bare, ours in rows:
        print(f"| {precision} | {bare:.2f} | {ours:.2f} | {bare / ours:.3f} |")


if __name__ == "__main__":
    main()
