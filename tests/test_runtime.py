"""depthsmith.runtime: auto's choice and its cache, the OpenVINO export (dynamic sizes, int8 with
held-out accuracy and refusal), training precision auto. Every backend against fp32 PyTorch: test_registry.py."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import depthsmith
from depthsmith.bench import agreement
from depthsmith.bench import synthetic_rooms
from depthsmith.cli import build_parser, main
from depthsmith.runtime import AutoRunner, backend_choices, create_runner, get_backend, list_backends
from depthsmith.runtime.auto import MAX_REL_DIFF, Probe, candidates, choose

from helpers import tiny_varying_model

pytestmark = pytest.mark.usefixtures("one_thread")
SIZE = (64, 96)


@pytest.fixture(scope="module")
def tiny() -> depthsmith.DepthModel:
    """A tiny model whose depth varies over about 2-7 m (head weights scaled up), like a trained
    model's, so that precision differences show (a random head gives a near-constant map)."""
    return tiny_varying_model()


@pytest.fixture(scope="module")
def rooms() -> torch.Tensor:
    return torch.cat(synthetic_rooms(2, *SIZE))


def test_choices_come_from_the_registry():
    choices = backend_choices()
    assert choices[:2] == ["auto", "torch"] and set(list_backends()) <= set(choices)
    assert {"onnx", "openvino-fp32", "openvino-bf16", "openvino-int8", "torch-bf16", "torch-compile"} <= set(choices)
    predict = next(a for a in build_parser()._subparsers._group_actions[0].choices["predict"]._actions
                   if a.dest == "backend")
    assert predict.choices == choices and predict.default == "auto"
    with pytest.raises(ValueError, match="valid: auto, torch-fp32"):
        get_backend("tensorrt")


# Every backend against fp32 PyTorch within its documented tolerance: tests/test_registry.py.


def test_choice_is_the_fastest_within_the_accuracy_gate():
    probes = [Probe("torch-fp32", None, 100.0, 0.0), Probe("torch-bf16", None, 40.0, 0.004),
              Probe("openvino-bf16", None, 20.0, 0.03), Probe("onnx", None, 10.0, float("inf"), "RuntimeError: boom")]
    best, reason = choose(probes)
    assert best.backend == "torch-bf16"  # openvino-bf16 is faster but 3% from fp32; onnx failed
    assert reason.startswith("40 ms vs torch-fp32 100 ms") and "openvino-bf16: 3.00% from fp32" in reason
    assert "onnx: RuntimeError: boom" in reason
    with pytest.raises(RuntimeError, match="no candidate"):
        choose([Probe("openvino-bf16", None, 20.0, 2 * MAX_REL_DIFF)])


def test_candidates_follow_hardware_and_precision(monkeypatch):
    from depthsmith import cpu

    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_vnni"}))  # a Xeon without bf16
    names = [n for n, _ in candidates("auto", busy=False)]
    assert "torch-fp32" in names and not any("bf16" in n or "int8" in n or "compile" in n for n in names)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert "torch-bf16" in [n for n, _ in candidates("auto", busy=False)]
    assert all(get_backend(n, installed=False).precision == "fp32" for n, _ in candidates("fp32", busy=False))
    busy = candidates("auto", busy=True, cores=4)
    assert ("torch-fp32", None) in busy and all(t is None or t < torch.get_num_threads() for _, t in busy)


def test_auto_probes_once_per_size_and_caches(tiny, rooms, tmp_path, capsys):
    calls: list[str] = []
    fake_ms = {"torch-fp32": 50.0, "torch-bf16": 30.0, "onnx": 40.0, "openvino-fp32": 20.0, "openvino-bf16": 25.0}

    alive: list[int] = []

    def probe(runner, x):
        calls.append(runner.backend)
        alive.append(len(auto.runners))
        return fake_ms[runner.backend]

    cache = tmp_path / "choices.json"
    auto = AutoRunner(tiny, probe=probe, cache=cache, busy=False)
    with torch.no_grad():
        ref = tiny(rooms)
    out = auto(rooms)
    expected = min((n for n, _ in candidates("auto", busy=False)), key=fake_ms.get)
    assert auto.backend == expected and agreement(out, ref)[0] <= MAX_REL_DIFF
    assert sorted(calls) == sorted(n for n, _ in candidates("auto", busy=False))
    # the one being probed and the fastest so far: a loser's copy of the weights is freed at once
    assert max(alive) <= 2 and list(auto.runners) == [(expected, None)]
    line = capsys.readouterr().out
    assert f"backend auto: {expected} (" in line and "probed at 64x96 batch 2" in line and str(cache) in line
    entry = next(iter(json.loads(cache.read_text()).values()))
    assert entry["backend"] == expected and len(entry["probes"]) == len(calls)

    calls.clear()
    again = AutoRunner(tiny, probe=probe, cache=cache, busy=False)
    again(rooms)
    assert calls == [] and again.backend == expected and "cached choice" in capsys.readouterr().out
    again(rooms[:1])  # another input size is measured again
    assert calls and len(json.loads(cache.read_text())) == 2


