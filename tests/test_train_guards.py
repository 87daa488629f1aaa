"""What a training run refuses to write or keep: non-finite weights and buffers, a bad
``--set`` value, orphaned temp files, and a run folder that could not be continued."""

from __future__ import annotations

import json

import lightning.pytorch as pl
import pytest
import torch

from types import SimpleNamespace

from depthsmith.train import CollapsedOutputError, ConfigError, DepthTrainModule, train
from depthsmith.train.config import resolve_config
from depthsmith.train.module import COLLAPSE_STEPS

TINY = [
    "data.train={type: synthetic, num_samples: 8, size: [32, 48], seed: 0}",
    "data.val={type: synthetic, num_samples: 2, size: [32, 48], seed: 1}",
    "data.batch_size=4", "data.num_workers=0", "trainer.max_epochs=1", "trainer.precision=fp32",
    "trainer.accelerator=cpu", "trainer.devices=1", "trainer.log_every_n_steps=1", "logging.progress_bar=false",
    "logging.tensorboard=false", "model.name=test_resnet", "model.encoder_weights=null",
    "model.decoder_kwargs={filters: [16, 8, 8, 8, 8]}", "final_eval=null",
]

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def _finite(path):
    state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_a_finite_loss_with_inf_batchnorm_buffers_stops_the_run(tmp_path, capsys):
    # At lr=1e6 the loss stays finite (the sigmoid output saturates) while BatchNorm's
    # running statistics overflow: the exported model would predict a constant depth.
    run = tmp_path / "run"
    result = train("quickstart", TINY + ["optim.lr=1e6", "trainer.max_epochs=2", "checkpoint.every_n_train_steps=1"],
                   run_dir=run)
    assert not result.ok
    assert "not finite" in result.error and "global step" in result.error
    assert "first bad tensor model." in result.error  # by name
    step = int(result.error.split("global step ")[1].split()[0])
    last = torch.load(run / "checkpoints/last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] < step  # the checkpoint before the bad state was kept
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    assert not (run / "model").exists()
    for ckpt in (run / "checkpoints").glob("*.ckpt"):  # whatever was kept is the last good state
        assert _finite(ckpt), ckpt


def test_a_dead_relu_head_stops_the_run_and_says_why(tmp_path):
    # A tiny ViT + DPT with a disparity (ReLU) head at lr 0.1: after one step its output is 0
    # everywhere and stays so. Before the guard this run ended "ok" with that model.
    run = tmp_path / "run"
    overrides = [o for o in TINY if not o.startswith(("model.", "data.train", "data.val"))] + [
        "data.train={type: synthetic, num_samples: 32, size: [56, 56], seed: 0}",
        "data.val={type: synthetic, num_samples: 4, size: [56, 56], seed: 1}",
        "model={name: test_vit, decoder: dpt, decoder_kwargs: null, output: disparity, encoder_weights: null}",
        "loss=midas", "optim.lr=0.1", "schedule.name=none", "trainer.max_epochs=6"]
    result = train("quickstart", overrides, run_dir=run)
    assert not result.ok
    assert f"has been 0 at every pixel of every training batch for {COLLAPSE_STEPS} steps" in result.error
    assert "ReLU" in result.error and "optim.lr (now 0.1)" in result.error
    step = int(result.error.split("since global step ")[1].split()[0])
    assert step < 5  # it died at once; the message says where
    assert json.loads((run / "summary.json").read_text())["status"] == "failed"
    assert not (run / "model").exists()
    assert (run / "checkpoints" / "last.ckpt").is_file()  # what was saved is kept


def _module_with_fake_trainer():
    module = DepthTrainModule(resolve_config("quickstart", TINY))
    module._trainer = SimpleNamespace(global_step=0, current_epoch=0,
                                      strategy=SimpleNamespace(reduce_boolean_decision=lambda d, all: d))
    return module


def test_collapse_needs_a_run_of_constant_steps():
    module = _module_with_fake_trainer()
    flat, live = torch.full((2, 1, 8, 8), 0.25), torch.rand(2, 1, 8, 8)
    for _ in range(2):  # constant batches broken by a varying one never add up
        for _ in range(COLLAPSE_STEPS - 1):
            module._trainer.global_step += 1
            module._check_collapse(flat)
        module._check_collapse(live)
    module._trainer.global_step = 100
    for _ in range(COLLAPSE_STEPS - 1):
        module._check_collapse(flat)
    with pytest.raises(CollapsedOutputError, match="has been 0.25 at every pixel .* since global step 100") as err:
        module._check_collapse(flat)
    assert "saturated" in str(err.value)  # not 0: the ReLU explanation would be wrong
    module._constant_steps = 2
    module.on_train_end()  # a run that ends with two flat batches is not called collapsed
    module._constant_steps = 3
    with pytest.raises(CollapsedOutputError):
        module.on_train_end()


def test_a_failed_resume_does_not_keep_its_overrides(tmp_path):
    run = tmp_path / "run"
    # No OneCycle: its total step count is fixed in the checkpoint, so it cannot be extended.
    assert train("quickstart", TINY + ["schedule.name=none"], run_dir=run).ok
    saved = (run / "config.yaml").read_text()
    # A decoder of another width cannot load the checkpoint: this resume fails...
    with pytest.raises(RuntimeError, match="size mismatch"):
        train("quickstart", ["model.decoder_kwargs={filters: [32, 16, 16, 8, 8]}"], run_dir=run, resume=True)
    # ...and leaves config.yaml as it was, so the next plain --resume is not the same failure.
    assert (run / "config.yaml").read_text() == saved
    extended = train("quickstart", ["trainer.max_epochs=2"], run_dir=run, resume=True)
    assert extended.ok and extended.summary["epochs"] == 2
    assert "max_epochs: 2" in (run / "config.yaml").read_text()  # a resume that trained keeps its overrides


def test_orphaned_temp_files_are_removed_on_start_and_an_empty_run_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    # What a kill during the first checkpoint write leaves: config.yaml, a temp file, no checkpoint.
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("stale")  # replaced below by a config that parses
    orphan = run / "checkpoints" / ".last.ckpt.k2j3h4.tmp"
    orphan.write_bytes(b"\0" * 1_000_000)
    keep = run / "checkpoints" / "notes.txt"  # not ours: left alone
    keep.write_text("mine")
    assert train("quickstart", TINY, run_dir=tmp_path / "seed").ok
    (run / "config.yaml").write_text((tmp_path / "seed" / "config.yaml").read_text())
    with pytest.raises(ConfigError, match=r"already holds a run; continue it from the beginning \(it has no "
                                          r"checkpoint yet\) with --resume"):
        train("quickstart", TINY, run_dir=run)
    result = train("quickstart", run_dir=run, resume=True)
    assert result.ok, result.error
    err = capsys.readouterr().err
    assert "removed 1 temporary file(s) (1.0 MB)" in err and "starting it from the beginning" in err
    assert not orphan.exists() and keep.read_text() == "mine"
    assert (run / "checkpoints" / "last.ckpt").is_file()


class CrashAtStep(pl.Callback):
    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise RuntimeError("simulated crash")


def test_a_mid_epoch_resume_with_another_batch_size_is_refused_by_name(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        # constant lr: a new batch size under a schedule is refused earlier, as a new run length
        train("quickstart", TINY + ["data.batch_size=2", "checkpoint.every_n_train_steps=1", "schedule.name=none"],
              run_dir=run, callbacks=[CrashAtStep(2)])
    # "batch 2 of epoch 0" means other samples at batch size 4: exact resume is impossible.
    with pytest.raises(ConfigError, match=r"middle of epoch 0 \(after batch 2\).*batch_size 2 -> 4.*data\.batch_size"):
        train("quickstart", ["data.batch_size=4"], run_dir=run, resume=True)
    assert "batch_size: 2" in (run / "config.yaml").read_text()


def test_a_scheduled_run_refuses_a_new_length_on_resume_and_says_how_to_train_longer(tmp_path):
    """OneCycle's step count is in the checkpoint: a longer resume used to die in torch ("Tried to
    step 3 times"), and linear decay would have trained the added epochs at lr 0."""
    run = tmp_path / "run"
    assert train("quickstart", TINY + ["schedule.name=onecycle"], run_dir=run).ok
    saved = (run / "config.yaml").read_text()
    with pytest.raises(ConfigError, match=r"trainer\.max_epochs 1 -> 2.*onecycle.*model\.init_from="):
        train("quickstart", ["trainer.max_epochs=2"], run_dir=run, resume=True)
    assert (run / "config.yaml").read_text() == saved
    # the way the message gives: a new run from this one's weights, the longer schedule from its start
    longer = train("quickstart", TINY + ["schedule.name=onecycle", "trainer.max_epochs=2",
                                         f"model.init_from={run / 'model'}", "model.init_parts=[encoder, decoder]"],
                   run_dir=tmp_path / "longer")
    assert longer.ok and longer.summary["epochs"] == 2
