"""End-to-end training runs on tiny synthetic data: one per recipe family, resume, NaN guard,
encoder freezing, atomic checkpoints and the held-out baseline."""

from __future__ import annotations

import csv
import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch

import depthsmith
from depthsmith.train import train
from depthsmith.train.callbacks import AtomicCheckpointIO
from depthsmith.train.holdout import best_constant_abs_rel, best_constant_d1
from helpers import SMALL_UNET, TINY

VAL = "data.val={type: synthetic, num_samples: 4, size: [32, 48], seed: 1}"

# One tiny run per recipe family, on a tiny timm test encoder with the family's decoder.
FAMILIES = {
    "enc-dec-irv2-nyu": ["model.name=test_resnet", SMALL_UNET],  # val split off the train list (0.3)
    "enc-dec-irv2-nyu-seed": ["model.name=test_resnet", SMALL_UNET],
    "convnext-unet-report": ["model.name=test_convnext", "model.decoder=residual_unet",
                             "model.decoder_kwargs={decoder_channels: [16, 16, 8, 8, 8]}", "trainer.max_epochs=2"],
    "resnet50-transposed-report": ["model.name=test_resnet", "model.decoder=transposed",
                                   "model.encoder_kwargs={out_indices: [4]}", "trainer.max_epochs=2"],
    "densedepth-nyu": ["model.name=test_resnet", "model.decoder=densedepth", "data.val_fraction=0.25"],
    "quickstart": ["model.name=test_resnet", SMALL_UNET, VAL,
                   "final_eval={type: synthetic, num_samples: 4, size: [32, 48], seed: 2}"],
}


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def read_csv(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class CheckPlugins(pl.Callback):
    def on_fit_start(self, trainer, pl_module):
        assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)


@pytest.mark.parametrize("recipe", list(FAMILIES))
def test_tiny_run_per_recipe_family_writes_a_loadable_model(recipe, tmp_path):
    run = tmp_path / "run"
    result = train(recipe, TINY + FAMILIES[recipe], run_dir=run, callbacks=[CheckPlugins()])
    assert result.ok, result.error
    for name in ("config.yaml", "metrics.csv", "summary.json", "checkpoints/last.ckpt", "checkpoints/best.ckpt",
                 "model/config.json", "model/model.safetensors"):
        assert (run / name).is_file(), name
    assert any((run / "tb").iterdir())
    model = depthsmith.load_model(result.model_dir)
    out = model.eval()(torch.rand(1, 3, 32, 48))
    assert out.shape == (1, 1, 32, 48) and torch.isfinite(out).all()
    # Per-epoch keys exactly as the report code reads them.
    rows = read_csv(run / "metrics.csv")
    keys = set().union(*[{k for k, v in r.items() if v} for r in rows])
    # The report's recipes measure train RMSE/SSIM with an evaluation pass, the others with running means.
    train_keys = {"train_eval/rmse", "train_eval/ssim"} if recipe.endswith("-report") else {"train/rmse", "train/ssim"}
    assert {"epoch", "train/loss", "val/loss", "val/rmse", "val/ssim", "val/abs_rel", "val/d1"} | train_keys <= keys
    if recipe.endswith("-report"):
        assert "train/rmse" not in keys  # no running-mean numbers beside the evaluation pass
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["model_dir"] == str(result.model_dir)
    assert result.best["val/rmse"] == pytest.approx(min(float(r["val/rmse"]) for r in rows if r["val/rmse"]))
    if recipe == "quickstart":
        holdout = summary["holdout"]
        assert set(holdout) >= {"model", "constant_abs_rel", "constant_d1"}
        assert holdout["n_images"] == 4


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