def test_auto_does_not_export_a_model_past_the_limit_itself(tiny, rooms, tmp_path, monkeypatch):
    # Depth Pro's 3.8 GB: auto would spend minutes exporting it and its check ran out of 24 GB. Here
    # the limit is lowered under the tiny model instead.
    from depthsmith.runtime import cache

    monkeypatch.setenv("DEPTHSMITH_CACHE", str(tmp_path))
    monkeypatch.setattr(cache, "AUTO_EXPORT_LIMIT", 1000)
    auto = AutoRunner(tiny, probe=lambda runner, x: 1.0, cache=tmp_path / "c.json", busy=False)
    auto(rooms[:1])
    skipped = {p.backend for p in auto.last_probes if "of a model of" in p.error}
    needs_export = {n for n, _ in candidates("auto", busy=False) if n == "onnx" or n.startswith("openvino")}
    assert skipped == needs_export and auto.backend not in needs_export
    assert "depthsmith export" in cache.implicit_export_refusal(tiny)
    # once exported (here: a file in its place), auto runs that export like any other: the ONNX file
    # serves ONNX Runtime, OpenVINO still needs its IR
    folder = tmp_path / "models" / cache.model_key(tiny)
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(b"")
    assert cache.implicit_export_refusal(tiny) == ""
    assert "model.xml" in cache.implicit_export_refusal(tiny, "model.xml")


def test_model_key_is_hashed_once_until_a_weight_changes(monkeypatch):
    import hashlib

    from depthsmith.runtime import cache

    hashes, sha1 = [], hashlib.sha1
    monkeypatch.setattr(cache.hashlib, "sha1", lambda *a: hashes.append(1) or sha1(*a))
    model = depthsmith.create_model("test_resnet", decoder="unet", encoder_weights=None)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    key = cache.model_key(model)
    assert cache.model_key(model) == key and len(hashes) == 1  # asked again: not hashed again
    with torch.inference_mode():
        model.eval()(torch.rand(1, 3, 64, 64))
    assert cache.model_key(model) == key and len(hashes) == 1  # inference writes nothing
    with torch.no_grad():
        next(model.parameters()).mul_(1.5)  # an in-place edit
    assert cache.model_key(model) != key
    model.load_state_dict(original)
    assert cache.model_key(model) == key  # same weights, same key (and same exports)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()(torch.rand(2, 3, 64, 64)).mean().backward()  # BatchNorm statistics move too
    optimizer.step()
    assert cache.model_key(model) != key
    model.load_state_dict(original)
    model.decoder.head = torch.nn.Identity()  # a module replaced: its tensors are gone from the state
    assert cache.model_key(model) != key


def test_probe_times_a_slow_model_once():
    from depthsmith.runtime.auto import timed_ms

    calls = []
    runner = lambda x: calls.append(x)  # noqa: E731
    assert timed_ms(runner, torch.zeros(1), calls=3, slow_s=float("inf")) >= 0 and len(calls) == 4
    calls.clear()  # a warm-up call longer than slow_s: one timed call, not three
    assert timed_ms(runner, torch.zeros(1), calls=3, slow_s=0.0) >= 0 and len(calls) == 2


