"""Ctrl-C and SIGTERM during ``depthsmith predict``: whole files or none, one line, exit 130 / 143,
and ``--skip-existing`` finishes the rest.

Each trial is a real process interrupted by a real signal at a random moment. To keep ten
trials fast, one helper process imports depthsmith once (no torch op runs in it, so forking is
safe) and forks a fresh ``depthsmith.cli.main`` per trial; the test signals that child directly.
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

import numpy as np
import pytest
from PIL import Image

import depthsmith

SRC = str(Path(depthsmith.__file__).resolve().parents[1])
N_IMAGES, TRIALS = 20, 10
SAVE = ["png16", "color", "npy"]
SUFFIXES = {"png16": "_depth16.png", "color": "_color.png", "npy": "_depth.npy"}

# Reads one JSON list of CLI arguments per line; forks a child that runs them (stdout and
# stderr to files named in the line) and answers "pid <n>", then "exit <code>" when it ends.
FORKER = r"""
import json, os, sys
from depthsmith.cli import main
import depthsmith.commands.predict, depthsmith.models, depthsmith.runtime, timm, matplotlib.cm  # once, not per child

for line in sys.stdin:
    job = json.loads(line)
    pid = os.fork()
    if pid == 0:
        for fd, name in ((1, job["stdout"]), (2, job["stderr"])):
            os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        try:
            code = main(job["argv"])
        except BaseException as err:  # a traceback here is a test failure: keep it
            import traceback
            traceback.print_exc()
            code = 99
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    print(f"pid {pid}", flush=True)
    _, status = os.waitpid(pid, 0)
    print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    depthsmith.create_model("test_resnet", decoder="unet", encoder_weights=None).save_pretrained(root / "model")
    rng = np.random.default_rng(0)
    images = root / "images"
    images.mkdir()
    for i in range(N_IMAGES):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(images / f"im{i:02d}.png")
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    forker = subprocess.Popen([sys.executable, "-c", FORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env=env, cwd=root)
    yield root, forker
    forker.stdin.close()
    forker.wait(timeout=30)


def _start(forker, root: Path, out: Path, tag: str, *extra: str) -> tuple[int, Path]:
    argv = ["predict", str(root / "images"), "--model", str(root / "model"), "--out", str(out), "--backend", "torch",
            "--precision", "fp32", "--device", "cpu", "--batch-size", "1", "--save", *SAVE, *extra]
    log = root / f"{tag}.err"
    forker.stdin.write(json.dumps({"argv": argv, "stdout": str(root / f"{tag}.out"), "stderr": str(log)}) + "\n")
    forker.stdin.flush()
    kind, pid = forker.stdout.readline().split()
    assert kind == "pid"
    return int(pid), log


def _wait(forker) -> int:
    kind, code = forker.stdout.readline().split()
    assert kind == "exit"
    return int(code)


def _check_folder(out: Path) -> int:
    """Every file present decodes, no temp file is left, depth_info.json is there if anything is;
    returns how many images have all their outputs."""
    names = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    assert not [n for n in names if n.endswith(".tmp")], names
    outputs = [n for n in names if n != "depth_info.json"]
    if outputs:
        assert "depth_info.json" in names
        assert json.loads((out / "depth_info.json").read_text())["units"] == "metres"
    for name in outputs:
        path = out / name
        if name.endswith(".npy"):
            assert np.load(path).shape == (48, 64)
        else:
            with Image.open(path) as image:
                image.load()  # a truncated PNG fails here
                assert image.size == (64, 48)
    return sum(all(f"im{i:02d}{s}" in names for s in SUFFIXES.values()) for i in range(N_IMAGES))


def test_interrupts_leave_whole_files_and_a_rerun_finishes(setup):
    root, forker = setup
    # Uninterrupted runs: how long the whole job takes, the window the interrupts fall in.
    for run in ("warm-up", "full"):
        started = time.monotonic()
        _start(forker, root, root / run, run)
        assert _wait(forker) == 0
        window = time.monotonic() - started
        assert _check_folder(root / run) == N_IMAGES

    rng = random.Random(0)
    stopped_midway = before_any = ended_first = 0
    for trial in range(TRIALS):
        out = root / f"trial{trial}"
        sig = signal.SIGTERM if trial % 3 == 2 else signal.SIGINT
        pid, log = _start(forker, root, out, f"trial{trial}")
        time.sleep(rng.uniform(0.0, window))
        try:
            os.kill(pid, sig)
        except ProcessLookupError:  # it had ended already (the forker reaped it)
            pass
        code = _wait(forker)
        text = log.read_text()
        done = _check_folder(out)
        if code == 0:  # the run ended before the signal
            assert done == N_IMAGES
            ended_first += 1
            continue
        assert code == 128 + sig, f"exit {code}: {text[-2000:]}"
        assert "Traceback" not in text, text[-2000:]
        lines = [line for line in text.splitlines() if line.startswith("interrupted after ")]
        assert len(lines) == 1 and lines[0].endswith("outputs so far are complete (rerun with --skip-existing "
                                                     "to finish the rest)"), text[-2000:]
        counted = int(lines[0].split()[2])
        assert counted <= done + 1 and done <= counted + 1  # the file being written when the signal came
        stopped_midway += 0 < done < N_IMAGES
        before_any += done == 0
        _start(forker, root, out, f"rerun{trial}", "--skip-existing")
        assert _wait(forker) == 0, (root / f"rerun{trial}.err").read_text()[-2000:]
        assert _check_folder(out) == N_IMAGES
        rerun_says = (root / f"rerun{trial}.out").read_text()
        if done:
            assert f"skipping {done} input(s)" in rerun_says, rerun_says
    print(f"\n{TRIALS} trials: {stopped_midway} stopped between images, {before_any} before the first, "
          f"{ended_first} ended before the signal; every file decoded, every rerun finished")
    assert stopped_midway >= 3, f"only {stopped_midway} of {TRIALS} interrupts landed between the first and last image"