class StopAt(pl.Callback):
    """Simulates a crash in the middle of an epoch (the previous epoch's last.ckpt is on disk)."""

    def __init__(self, epoch, batch):
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise RuntimeError("simulated crash")


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path):
    # OneCycle + AdamW with two lr groups + flips: every piece of state has to come back.
    overrides = TINY + ["model.name=test_resnet", SMALL_UNET, "data.batch_size=2", "trainer.max_epochs=2",
                        "trainer.deterministic=true", "data.val_fraction=0.25"]
    straight = train("convnext-unet-report", overrides, run_dir=tmp_path / "straight")
    assert straight.ok
    with pytest.raises(RuntimeError, match="simulated crash"):
        train("convnext-unet-report", overrides, run_dir=tmp_path / "crashed", callbacks=[StopAt(1, 2)])
    assert _weights(tmp_path / "crashed/checkpoints/last.ckpt") is not None
    resumed = train("convnext-unet-report", run_dir=tmp_path / "crashed", resume=True)
    assert resumed.ok
    a, b = _weights(tmp_path / "straight/checkpoints/last.ckpt"), _weights(tmp_path / "crashed/checkpoints/last.ckpt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # The metrics file was appended to, not restarted, and rows logged after the checkpoint
    # (before the crash) were dropped, not duplicated.
    rows = read_csv(tmp_path / "crashed/metrics.csv")
    assert [r["epoch"] for r in rows if r.get("train/loss")] == ["0", "1"]
    steps = [r["step"] for r in rows if r.get("train/loss_step")]
    assert steps == [r["step"] for r in read_csv(tmp_path / "straight/metrics.csv") if r.get("train/loss_step")]


def test_resume_refuses_a_run_dir_without_checkpoint_and_a_new_run_refuses_a_used_one(tmp_path):
    from depthsmith.train import ConfigError

    with pytest.raises(ConfigError, match="config.yaml not found"):
        train("quickstart", run_dir=tmp_path / "nothing", resume=True)
    run = tmp_path / "run"
    assert train("quickstart", TINY + FAMILIES["quickstart"] + ["final_eval=null"], run_dir=run).ok
    with pytest.raises(ConfigError, match="--resume"):
        train("quickstart", TINY + FAMILIES["quickstart"], run_dir=run)


class PoisonAtStep(pl.Callback):
    """Makes the model produce NaN from global step `step` on (as a diverged weight would)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            with torch.no_grad():
                next(pl_module.model.decoder.parameters()).fill_(float("nan"))


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    run = tmp_path / "run"
    # 2 steps per epoch; the poison comes at global step 3, in epoch 1.
    result = train("quickstart", TINY + FAMILIES["quickstart"] + ["trainer.max_epochs=3", "final_eval=null"],
                   run_dir=run, callbacks=[PoisonAtStep(3)])
    assert not result.ok
    assert "global step 3" in result.error and "not finite" in result.error
    assert str(run / "checkpoints" / "last.ckpt") in result.error
    assert "global step 3" in capsys.readouterr().err
    ckpt = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2  # end of epoch 0: the last good state
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    assert not (run / "model").exists()


def test_a_kill_during_checkpoint_save_leaves_the_previous_file_loadable(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "global_step": 1}, path)

    def dies_half_way(checkpoint, handle):
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # what a kill looks like from inside the process

    monkeypatch.setattr(AtomicCheckpointIO, "_write", staticmethod(dies_half_way))
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "global_step": 2}, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded["global_step"] == 1 and torch.equal(loaded["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left behind


class RecordEncoder(pl.Callback):
    def __init__(self):
        self.snapshots = []

    def _snap(self, pl_module):
        return {k: v.detach().clone() for k, v in pl_module.model.encoder.state_dict().items()}

    def on_train_start(self, trainer, pl_module):
        self.snapshots.append(self._snap(pl_module))

    def on_train_epoch_end(self, trainer, pl_module):
        self.snapshots.append(self._snap(pl_module))


def test_encoder_freezing_keeps_weights_and_batchnorm_statistics(tmp_path):
    recorder = RecordEncoder()
    result = train("quickstart", TINY + FAMILIES["quickstart"] + ["freeze_encoder_epochs=1", "trainer.max_epochs=2",
                                                                  "final_eval=null"],
                   run_dir=tmp_path / "run", callbacks=[recorder])
    assert result.ok
    start, after_frozen, after_free = recorder.snapshots
    for key in start:  # weights and running_mean / running_var alike
        assert torch.equal(start[key], after_frozen[key]), key
    assert any(not torch.equal(after_frozen[k], after_free[k]) for k in start if k.endswith("weight"))


def test_best_constants_are_optimal():
    rng = np.random.default_rng(0)
    gts = [rng.uniform(0.5, 9.5, size=n) for n in (50, 120, 80)]
    grid = np.linspace(0.5, 9.5, 20001)

    def abs_rel(c):
        return np.mean([np.mean(np.abs(c - g) / g) for g in gts])

    def d1(c):
        return np.mean([np.mean(np.maximum(c / g, g / c) < 1.25) for g in gts])

    c = best_constant_abs_rel(gts)
    assert abs_rel(c) <= min(abs_rel(x) for x in grid) + 1e-12
    assert d1(best_constant_d1(gts)) >= max(d1(x) for x in grid[::10]) - 1e-9


def test_bf16_with_gradient_accumulation_and_clipping(tmp_path):
    class CheckPrecision(pl.Callback):
        dtypes = set()

        def on_fit_start(self, trainer, pl_module):
            assert trainer.precision == "bf16-mixed"
            pl_module.model.decoder.register_forward_hook(lambda m, i, out: self.dtypes.add(out.dtype))

    overrides = TINY + FAMILIES["quickstart"] + ["trainer.precision=bf16", "trainer.accumulate_grad_batches=2",
                                                 "trainer.gradient_clip_val=0.5", "data.train.num_samples=16",
                                                 "final_eval=null"]
    result = train("quickstart", overrides, run_dir=tmp_path / "run", callbacks=[CheckPrecision()])
    assert result.ok
    assert CheckPrecision.dtypes == {torch.bfloat16}  # the decoder really ran under bf16 autocast
    assert result.summary["global_step"] == 2  # 4 batches of 4, two per optimiser step
    assert "precision: bf16-mixed" in (tmp_path / "run/config.yaml").read_text()


def test_cli_train_and_recipes(tmp_path, capsys):
    from depthsmith.cli import main

    assert main(["recipes"]) == 0
    assert "quickstart" in capsys.readouterr().out
    args = ["train", "--config", "quickstart", "--run-dir", str(tmp_path / "run"), "--devices", "1",
            "--accelerator", "cpu"]
    for item in TINY + FAMILIES["quickstart"]:
        args += ["--set", item]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "best val/rmse" in out and str(tmp_path / "run" / "model") in out and "constant" in out
    assert depthsmith.load_model(tmp_path / "run" / "model") is not None


def test_wandb_without_the_package_fails_early_with_the_fix(tmp_path, monkeypatch):
    import importlib.util

    from depthsmith.train import ConfigError

    real_find_spec = importlib.util.find_spec  # pretend wandb is not installed
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real_find_spec(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'depthsmith\[wandb\]'"):
        train("quickstart", TINY + FAMILIES["quickstart"] + ["logging.wandb=true"], run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()  # nothing written for a run that could not start


def test_wandb_logs_offline_when_nobody_is_logged_in(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))  # no stored login either
    result = train("quickstart", TINY + FAMILIES["quickstart"] + ["logging.wandb=true"], run_dir=tmp_path / "run")
    assert result.ok, result.error
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert runs, sorted(p.name for p in (tmp_path / "run").rglob("*"))[:20]
