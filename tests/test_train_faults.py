"""Faults of real training processes: SIGKILL mid-epoch, at an epoch boundary and during
checkpoint writes, and a full disk. Each test starts ``depthsmith`` in a subprocess and kills
it with ``os.kill(pid, SIGKILL)``: nothing in the process gets a chance to clean up.

Smallest setup that shows the defects: test_resnet (it has BatchNorm, whose running
statistics record every batch seen) on 16 ray-cast 32x48 scenes, batch 2, hflip, 2 epochs.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import depthsmith

pytestmark = pytest.mark.slow

SRC = str(Path(depthsmith.__file__).resolve().parents[1])  # this checkout's code, in the children too
STEPS_PER_EPOCH = 8  # 16 samples, batch 2
ARGS = [
    "data.train={type: synthetic, num_samples: 16, size: [32, 48], seed: 0}",
    "data.val={type: synthetic, num_samples: 2, size: [32, 48], seed: 1}",
    "data.transforms=[hflip]", "data.batch_size=2", "data.num_workers=0",
    "trainer.max_epochs=2", "trainer.precision=fp32", "trainer.accelerator=cpu", "trainer.devices=1",
    "trainer.log_every_n_steps=1", "trainer.deterministic=true",
    "model.name=test_resnet", "model.decoder_kwargs={filters: [16, 8, 8, 8, 8]}",
    "final_eval=null", "logging.progress_bar=false", "logging.tensorboard=false",
    "checkpoint.every_n_train_steps=3",
]

# A real training process that, at the start of global step `pause_at`, says so (a marker file)
# and waits to be killed: the kill lands at a chosen point, with steps done since the last
# checkpoint that a resume must redo exactly.
CHILD = r"""
import json, sys, time
import lightning.pytorch as pl
from depthsmith.train import train

args = json.loads(sys.argv[1])

class PauseAt(pl.Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == args["pause_at"]:
            open(args["marker"], "w").close()
            time.sleep(600)

train("quickstart", args["overrides"], run_dir=args["run_dir"], callbacks=[PauseAt()])
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "DEPTHSMITH_RUN_DIR")}
    env.update(PYTHONPATH=SRC, OMP_NUM_THREADS="1")
    return env


def _cli(run_dir: Path, *extra: str, overrides=ARGS) -> list[str]:
    command = [sys.executable, "-m", "depthsmith.cli", "train", "--config", "quickstart", "--run-dir", str(run_dir)]
    for item in overrides:
        command += ["--set", item]
    return command + list(extra)


def _run(command: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=_env(), cwd=cwd, **kwargs)
    return done


def _ok(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _kill_at(run_dir: Path, step: int, cwd: Path) -> None:
    marker = cwd / f"paused-{step}"
    args = {"overrides": ARGS, "run_dir": str(run_dir), "pause_at": step, "marker": str(marker)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], env=_env(), cwd=cwd,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not marker.exists():
        assert child.poll() is None, child.stderr.read()[-3000:]
        assert time.time() < deadline, "the child never reached its pause point"
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stderr.close()


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint: weights, buffers and optimiser state, by a flat name."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    out = {f"state_dict/{k}": v for k, v in ckpt["state_dict"].items()}
    for i, opt in enumerate(ckpt["optimizer_states"]):
        for pid, state in opt["state"].items():
            out.update({f"optimizer{i}/{pid}/{k}": v for k, v in state.items() if torch.is_tensor(v)})
    return out


def _differences(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> list[str]:
    assert a.keys() == b.keys()
    return [k for k in a if not torch.equal(a[k], b[k])]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """One uninterrupted run: what every interrupted-and-resumed run must end as, bit for bit."""
    root = tmp_path_factory.mktemp("reference")
    _ok(_run(_cli(root / "run"), cwd=root))
    return root / "run"


@pytest.mark.parametrize("kill_step", [5, STEPS_PER_EPOCH], ids=["mid-epoch", "epoch-boundary"])
def test_sigkill_then_resume_is_bit_identical_to_an_uninterrupted_run(kill_step, reference, tmp_path):
    # mid-epoch: last.ckpt is the step-3 checkpoint, steps 3-4 were trained and are lost.
    # epoch boundary: last.ckpt is the end of epoch 0 (after validation).
    run = tmp_path / "run"
    _kill_at(run, kill_step, tmp_path)
    saved = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert saved["global_step"] == (3 if kill_step == 5 else STEPS_PER_EPOCH)
    _ok(_run(_cli(run, "--resume", overrides=()), cwd=tmp_path))
    a, b = _tensors(reference / "checkpoints/last.ckpt"), _tensors(run / "checkpoints/last.ckpt")
    bad = _differences(a, b)
    assert not bad, f"{len(bad)} of {len(a)} tensors differ, e.g. {bad[:3]}"
    assert not _differences(load_file(reference / "model/model.safetensors"), load_file(run / "model/model.safetensors"))
