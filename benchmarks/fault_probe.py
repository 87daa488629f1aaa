"""Feed a corpus of bad (and awkward but valid) inputs through the CLI and count the outcomes.

    PYTHONPATH=src python benchmarks/fault_probe.py [--src OTHER/src] [--timeout 60] [--verbose]

Each case runs ``depthsmith.cli.main(argv)`` in this process (what a user's shell would run)
under an 8 GiB address-space limit, and ends as one of:

* ``clear``: a bad input ended with a non-zero exit code and output that names the file (or
  argument) and, for batches, the other files were still written;
* ``ok``: a valid input was processed and its output has the input's size;
* ``wrong``: a bad input accepted silently, a valid one refused, or an error not naming the file;
* ``traceback``: an exception escaped ``main`` (the user sees a traceback);
* ``hang``: still running after ``--timeout`` seconds (stopped by an alarm).

``--src`` runs the same corpus against another checkout's code (e.g. before a fix), since the
probe only uses ``depthsmith.cli.main``, ``create_model`` and ``save_pretrained``. The corpus is
built with tests/fault_corpus.py in a temporary folder; the web app's refusals are covered by
tests/test_faults_data.py instead (they need no CLI).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import shutil
import signal
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the corpus builders shared with the tests


class Hang(BaseException):  # BaseException: the code under test must not swallow it
    pass


def build_cases(tmp: Path, model: Path) -> list[dict]:
    """Each case: name, argv, expect ('error' or 'ok'), token that must appear, optional check()."""
    import fault_corpus as fc
    from PIL import Image

    def predict(inputs, out, *extra, model_arg=model):
        return ["predict", *map(str, inputs), "--model", str(model_arg), "--out", str(out), "--save", "png16",
                "--precision", "fp32", "--device", "cpu", *extra]

    def written(out, stem, shape=fc.SIZE):
        f = out / f"{stem}_depth16.png"
        return lambda: f.is_file() and np.asarray(Image.open(f)).shape == tuple(shape)

    cases = []
    for name, (build, suffix) in sorted(fc.BAD_IMAGES.items()):
        d = tmp / f"img_{name}"
        d.mkdir()
        bad, good = build(d / f"a_{name}{suffix}"), fc.good_png(d / "b_good.png")
        cases.append(dict(name=f"predict: {name} first in a batch", argv=predict([bad, good], d / "out"),
                          expect="error", token=bad.name, check=written(d / "out", "b_good")))
    for name, (build, suffix) in sorted(fc.VALID_IMAGES.items()):
        d = tmp / f"ok_{name}"
        d.mkdir()
        shape = build(d / f"{name}{suffix}")
        cases.append(dict(name=f"predict: {name}", argv=predict([d / f"{name}{suffix}"], d / "out"),
                          expect="ok", check=written(d / "out", name, shape)))
    d = tmp / "nothing"
    d.mkdir()
    good = fc.good_png(d / "good.png")
    (d / "link.png").symlink_to(d / "gone.png")
    for label, bad in (("missing file", d / "nope.png"), ("dangling symlink", d / "link.png"),
                       ("glob matching nothing", d / "*.webp")):
        cases.append(dict(name=f"predict: {label}", argv=predict([bad, good], d / f"out_{label[:4]}"),
                          expect="error", token=str(bad), check=written(d / f"out_{label[:4]}", "good")))
    loop = tmp / "loop"
    (loop / "a").mkdir(parents=True)
    fc.good_png(loop / "a" / "x.png")
    (loop / "a" / "up").symlink_to(loop)
    (loop / "a" / "self").symlink_to(loop / "a")
    cases.append(dict(name="predict: recursive glob over symlink loops", argv=predict([f"{loop}/**/*.png"], loop / "out"),
                      expect="ok", check=written(loop / "out", "x")))
    for label, extra, token in (("--batch-size 0", ["--batch-size", "0"], "batch-size"),
                                ("--max-side 0", ["--max-side", "0"], "max-side"),
                                ("fx = 0", ["--intrinsics", "0", "500", "320", "240"], "intrinsics"),
                                ("fy < 0", ["--intrinsics", "500", "-500", "320", "240"], "intrinsics"),
                                ("cx < 0", ["--intrinsics", "500", "500", "-1", "240"], "intrinsics")):
        cases.append(dict(name=f"predict: {label}", argv=predict([good], d / "o", *extra), expect="error", token=token))
    (d / "out.txt").write_text("mine")
    cases.append(dict(name="predict: --out is a file", argv=predict([good], d / "out.txt"), expect="error",
                      token="out.txt", check=lambda: (d / "out.txt").read_text() == "mine"))
    for label, content in (("empty", b""), ("garbage", b"not a protobuf \x00\xff" * 8)):
        onnx = d / f"broken_{label}.onnx"
        onnx.write_bytes(content)
        cases.append(dict(name=f"predict --backend onnx: {label} .onnx", expect="error", token=onnx.name,
                          argv=predict([good], d / "o", "--backend", "onnx", model_arg=onnx)))
    cases += model_cases(tmp, model, good, predict)
    cases += data_cases(tmp, model)
    cases += output_cases(tmp, model, good, predict)
    cases += option_cases(tmp, model, good, predict)
    cases += format_cases(tmp, model, good, predict)
    return cases


# ----------------------------------------------------------------------------- issue 21's classes


def output_cases(tmp: Path, model: Path, good: Path, predict) -> list[dict]:
    """Outputs that cannot be written, checked before the work; a damaged last.ckpt on --resume."""
    d = tmp / "outputs"
    d.mkdir()
    blocker = d / "blocker"
    blocker.write_text("a file where a folder should be")
    data = d / "data.yaml"
    data.write_text("type: synthetic\nnum_samples: 2\nsize: [32, 48]\n")
    cases = [
        dict(name="eval: --out is a file", expect="error", token="blocker", check=lambda: blocker.read_text()[0] == "a",
             argv=["eval", "--model", str(model), "--data", str(data), "--protocol", "none", "--out", str(blocker)]),
        dict(name="train: --run-dir is a file", expect="error", token="blocker",
             argv=["train", "--config", "quickstart", "--run-dir", str(blocker), *_tiny_train()]),
        dict(name="export onnx: --out under a file", expect="error", token="blocker", code=2,
             argv=["export", "--model", str(model), "--out", str(blocker / "m.onnx")]),
        dict(name="export openvino: --out under a file", expect="error", token="blocker", code=2,
             argv=["export", "--model", str(model), "--format", "openvino", "--out", str(blocker / "m.xml")]),
    ]
    run = _damaged_run(d / "run")
    cases.append(dict(name="train --resume: truncated last.ckpt, no other checkpoint", expect="error",
                      token=str(run / "checkpoints" / "last.ckpt"),
                      argv=["train", "--config", "quickstart", "--run-dir", str(run), "--resume"]))
    out = d / "again"
    cases.append(dict(name="predict --skip-existing after a finished run", expect="ok",
                      argv=predict([good], out, "--skip-existing"), before=lambda: _main(predict([good], out)),
                      check=lambda: (out / "good_depth16.png").is_file()))
    return cases


def _tiny_train() -> list[str]:
    sets = ["data.train={type: synthetic, num_samples: 4, size: [32, 48], seed: 0}", "data.val=null",
            "data.batch_size=2", "data.num_workers=0", "trainer.max_epochs=1", "trainer.accelerator=cpu",
            "trainer.precision=fp32", "model.name=test_resnet", "final_eval=null", "logging.progress_bar=false",
            "logging.tensorboard=false"]
    return [arg for item in sets for arg in ("--set", item)]


def _damaged_run(run: Path) -> Path:
    """A run folder as `train` leaves it, whose only checkpoint was cut in half after the fact."""
    import torch
    from depthsmith.train.config import dump_config, resolve_config

    sets = _tiny_train()[1::2]
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text(dump_config(resolve_config("quickstart", sets)))
    torch.save({"global_step": 2, "state_dict": {"w": torch.ones(1000)}, "loops": {}}, run / "checkpoints/last.ckpt")
    data = (run / "checkpoints/last.ckpt").read_bytes()
    (run / "checkpoints/last.ckpt").write_bytes(data[: len(data) // 2])
    return run


def _main(argv: list[str]) -> None:
    from depthsmith.cli import main

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(argv)


def option_cases(tmp: Path, model: Path, good: Path, predict) -> list[dict]:
    """Valid input refused, options ignored, errors that name the wrong thing."""
    from PIL import Image

    d = tmp / "options"
    d.mkdir()
    photo = d / "phone.jpg"
    a = np.zeros((9000, 12000, 3), np.uint8)
    a[..., 0] = (np.arange(12000) // 47 % 2 * 255)[None]
    Image.fromarray(a).save(photo, quality=85)
    del a
    enc = d / "encoding.yaml"
    enc.write_text(f"type: paired\ncsv_path: {d / 'list.csv'}\nencoding: -1000\n")
    onnx = d / "opset1.onnx"

    def depth_size(out: Path, stem: str, size) -> Any:
        f = out / f"{stem}_depth16.png"
        return lambda: f.is_file() and Image.open(f).size == size

    return [
        dict(name="predict: 12000 x 9000 JPEG (a phone photo)", expect="ok", argv=predict([photo], d / "photo"),
             check=depth_size(d / "photo", "phone", (6000, 4500))),
        dict(name="export --opset 1", expect="error", token="opset", check=lambda: not onnx.exists(),
             argv=["export", "--model", str(model), "--out", str(onnx), "--opset", "1"]),
        dict(name="predict --cmap no_such_cmap", expect="error", token="no_such_cmap",
             argv=predict([good], d / "cmap", "--cmap", "no_such_cmap")),
        dict(name="bench --height 0 --width 0", expect="error", token="--height",
             argv=["bench", "--model", str(model), "--height", "0", "--width", "0", "--backends", "torch-fp32"]),
        dict(name="train --set trainer.limit_train_batches=0", expect="error", token="limit_train_batches",
             argv=["train", "--config", "quickstart", "--run-dir", str(d / "run0"), *_tiny_train(),
                   "--set", "trainer.limit_train_batches=0"]),
        dict(name="predict --model unknown Hub id (offline)", expect="error", token="someuser/nonexistent-depth-model",
             argv=predict([good], d / "hub", model_arg="someuser/nonexistent-depth-model")),
        dict(name="data check: encoding -1000", expect="error", token=[enc.name, "encoding"],
             argv=["data", "check", str(enc), "--out", str(d / "c")]),
    ]


def format_cases(tmp: Path, model: Path, good: Path, predict) -> list[dict]:
    """Broken model files of every format on main: transformers folders, .keras, .onnx, .xml."""
    import fault_corpus as fc
    import depthsmith
    from depthsmith.runtime.export_onnx import export_onnx
    from depthsmith.runtime.openvino_ir import convert_to_openvino

    d = tmp / "formats"
    d.mkdir()
    cases = []
    clean = fc.tiny_hf_folder(d / "hf_clean")
    # --backend torch: the auto backend's measurement of a ViT is slow, and the case is about loading.
    cases.append(dict(name="transformers folder: clean", expect="ok",
                      argv=predict([good], d / "o_clean", "--backend", "torch", model_arg=clean),
                      check=lambda: (d / "o_clean" / "good_depth16.png").is_file()))
    for name, (fault, file, text) in sorted(fc.HF_CASES.items()):
        folder = Path(shutil.copytree(clean, d / f"hf_{name}"))
        fault(folder)
        cases.append(dict(name=f"transformers folder: {name}", expect="error", token=[str(folder / file), text],
                          argv=predict([good], d / "o", model_arg=folder)))
    net = depthsmith.load_model(model)
    export_onnx(net, d / "m.onnx", 64, 64)
    convert_to_openvino(d / "m.onnx", d / "m.xml")
    half = lambda b: b[: len(b) // 2]
    (d / "trunc.onnx").write_bytes(half((d / "m.onnx").read_bytes()))
    (d / "trunc.xml").write_text(half((d / "m.xml").read_text()))
    shutil.copy(d / "m.bin", d / "trunc.bin")
    shutil.copy(d / "m.xml", d / "nobin.xml")
    shutil.copy(d / "m.xml", d / "shortbin.xml")
    (d / "shortbin.bin").write_bytes(half((d / "m.bin").read_bytes()))
    (d / "bad.keras").write_bytes(b"PK\x03\x04 not a whole zip")
    for label, target in (("truncated .onnx", "trunc.onnx"), ("truncated .xml", "trunc.xml"),
                          (".xml without its .bin", "nobin.xml"), (".xml with a truncated .bin", "shortbin.xml"),
                          ("broken .keras", "bad.keras")):
        cases.append(dict(name=f"model file: {label}", expect="error", token=target,
                          argv=predict([good], d / "o", model_arg=d / target)))
    return cases


def model_cases(tmp: Path, model: Path, good: Path, predict) -> list[dict]:
    import fault_corpus as fc  # the same corruptions as the tests

    cases = []
    for name, corrupt in sorted(fc.MODEL_CASES.items()):
        folder = Path(shutil.copytree(model, tmp / "models" / name))
        target, expected = corrupt(folder)
        weights = name.startswith(("safetensors", "weight_of", "weights_missing", "path_is"))
        token = "model.safetensors" if weights else "config.json"  # the file the error must name
        if name == "weight_with_nan":
            token = [str(target), expected]  # the folder and the tensor
        cases.append(dict(name=f"model: {name}", argv=predict([good], tmp / "o", model_arg=target),
                          expect="error", token=token))
    for path in ("./runs/my_modle", "~/no/such/model", "best.safetensors"):
        cases.append(dict(name=f"model: mistyped path {path}", argv=predict([good], tmp / "o", model_arg=path),
                          expect="error", token="does not exist"))
    return cases


def data_cases(tmp: Path, model: Path) -> list[dict]:
    import fault_corpus as fc

    cases = []

    def dataset(name: str, lines: list[str], pairs=("a", "b"), depth=None, glob=False) -> Path:
        d = tmp / "data" / name
        d.mkdir(parents=True)
        for stem in pairs:
            fc.pair_files(d, stem, depth if stem == "b" else None)
        if glob:
            cfg = f"type: paired\nrgb_glob: rgb/**/*.png\ndepth_glob: depth/**/*.png\nroot: {d}\nencoding: png_mm\n"
        else:
            (d / "list.csv").write_bytes("\n".join(lines).encode("utf-8") if isinstance(lines, list) else lines)
            cfg = f"type: paired\ncsv_path: {d / 'list.csv'}\nencoding: png_mm\n"
        (d / "data.yaml").write_text(cfg)
        return d

    ok = ["rgb/a.png,depth/a.png", "rgb/b.png,depth/b.png"]
    for label, lines in (("utf-8 BOM", b"\xef\xbb\xbf" + "\n".join(ok).encode()), ("header row", ["rgb,depth", *ok]),
                         ("header with dotted names", ["rgb.path,depth.path", *ok])):
        d = dataset(label.replace(" ", "_"), lines)
        cases.append(dict(name=f"data check: csv {label}", argv=["data", "check", str(d / "data.yaml"), "--out", str(d / "c")],
                          expect="ok", check=lambda d=d: (d / "c" / "preview.png").is_file()))
    for label, lines, line in (("semicolon", ["rgb,depth", "rgb/a.png;depth/a.png", ok[1]], 2),
                               ("single column", ["rgb,depth", ok[0], "rgb/b.png"], 3)):
        d = dataset(label.replace(" ", "_"), lines)
        cases.append(dict(name=f"data check: csv {label}", argv=["data", "check", str(d / "data.yaml")],
                          expect="error", token=f"list.csv:{line}"))  # the file and the line
    for label, depth in (("all-invalid depth", np.zeros((40, 52), np.uint16)),
                         ("size mismatch", np.full((30, 52), 900, np.uint16))):
        d = dataset(label.replace(" ", "_"), ok, depth=depth)
        cases.append(dict(name=f"data check: {label}", argv=["data", "check", str(d / "data.yaml"), "--out", str(d / "c")],
                          expect="error", token="depth/b.png"))
    d = dataset("bomb_depth", ok)
    fc.bomb_above_limit(d / "depth" / "b.png")  # Pillow alone would warn, then decode 100 megapixels
    cases.append(dict(name="data check: decompression-bomb depth file", argv=["data", "check", str(d / "data.yaml"),
                      "--out", str(d / "c")], expect="error", token="depth/b.png"))
    d = dataset("missing_depth", ok)
    (d / "depth" / "b.png").unlink()
    cases.append(dict(name="data check: missing depth file", argv=["data", "check", str(d / "data.yaml"), "--out", str(d / "c")],
                      expect="error", token="depth/b.png"))
    d = dataset("loop", [], glob=True)
    (d / "rgb" / "loop").symlink_to(d)
    cases.append(dict(name="data check: globs over a symlink loop", argv=["data", "check", str(d / "data.yaml"), "--out", str(d / "c")],
                      expect="ok", check=lambda d=d: (d / "c" / "preview.png").is_file()))
    for label, text in (("unclosed bracket", "type: paired\ncsv_path: [unclosed\n"),
                        ("bad indent", "type: paired\n  encoding: png_mm\n bad: indent\n"),
                        ("a list", "- just\n- a list\n")):
        y = tmp / "data" / f"{label.replace(' ', '_')}.yaml"
        y.write_text(text)
        cases.append(dict(name=f"data check: yaml {label}", argv=["data", "check", str(y)], expect="error", token=y.name))
        cases.append(dict(name=f"eval: yaml {label}", argv=["eval", "--model", str(model), "--data", str(y), "--protocol",
                                                             "none", "--out", str(tmp / "e")], expect="error", token=y.name))
    return cases


def run_case(case: dict, timeout: int) -> tuple[str, str]:
    from depthsmith.cli import main

    out, err = io.StringIO(), io.StringIO()
    if "before" in case:
        case["before"]()
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(Hang()))
    signal.alarm(timeout)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(case["argv"])
            except SystemExit as exc:  # argparse refusing an argument: a clear error
                code = exc.code
    except Hang:
        return "hang", ""
    except BaseException as exc:  # noqa: BLE001 - anything escaping main is a traceback for the user
        return "traceback", f"{type(exc).__name__}: {str(exc)[:160]}"
    finally:
        signal.alarm(0)
    text = out.getvalue() + err.getvalue()
    check = case.get("check", lambda: True)
    if case["expect"] == "ok":
        return ("ok" if code == 0 and check() else "wrong"), text[-200:]
    tokens = case["token"] if isinstance(case["token"], list) else [case["token"]]
    named = all(t in text for t in tokens)
    right_code = code == case["code"] if "code" in case else code not in (0, None)
    return ("clear" if right_code and named and check() else "wrong"), text[-200:]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default=str(ROOT / "src"), help="the depthsmith source tree to probe")
    p.add_argument("--timeout", type=int, default=60)
    p.add_argument("--verbose", action="store_true")
    p.add_argument("--json", help="also write every case's outcome to this file")
    args = p.parse_args()
    sys.path.insert(0, args.src)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a path tried as a Hub id fails fast instead of retrying
    limit = 8 * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # the 8 GiB machine

    import torch
    from PIL import Image

    import depthsmith

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        model = depthsmith.create_model("test_resnet", decoder="unet", decoder_kwargs={"filters": [16, 16, 8, 8, 8]})
        model.save_pretrained(tmp / "model")
        cases = build_cases(tmp, tmp / "model")
        # One uncounted run first: the auto backend's measurement and the first imports would
        # otherwise fall on whichever case sorts first and could pass its time limit.
        warm = tmp / "warm.png"
        Image.fromarray(np.zeros((40, 52, 3), np.uint8)).save(warm)
        _main(["predict", str(warm), "--model", str(tmp / "model"), "--out", str(tmp / "warm"), "--device", "cpu"])
        results = []
        for case in cases:
            outcome, detail = run_case(case, args.timeout)
            results.append((case["name"], case["expect"], outcome, detail))
            if args.verbose or outcome in ("wrong", "traceback", "hang"):
                print(f"{outcome:9s} {case['name']}: {detail.strip().splitlines()[-1] if detail.strip() else ''}")
    if args.json:
        Path(args.json).write_text(json.dumps([dict(zip(("name", "expect", "outcome", "detail"), r)) for r in results],
                                              indent=1))
    counts = Counter(outcome for *_, outcome, _ in results)
    bad = sum(1 for _, expect, *_ in results if expect == "error")
    print(json.dumps({"src": args.src, "cases": len(results), "bad_inputs": bad, "valid_inputs": len(results) - bad,
                      **{k: counts.get(k, 0) for k in ("clear", "ok", "wrong", "traceback", "hang")}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
