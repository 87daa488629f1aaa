"""Distributed data parallel through Lightning: 2 CPU processes (gloo), launched as a user would.

`--strategy ddp` makes Lightning re-run the command line once per extra process, so the run is
started through the CLI in a subprocess (inside pytest the re-launched command would be pytest).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

import depthsmith

ARGS = [
    "data.train={type: synthetic, num_samples: 8, size: [32, 48], seed: 0}",
    "data.val={type: synthetic, num_samples: 4, size: [32, 48], seed: 1}",
    "data.batch_size=2", "trainer.max_epochs=2", "trainer.precision=fp32", "trainer.log_every_n_steps=1",
    "model.name=test_resnet", "model.decoder_kwargs={filters: [32, 16, 16, 8, 8]}",
    "final_eval=null", "logging.progress_bar=false",
]


def test_two_process_ddp_run_on_cpu(tmp_path):
    run = tmp_path / "run"
    command = [sys.executable, "-m", "depthsmith.cli", "train", "--config", "quickstart", "--devices", "2",
               "--strategy", "ddp", "--accelerator", "cpu", "--run-dir", str(run)]
    for item in ARGS:
        command += ["--set", item]
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "DEPTHSMITH_RUN_DIR")}
    env["OMP_NUM_THREADS"] = "1"  # one thread per process: 2 processes on 2 cores
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    log = done.stdout + done.stderr
    assert "distributed_backend=gloo" in log and "Starting with 2 processes" in log
    summary = json.loads((run / "summary.json").read_text())
    # 8 samples over 2 processes of batch 2: 2 optimiser steps per epoch (4 on one process).
    assert summary["status"] == "ok" and summary["global_step"] == 4
    model = depthsmith.load_model(run / "model")
    assert torch.isfinite(model.eval()(torch.rand(1, 3, 32, 48))).all()
    assert (run / "checkpoints/last.ckpt").is_file() and (run / "checkpoints/best.ckpt").is_file()
