"""Everything worth checking on a lent CUDA GPU, in one run of under 8 minutes, as one table.

    python benchmarks/gpu_check.py              # all checks
    python benchmarks/gpu_check.py --quick      # fewer steps (a smoke run)

1. the CUDA tests: ``pytest tests/test_eval_model.py -k gpu``
2. training throughput of enc-dec-irv2 at 240x320, bf16-mixed + channels_last, on synthetic rooms
   read by DataLoader workers (images/s after warm-up)
3. inference latency at batch 1 and 8: fp32, bf16, fp16 (+ TensorRT through torch_tensorrt if importable)
4. CPU vs GPU: the same metrics from ``depthsmith.evaluate`` on the same synthetic rooms

On a machine without CUDA it prints why and exits 0 without running anything (so it can sit in
a script run everywhere). Each check has its own time budget; one that fails is reported in its
row and the others still run (exit code 1 if any failed).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
SIZE = (240, 320)


def _sync() -> None:
    torch.cuda.synchronize()


def cuda_tests(timeout_s: float) -> str:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests/test_eval_model.py", "-k", "gpu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    last = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    if proc.returncode != 0:
        raise RuntimeError(f"pytest exit {proc.returncode}: {last}")
    return last


def train_throughput(steps: int, batch: int = 8, workers: int = 4) -> str:
    import depthsmith
    from depthsmith.data.synthetic import SyntheticScenes
    from depthsmith.losses import build_loss

    model = depthsmith.create_model("enc-dec-irv2").cuda().to(memory_format=torch.channels_last).train()
    loss_fn = build_loss("paper")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    data = SyntheticScenes(num_samples=batch * (steps + 5), size=SIZE, seed=0)
    loader = torch.utils.data.DataLoader(data, batch_size=batch, num_workers=workers, pin_memory=True,
                                         persistent_workers=workers > 0, drop_last=True)
    done, start = 0, None
    for i, sample in enumerate(loader):
        if i == 3:  # warm-up: cuDNN autotuning, worker start-up
            _sync()
            start, done = time.perf_counter(), 0
        x = sample["image"].cuda(non_blocking=True).contiguous(memory_format=torch.channels_last)
        y, mask = sample["depth"].cuda(non_blocking=True), sample["mask"].cuda(non_blocking=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss, _ = loss_fn(model(x).float(), y, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += batch
    _sync()
    return f"{done / (time.perf_counter() - start):.1f} images/s (batch {batch}, {workers} workers, final loss {loss.item():.3f})"


def inference_latency(repeats: int) -> list[tuple[str, str]]:
    import depthsmith

    model = depthsmith.create_model("enc-dec-irv2").cuda().eval().to(memory_format=torch.channels_last)
    rows = []
    for batch in (1, 8):
        x = torch.rand(batch, 3, *SIZE, device="cuda").contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            ref = model(x)
            for name, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
                def run() -> torch.Tensor:
                    with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
                        return model(x).float()
                ms, out = _time(run, repeats)
                diff = ((out - ref).abs() / ref.clamp_min(1e-6)).mean().item()
                rows.append((f"inference {name}, batch {batch}", f"{ms:.2f} ms, mean rel diff vs fp32 {100 * diff:.3f}%"))
    try:
        import torch_tensorrt  # noqa: F401
    except ImportError:
        rows.append(("inference TensorRT", "skipped: torch_tensorrt not importable"))
    else:
        x = torch.rand(1, 3, *SIZE, device="cuda")
        trt = torch.compile(model, backend="tensorrt")
        with torch.inference_mode():
            ms, _ = _time(lambda: trt(x), repeats)
        rows.append(("inference TensorRT (torch.compile backend), batch 1", f"{ms:.2f} ms"))
    return rows


def _time(fn: Any, repeats: int) -> tuple[float, torch.Tensor]:
    out = fn()
    _sync()
    start = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    _sync()
    return 1000 * (time.perf_counter() - start) / repeats, out


def cpu_gpu_metrics() -> str:
    import depthsmith
    from depthsmith.data.synthetic import SyntheticScenes
    from depthsmith.evaluate import evaluate

    torch.manual_seed(0)
    model = depthsmith.create_model("test_resnet", decoder="unet").eval()
    data = SyntheticScenes(num_samples=8, size=(96, 128), seed=2)
    cpu = evaluate(model, data, protocol="none", device="cpu", progress=False).metrics
    gpu = evaluate(model, data, protocol="none", device="cuda", progress=False).metrics
    worst = max(abs(gpu[k] - cpu[k]) / max(abs(cpu[k]), 1e-6) for k in ("abs_rel", "rmse", "d1"))
    if worst > 1e-4:
        raise RuntimeError(f"CPU and GPU metrics differ by {worst:.2e} (relative): cpu {cpu}, gpu {gpu}")
    return f"abs_rel/rmse/d1 equal within {worst:.1e} relative"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer training steps and timing repeats")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing to check. "
              "Run this on a machine with an NVIDIA GPU.")
        return 0
    steps, repeats = (10, 5) if args.quick else (60, 30)
    started = time.perf_counter()
    rows: list[tuple[str, str]] = [("device", f"{torch.cuda.get_device_name()}, torch {torch.__version__}")]
    failed = False
    checks = [("CUDA tests (pytest -k gpu)", lambda: cuda_tests(240)),
              ("training enc-dec-irv2 240x320 bf16-mixed channels_last", lambda: train_throughput(steps)),
              ("inference", lambda: inference_latency(repeats)),
              ("CPU vs GPU metrics", cpu_gpu_metrics)]
    for name, check in checks:
        try:
            result = check()
            rows += result if isinstance(result, list) else [(name, result)]
        except Exception as err:  # report and go on: one broken check should not hide the others
            failed = True
            rows.append((name, f"FAILED: {type(err).__name__}: {err}"))
    rows.append(("total time", f"{time.perf_counter() - started:.0f} s"))
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"| {k:<{width}} | {v} |" for k, v in rows))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