def test_auto_times_a_slow_fp32_model_by_its_reference_call(tiny, rooms, tmp_path, monkeypatch):
    # Depth Pro's fp32 call takes ~100 s here: the reference call is its one timed call, not a third.
    from depthsmith.runtime import auto as auto_module

    monkeypatch.setattr(auto_module, "SLOW_CALL_S", 0.0)  # every call counts as slow
    monkeypatch.setattr(auto_module, "candidates", lambda *a, **k: [("torch-fp32", None), ("torch-bf16", None)])
    calls, runner = [], AutoRunner._runner

    def counted(self, name, threads):
        made = runner(self, name, threads)
        return lambda x: calls.append(name) or made(x)

    monkeypatch.setattr(AutoRunner, "_runner", counted)
    auto = AutoRunner(tiny, cache=tmp_path / "c.json", busy=False, verbose=False)
    auto.decide(rooms[:1])
    fp32 = {p.backend: p for p in auto.last_probes}["torch-fp32"]
    assert calls.count("torch-fp32") == 1 and fp32.ms > 0 and fp32.rel_diff == 0.0  # the reference, nothing more
    # torch-bf16 as before: its accuracy call, then timed_ms (whose own threshold is not patched here)
    assert calls.count("torch-bf16") == 1 + 1 + auto_module.PROBE_CALLS


def test_auto_real_probe_on_a_tiny_model(tiny, rooms, tmp_path, capsys):
    auto = create_runner("auto", tiny, device="cpu", cache=tmp_path / "c.json")
    out = auto(rooms[:1])
    with torch.no_grad():
        assert agreement(out, tiny(rooms[:1]))[0] <= MAX_REL_DIFF
    assert auto.backend in list_backends() and auto.backend != "openvino-int8"
    assert all(p.ms > 0 for p in auto.last_probes if not p.error)
    assert "backend auto: " in capsys.readouterr().out


@pytest.fixture(scope="module")
def ov_export(tiny, tmp_path_factory):
    pytest.importorskip("openvino")
    from depthsmith.runtime.export_openvino import export_openvino

    out = tmp_path_factory.mktemp("ov") / "model.xml"
    return export_openvino(tiny, out, *SIZE)


