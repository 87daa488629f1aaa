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
    return cases


def model_cases(tmp: Path, model: Path, good: Path, predict) -> list[dict]:
    import fault_corpus as fc  # the same corruptions as the tests

    cases = []
    for name, corrupt in sorted(fc.MODEL_CASES.items()):
        folder = Path(shutil.copytree(model, tmp / "models" / name))
        target, _ = corrupt(folder)
        weights = name.startswith(("safetensors", "weight_of", "weights_missing", "path_is"))
        token = "model.safetensors" if weights else "config.json"  # the file the error must name
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
    named = case["token"] in text
    return ("clear" if code not in (0, None) and named and check() else "wrong"), text[-200:]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--src", default=str(ROOT / "src"), help="the depthsmith source tree to probe")
    p.add_argument("--timeout", type=int, default=60)
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, args.src)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a path tried as a Hub id fails fast instead of retrying
    limit = 8 * 2**30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))  # the 8 GiB machine

    import torch

    import depthsmith

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.manual_seed(0)
        model = depthsmith.create_model("test_resnet", decoder="unet", decoder_kwargs={"filters": [16, 16, 8, 8, 8]})
        model.save_pretrained(tmp / "model")
        results = []
        for case in build_cases(tmp, tmp / "model"):
            outcome, detail = run_case(case, args.timeout)
            results.append((case["name"], case["expect"], outcome, detail))
            if args.verbose or outcome in ("wrong", "traceback", "hang"):
                print(f"{outcome:9s} {case['name']}: {detail.strip().splitlines()[-1] if detail.strip() else ''}")
    counts = Counter(outcome for *_, outcome, _ in results)
    bad = sum(1 for _, expect, *_ in results if expect == "error")
    print(json.dumps({"src": args.src, "cases": len(results), "bad_inputs": bad, "valid_inputs": len(results) - bad,
                      **{k: counts.get(k, 0) for k in ("clear", "ok", "wrong", "traceback", "hang")}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
