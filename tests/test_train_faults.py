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
    def _pause(self, trainer, hook):
        if [hook, trainer.global_step] == args["pause_at"]:
            open(args["marker"], "w").close()
            time.sleep(600)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._pause(trainer, "batch")

    def on_validation_start(self, trainer, pl_module):
        self._pause(trainer, "val")


class DiskFullAt(pl.Callback):
    # From global step N on, no file may grow past `limit` bytes: the next checkpoint write
    # fails with EFBIG (SIGXFSZ ignored), as on a full disk.
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == args["disk_full_at"]:
            import resource, signal
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (args["limit"], resource.RLIM_INFINITY))


callbacks = [PauseAt()] if "pause_at" in args else [DiskFullAt()]
result = train("quickstart", args["overrides"], run_dir=args["run_dir"], resume=args["resume"], callbacks=callbacks)
sys.exit(0 if result.ok else 1)
"""


# Random kills per test run; the README numbers come from longer runs of the same loop.
KILLS = int(os.environ.get("DEPTHSMITH_FAULT_KILLS", "3"))


def _snapshot(folder: Path) -> set[tuple[str, int]]:
    if not folder.is_dir():
        return set()
    return {(e.name, e.stat().st_mtime_ns) for e in os.scandir(folder) if e.is_file()}


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


def _kill_at(run_dir: Path, hook: str, step: int, cwd: Path, resume: bool = False) -> None:
    """Start (or resume) the run and SIGKILL it at the start of `hook` ("batch" or "val") at `step`."""
    marker = cwd / f"paused-{hook}-{step}"
    args = {"overrides": [] if resume else ARGS, "run_dir": str(run_dir), "pause_at": [hook, step],
            "marker": str(marker), "resume": resume}
    log = cwd / f"child-{hook}-{step}.log"  # a file, not a pipe: a full pipe would block the child
    with log.open("w") as stderr:
        child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], env=_env(), cwd=cwd,
                                 stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.time() + 120
            while not marker.exists():
                assert child.poll() is None, log.read_text()[-3000:]
                assert time.time() < deadline, "the child never reached its pause point"
                time.sleep(0.05)
        finally:
            _sigkill(child)


def _sigkill(child: subprocess.Popen) -> None:
    if child.poll() is None:
        os.kill(child.pid, signal.SIGKILL)
    child.wait()


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


def _assert_same_as(reference: Path, run: Path) -> None:
    a, b = _tensors(reference / "checkpoints/last.ckpt"), _tensors(run / "checkpoints/last.ckpt")
    bad = _differences(a, b)
    assert not bad, f"{len(bad)} of {len(a)} tensors differ, e.g. {bad[:3]}"
    model = "model/model.safetensors"
    assert not _differences(load_file(reference / model), load_file(run / model))


def test_sigkill_mid_epoch_then_resume_is_bit_identical_to_an_uninterrupted_run(reference, tmp_path):
    # last.ckpt is the step-3 checkpoint; steps 3-4 were trained and are lost. Before the
    # loader kept its position, the resumed epoch started again from its first batch.
    run = tmp_path / "run"
    _kill_at(run, "batch", 5, tmp_path)
    assert torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 3
    _ok(_run(_cli(run, "--resume", overrides=()), cwd=tmp_path))
    _assert_same_as(reference, run)


def test_resume_with_a_truncated_last_checkpoint_goes_on_from_the_previous_one(reference, tmp_path):
    # Checkpoints at steps 3 and 6: last.ckpt is step 6, previous.ckpt step 3. last.ckpt is then
    # cut in half (a bad copy, a failing disk): --resume names it and trains steps 3-15 again.
    run = tmp_path / "run"
    _kill_at(run, "batch", 7, tmp_path)
    last, previous = run / "checkpoints/last.ckpt", run / "checkpoints/previous.ckpt"
    assert torch.load(previous, map_location="cpu", weights_only=True)["global_step"] == 3
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2])
    done = _run(_cli(run, "--resume", overrides=()), cwd=tmp_path)
    _ok(done)
    assert f"{last} cannot be loaded" in done.stderr, done.stderr[-2000:]
    assert f"resuming from {previous} (step 3), the newest checkpoint that loads" in done.stderr
    _assert_same_as(reference, run)


def test_sigkill_before_the_first_checkpoint_at_an_epoch_boundary_and_in_validation(reference, tmp_path):
    """One run killed four times, resumed after each kill; it ends as the uninterrupted run."""
    run, last = tmp_path / "run", tmp_path / "run" / "checkpoints" / "last.ckpt"
    # Before any checkpoint only config.yaml is there: --resume starts the run afresh.
    _kill_at(run, "batch", 0, tmp_path)
    assert (run / "config.yaml").is_file() and not last.exists()
    # In epoch 0's validation: resumes from the step-6 checkpoint (none after an epoch's last
    # batch: Lightning resumes that one with its epoch counters one short, and a second kill
    # in epoch 1's validation then made the resumed run train a 17th step).
    _kill_at(run, "val", STEPS_PER_EPOCH, tmp_path, resume=True)
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == 6
    # Right after the epoch boundary: last.ckpt is the end of epoch 0, after its validation.
    _kill_at(run, "batch", STEPS_PER_EPOCH, tmp_path, resume=True)
    assert torch.load(last, map_location="cpu", weights_only=True)["global_step"] == STEPS_PER_EPOCH
    _kill_at(run, "val", 2 * STEPS_PER_EPOCH, tmp_path, resume=True)
    _ok(_run(_cli(run, "--resume", overrides=()), cwd=tmp_path))
    _assert_same_as(reference, run)


def test_sigkill_at_random_times_during_checkpoint_writes(reference, tmp_path):
    """Checkpoint every step and kill at random moments while they are written; after each
    kill the checkpoint on disk loads and --resume goes on; the end is the uninterrupted run."""
    run, folder = tmp_path / "run", tmp_path / "run" / "checkpoints"
    rng = random.Random(int(os.environ.get("DEPTHSMITH_FAULT_SEED", "0")))
    history = []
    args = ARGS + ["checkpoint.every_n_train_steps=1"]  # training itself is the same as the reference's
    kills = mid_write = 0
    while kills < KILLS:
        command = _cli(run, "--resume", overrides=()) if kills else _cli(run, overrides=args)
        before = _snapshot(folder)
        child = subprocess.Popen(command, env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            deadline = time.time() + 120
            while _snapshot(folder) == before and child.poll() is None:  # until it writes checkpoints
                assert time.time() < deadline
                time.sleep(0.01)
            time.sleep(rng.uniform(0, 0.4))
        finally:
            _sigkill(child)
        if child.returncode == 0:  # the run finished first (long loops: DEPTHSMITH_FAULT_KILLS)
            assert kills, "the run ended before it could be killed"
            break
        assert child.returncode == -signal.SIGKILL, f"the run failed on its own (exit {child.returncode})"
        kills += 1
        mid_write += any(p.name.endswith(".tmp") for p in folder.iterdir())
        if not (folder / "last.ckpt").exists():  # killed during the very first checkpoint write
            assert not history, f"last.ckpt vanished after kills at {history}"
            continue  # --resume starts the run afresh
        ckpt = torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)  # never truncated
        progress = ckpt["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]
        history.append((ckpt["global_step"], progress["processed"], progress["completed"]))
    done = _run(_cli(run, "--resume", overrides=()), cwd=tmp_path)
    assert done.returncode == 0, f"after kills at (step, processed, completed) {history}: {done.stderr[-2000:]}"
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]  # orphans cleaned on start
    _assert_same_as(reference, run)
    print(f"\n{kills} kills, {mid_write} of them during a checkpoint write (temp file left); all resumed "
          "bit-identical")


def test_disk_full_during_a_checkpoint_write_keeps_the_previous_one(tmp_path):
    run = tmp_path / "run"
    # The step-3 checkpoint is written; from step 4 on no file may grow past 64 kB.
    args = {"overrides": ARGS, "run_dir": str(run), "disk_full_at": 4, "limit": 64_000, "resume": False}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], env=_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode != 0
    assert "File too large" in done.stderr and "last.ckpt is unchanged" in done.stderr, done.stderr[-2000:]
    folder = run / "checkpoints"
    assert torch.load(folder / "last.ckpt", map_location="cpu", weights_only=True)["global_step"] == 3
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]
