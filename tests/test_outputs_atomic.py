"""Output files are whole or absent, and unusable output folders fail before any work.

The "before any work" tests give a model path that does not exist: an error about the model
would mean the work had started before the output was checked.
"""

from __future__ import annotations

import os
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch

from depthsmith import paths
from depthsmith.cli import main
from depthsmith.errors import InputError
from depthsmith.io import write_outputs
from depthsmith.train.run_dir import prepare_run_dir


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="disk"):
        with paths.atomic_write(target, "w") as handle:
            handle.write("half of the new")
            raise RuntimeError("disk gone")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_an_interrupted_write_leaves_no_file(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with paths.atomic_write(tmp_path / "a.png") as handle:
            handle.write(b"\x89PNG")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_predict_outputs_go_through_temp_files(tmp_path, monkeypatch):
    """Every output of write_outputs is renamed into place, none written under its final name."""
    renamed = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (renamed.append(Path(b).name), real_replace(a, b)))
    depth = np.full((6, 8), 2.0, np.float32)
    written = write_outputs(tmp_path, "x", np.zeros((6, 8, 3), np.float32), depth, ["png16", "npy", "color", "side", "ply"])
    assert sorted(renamed) == sorted(p.name for p in written.values())
    assert np.load(written["npy"]).tolist() == depth.tolist()


def test_output_folder_that_is_a_file_or_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match=r"--out .*f is an existing file"):
        paths.check_output_dir(tmp_path / "f")
    with pytest.raises(InputError, match=r"--out .*f/sub: cannot write there"):
        paths.check_output_dir(tmp_path / "f" / "sub")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(InputError, match="cannot write there"):
        paths.check_output_dir(ro)


def test_nearly_full_disk_is_refused(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 10**12 - 5 * 2**20, 5 * 2**20))
    with pytest.raises(InputError, match=r"only 5 MB free"):
        paths.check_output_dir(tmp_path / "out")


@pytest.mark.parametrize("argv", [
    ["eval", "--model", "no/such/model", "--data", "no_such.yaml", "--out", "{file}"],
    ["predict", "{tmp}", "--model", "no/such/model", "--out", "{file}"],
    ["export", "--model", "no/such/model", "--out", "{file}/model.onnx"],
    ["export", "--model", "no/such/model", "--format", "openvino", "--out", "{file}/model.xml"],
    ["train", "--config", "quickstart", "--run-dir", "{file}"],
])
def test_unusable_outputs_fail_before_any_work(tmp_path, capsys, argv):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    code = main([a.format(file=blocker, tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and str(blocker) in err and "no/such/model" not in err, err


def test_export_opset_that_cannot_be_written_is_refused_before_loading(tmp_path, capsys):
    assert main(["export", "--model", "no/such/model", "--out", str(tmp_path / "m.onnx"), "--opset", "1"]) == 2
    err = capsys.readouterr().err
    assert "--opset 1 cannot be written" in err and "18" in err
    assert not (tmp_path / "m.onnx").exists()


def test_unknown_cmap_is_refused_when_parsing(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["predict", str(tmp_path), "--model", "no/such/model", "--out", str(tmp_path / "o"),
              "--cmap", "infernoo"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "'infernoo' is not a matplotlib colour map" in err and "inferno" in err


# ----------------------------------------------------------------------------- resume fallback


def _checkpoint(path: Path, step: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, "state_dict": {"w": torch.ones(3)}, "loops": {}}, path)


def test_truncated_last_checkpoint_falls_back_to_previous(tmp_path, capsys):
    folder = tmp_path / "checkpoints"
    _checkpoint(folder / "previous.ckpt", 3)
    _checkpoint(folder / "last.ckpt", 6)
    data = (folder / "last.ckpt").read_bytes()
    (folder / "last.ckpt").write_bytes(data[: len(data) // 2])
    assert prepare_run_dir({}, tmp_path, resume=True) == folder / "previous.ckpt"
    err = capsys.readouterr().err
    assert f"{folder / 'last.ckpt'} cannot be loaded" in err and "resuming from" in err and "(step 3)" in err
    # Set aside, so the next save does not keep the damaged file as previous.ckpt.
    assert not (folder / "last.ckpt").exists() and (folder / "last.ckpt.unreadable").is_file()


def test_no_checkpoint_loads_names_every_file(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "last.ckpt").write_bytes(b"PK\x03\x04 not a whole zip")
    torch.save({"weights": 1}, folder / "best.ckpt")
    with pytest.raises(ValueError) as err:
        prepare_run_dir({}, tmp_path, resume=True)
    message = str(err.value)
    assert str(folder / "last.ckpt") in message and str(folder / "best.ckpt") in message
    assert "no global_step, state_dict, loops in it" in message