def test_openvino_export_has_dynamic_sizes_and_metadata(tiny, ov_export, tmp_path):
    from depthsmith.runtime.openvino import OpenVinoRunner

    assert ov_export.ok and ov_export.path.with_suffix(".bin").is_file(), ov_export.summary()
    runner = OpenVinoRunner(ov_export.path)
    assert (runner.name, runner.is_metric, runner.max_depth) == (tiny.name, True, tiny.max_depth)
    for shape in [(1, 3, *SIZE), (3, 3, 83, 117)]:  # the example size and another batch and size
        x = torch.rand(*shape)
        with torch.no_grad():
            np.testing.assert_allclose(runner(x).numpy(), tiny(x).numpy(), atol=1e-4)
    rgb = (np.random.default_rng(0).random((70, 100, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert main(["predict", str(tmp_path / "a.png"), "--model", str(ov_export.path), "--backend", "openvino",
                 "--out", str(tmp_path / "out"), "--save", "npy"]) == 0
    with torch.no_grad():
        ref = tiny(torch.from_numpy(rgb / np.float32(255)).permute(2, 0, 1)[None])[0, 0].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "out" / "a_depth.npy"), ref, atol=1e-4)
    assert json.loads((tmp_path / "out" / "depth_info.json").read_text())["backend"] == "openvino-fp32"


def test_static_openvino_runner_compiles_per_shape(tiny, ov_export, tmp_path, monkeypatch):
    """The backends' runner compiles the IR for each input shape it meets (the last few kept), with the
    same numbers as PyTorch; its compiled blobs go to the cache folder."""
    from depthsmith.runtime import openvino_ir
    from depthsmith.runtime.openvino_ir import OpenVinoRunner

    monkeypatch.setenv("DEPTHSMITH_CACHE", str(tmp_path))
    runner = OpenVinoRunner(ov_export.path, "fp32", static=True)
    assert not runner.requests  # nothing compiled before the first batch
    shapes = [(1, 3, *SIZE), (2, 3, 83, 117), (1, 3, 50, 70), (1, 3, 66, 90)]
    for shape in shapes:
        x = torch.rand(*shape)
        with torch.no_grad():
            np.testing.assert_allclose(runner(x).numpy(), tiny(x).numpy(), atol=1e-4)
    assert list(runner.requests) == shapes[-openvino_ir.STATIC_SHAPES:]
    assert any((tmp_path / "openvino-blobs").iterdir())


def test_two_openvino_runners_survive_a_signal(ov_export):
    """Two runners released in the order they were made, then a signal handled in Python (SIGCHLD,
    as torch's DataLoader installs). With one ov.Core per runner, each CPU plugin's destructor put
    back a signal stack that was already unmapped and the process died of SIGSEGV at the next
    signal, with no traceback (the whole test suite in one process did). One Core per process."""
    import subprocess
    import sys

    script = (
        "import gc, signal, subprocess, sys, torch\n"
        "from depthsmith.runtime.openvino_ir import OpenVinoRunner\n"
        "a = OpenVinoRunner(sys.argv[1]); b = OpenVinoRunner(sys.argv[1])\n"
        "x = torch.rand(1, 3, 64, 96); a(x); b(x)\n"
        "del a; gc.collect(); del b; gc.collect()\n"
        "signal.signal(signal.SIGCHLD, lambda *args: None)\n"
        "subprocess.run(['true'])\n"
        "print('survived')\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(ov_export.path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and "survived" in done.stdout, (done.returncode, done.stderr[-2000:])


def test_int8_export_reports_held_out_accuracy_and_refuses_past_tolerance(tiny, ov_export, tmp_path, capsys):
    pytest.importorskip("nncf")
    from depthsmith.runtime.quantize import quantize_int8

    folder = tmp_path / "calib"
    folder.mkdir()
    for i, room in enumerate(synthetic_rooms(8, *SIZE, seed=11)):
        Image.fromarray((room[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(folder / f"{i}.png")
    # the fp32 IR of the export test, quantized (export_openvino(int8=True) runs the same after its ONNX export)
    good = quantize_int8(ov_export.path, tmp_path / "int8.xml", folder, size=SIZE)
    assert good.ok and good.path.is_file() and good.path.with_suffix(".bin").is_file(), good.summary()
    assert (good.n_calibration, good.n_heldout) == (6, 2)
    assert 0 <= good.rel_diff <= 0.02 and 0.98 <= good.delta1 <= 1
    assert "held-out" in good.summary() and f"images from folder {folder}" in good.summary()
    int8 = create_runner("openvino", good.path, device="cpu")
    assert int8.precision == "int8" and int8.name == tiny.name

    refused = quantize_int8(ov_export.path, tmp_path / "strict.xml", folder, tolerance=1e-6, size=SIZE)
    assert not refused.ok and not (tmp_path / "strict.xml").exists()
    text = refused.summary()
    assert "REFUSED" in text and "exceeds the tolerance 0.0001%" in text and "does not say which layers" in text
    tiny.save_pretrained(tmp_path / "m")
    code = main(["export", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "cli.xml"), "--format",
                 "openvino", "--int8", "--tolerance", "1e-6", "--height", "64", "--width", "96"])
    assert code == 1 and "synthetic rooms" in capsys.readouterr().out  # no --calibration: said so


def test_calibration_source_errors_name_the_file(tmp_path):
    from depthsmith.runtime.quantize import calibration_images

    with pytest.raises(ValueError, match=f"{tmp_path / 'nope.txt'}.*dataset config.*does not exist"):
        calibration_images(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="has no images"):
        calibration_images(tmp_path)
    assert main(["export", "--model", "x", "--out", "y.onnx", "--int8"]) == 2


def test_quickstart_trains_with_the_resolved_precision(monkeypatch, tmp_path):
    from depthsmith import cpu
    from depthsmith.train import train

    assert "precision: auto" in (depthsmith.train.list_recipes and _recipe_text("quickstart"))
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx512f"}))
    overrides = ["data.train={type: synthetic, num_samples: 4, size: [32, 48], seed: 0}", "data.val=null",
                 "data.batch_size=4", "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.devices=1",
                 "model.name=test_resnet", "model.decoder_kwargs={filters: [16, 8, 8, 8, 8]}", "final_eval=null",
                 "logging.progress_bar=false", "logging.tensorboard=false"]
    result = train("quickstart", overrides, run_dir=tmp_path / "run")
    assert result.ok and "precision: 32-true" in (tmp_path / "run" / "config.yaml").read_text()


def _recipe_text(name: str) -> str:
    from importlib.resources import files

    return (files("depthsmith") / "recipes" / f"{name}.yaml").read_text()


def test_gpu_check_exits_cleanly_without_cuda(monkeypatch, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    assert "no CUDA device" in capsys.readouterr().out


def test_busy_neighbour_stops_by_itself_and_is_seen_as_load():
    from depthsmith.cpu import runnable_others
    from depthsmith.runtime.load import busy_neighbour

    with busy_neighbour(seconds=1.5) as proc:
        import time

        time.sleep(0.3)  # the child is spinning now
        seen = runnable_others(samples=5)
        assert proc.wait(timeout=10) == 0  # exits on its own after its 1.5 s
    assert seen >= 1  # at least the neighbour itself was runnable
