"""The CLI parses and dispatches; these check the wiring, not the maths."""

from __future__ import annotations

import subprocess
import sys

import pytest

from depthsmith.cli import build_parser, main

COMMANDS = ["models", "recipes", "train", "eval", "report", "predict", "export", "app", "bench", "data"]


def test_every_command_has_help() -> None:
    parser = build_parser()
    for cmd in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([cmd, "--help"])
        assert exc.value.code == 0


def test_models_lists_presets(capsys) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ["enc-dec-irv2", "convnext-residual-unet", "resnet50-transposed", "densedepth-densenet169"]:
        assert name in out


def test_console_script_is_installed() -> None:
    out = subprocess.run([sys.executable, "-m", "depthsmith.cli", "models"], capture_output=True, text=True, check=True)
    assert "enc-dec-irv2" in out.stdout


def test_unknown_command_fails_with_usage(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["fly"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_bad_config_is_one_line_error_not_a_traceback(capsys) -> None:
    assert main(["train", "--config", "enc-dec-irv2-nyu"]) == 2  # no data.root given
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "data.root" in err and "Traceback" not in err


def test_data_check_command_writes_preview_and_counts_unreadable(tmp_path, capsys) -> None:
    from PIL import Image
    import numpy as np

    good_rgb, good_depth = tmp_path / "a_rgb.png", tmp_path / "a_depth.png"
    Image.fromarray(np.full((24, 32, 3), 120, np.uint8)).save(good_rgb)
    Image.fromarray(np.full((24, 32), 2500, np.uint16)).save(good_depth)
    (tmp_path / "b_rgb.png").write_bytes(b"broken")
    Image.fromarray(np.full((24, 32), 2500, np.uint16)).save(tmp_path / "b_depth.png")
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"type: paired\nrgb_glob: '{tmp_path}/*_rgb.png'\ndepth_glob: '{tmp_path}/*_depth.png'\n"
                   "encoding: png_mm\n")
    code = main(["data", "check", str(cfg), "--out", str(tmp_path / "check")])
    out = capsys.readouterr().out
    assert code == 1  # one unreadable pair
    assert "b_rgb.png" in out and "2 listed" in out
    assert (tmp_path / "check" / "preview.png").stat().st_size > 1000


def test_recipes_keys_lists_what_set_accepts(capsys):
    """Every key the schema checks, with its default and rule; a value it lists as valid resolves
    and one it excludes is refused (the listing and the check are the same schema)."""
    from depthsmith.train import resolve_config
    from depthsmith.train.config import ConfigError

    assert main(["recipes", "--keys"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert 'default "adam"' in lines["optim.name"] and "must be one of adam, adamw" in lines["optim.name"]
    assert "default 8 " in lines["data.batch_size"] and "integer >= 1" in lines["data.batch_size"]
    assert resolve_config("quickstart", ["optim.name=adamw"]).optim.name == "adamw"
    with pytest.raises(ConfigError, match="optim.name"):
        resolve_config("quickstart", ["optim.name=sgd"])
