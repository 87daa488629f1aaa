"""Benchmark helpers: FLOP count against a hand count, the table and its target verdicts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import depthsmith
from depthsmith.bench import (BenchReport, BenchRow, agreement, ceilings, count_flops, fit_depth_head, bench_table,
                              matmul_rate, run_bench, synthetic_scene)
from depthsmith.bench.run import _time_interleaved
from depthsmith.commands.bench import bench_cli


class _Attention(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.flatten(2).transpose(1, 2).reshape(1, 2, -1, 6)  # (batch, heads, tokens, dim)
        return torch.nn.functional.scaled_dot_product_attention(q, q, q)


def test_count_flops_counts_attention_on_the_cpu():
    # 3 x 4 x 10 input -> 2 heads of 10 tokens x 6 dims: q.k and attn.v are 10 x 10 x 6 multiply-adds each
    tokens, dim, heads = 10, 6, 2
    assert count_flops(_Attention(), 4, 10) * 1e9 == heads * 2 * (2 * tokens * tokens * dim)


def test_count_flops_matches_a_hand_count():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 20, 10))
    conv = 2 * 8 * (3 * 3 * 3) * 16 * 20  # 2 FLOPs per multiply-add, per output element
    linear = 2 * (8 * 16 * 20) * 10
    assert count_flops(net, 16, 20) == (conv + linear) / 1e9


def test_matmul_rate_is_flops_over_the_best_time(monkeypatch):
    """2 n^3 FLOPs over the fastest of the timed calls: a fake clock makes each call take a known time."""
    from depthsmith.bench import run as bench_run

    durations = iter([0.5, 0.25, 0.4])  # seconds per timed call; best 0.25
    clock = {"now": 0.0, "start": True}

    def fake_perf_counter() -> float:
        if not clock["start"]:
            clock["now"] += next(durations)
        clock["start"] = not clock["start"]
        return clock["now"]

    monkeypatch.setattr(bench_run.time, "perf_counter", fake_perf_counter)
    assert matmul_rate(torch.float32, n=64, repeats=3) == pytest.approx(2 * 64**3 / 0.25 / 1e9)


def test_agreement_by_hand():
    ref = torch.tensor([1.0, 2.0, 4.0, 8.0])
    fast = torch.tensor([1.1, 2.0, 4.0, 4.0])  # 10% off, exact, exact, half
    rel, delta1 = agreement(fast, ref)
    assert np.isclose(rel, (0.1 + 0 + 0 + 0.5) / 4) and delta1 == 0.75


def test_fitted_head_recovers_a_head_that_made_the_target():
    """A depth map made by a known head lies in the span of the head's inputs: fitting recovers it."""
    torch.manual_seed(0)
    model = depthsmith.create_model("test_resnet", decoder="unet").eval()
    x = torch.from_numpy(synthetic_scene(96, 128)[0]).permute(2, 0, 1)[None]
    with torch.no_grad():
        model.decoder.head.weight.mul_(30.0)  # a head whose output varies (about 4.7-7.1 m)
        target = model(x)[0, 0]
        model.decoder.head.reset_parameters()
    assert target.max() / target.min() > 1.4
    fit_depth_head(model, x, target, ridge=1e-9)
    with torch.no_grad():
        np.testing.assert_allclose(model(x)[0, 0].numpy(), target.numpy(), rtol=1e-3)


def test_fitted_head_follows_a_depth_map():
    """On a ray-cast room the fit of a random-feature head beats the best constant (the mean depth)
    and follows the room's depth far better than the unfitted head: a stand-in for trained weights."""
    torch.manual_seed(0)
    model = depthsmith.create_model("test_resnet", decoder="unet").eval()
    rgb, depth = synthetic_scene(96, 128)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None]
    with torch.no_grad():
        before = model(x)[0, 0].numpy()
    fit_depth_head(model, x, torch.from_numpy(depth))
    with torch.no_grad():
        pred = model(x)[0, 0].numpy()
    corr = [np.corrcoef(p.ravel(), depth.ravel())[0, 1] for p in (before, pred)]
    assert corr[1] > corr[0] + 0.25
    assert np.sqrt(np.mean((pred - depth) ** 2)) < depth.std()  # std = RMSE of predicting the mean depth


def test_bench_table_has_every_row_and_the_verdicts(capsys, one_thread):
    torch.manual_seed(0)
    model = depthsmith.create_model("test_resnet", decoder="unet")
    report = run_bench(model, 64, 80, batch_sizes=(1, 2), backends=["fp32", "bf16_cl", "predict"], repeats=1,
                       gemm_size=512)
    assert [(r.backend, r.batch) for r in report.rows] == [
        ("fp32", 1), ("fp32", 2), ("bf16_cl", 1), ("bf16_cl", 2), ("predict", 1), ("predict", 2)]
    assert report.gflops == count_flops(model, 64, 80)
    for row in report.rows:
        assert row.latency_ms > 0 and row.floor_ms > 0
        assert np.isclose(row.images_per_s, 1000 * row.batch / row.latency_ms)
    table = bench_table(report)
    assert "| PyTorch fp32 eager | 1 |" in table and "ceiling, batch 2:" in table
    # the default path's row names what backend auto measured and picked for each batch
    for row in (r for r in report.rows if r.backend == "predict"):
        assert row.label.startswith("predict() default path (backend auto) -> quiet: ")
        assert f"| {row.label} | {row.batch} |" in table
    assert bench_cli(model, 64, 80, [1], ["fp32", "predict"], repeats=1, gemm_size=512) == 0
    assert "GEMM rate" in capsys.readouterr().out


def test_ceiling_is_fp32_latency_over_the_bf16_floor():
    # 2 GFLOPs per image; GEMM 100 GFLOP/s fp32, 400 bf16 -> fp32 floor 20 ms, bf16 floor 5 ms per image.
    report = BenchReport("m", 8, 8, 2.0, 1.0, {"fp32": 100.0, "bf16": 400.0})
    for batch, ms in ((1, 30.0), (4, 100.0)):
        report.rows.append(BenchRow("fp32", batch, ms, "fp32", 2.0, 64, floor_ms=20.0 * batch))
    lines = ceilings(report)
    # batch 1: 30 ms / 5 ms = 6x; batch 4: 100 ms / 20 ms = 5x.
    assert lines == [
        "ceiling, batch 1: fp32 eager runs at 1.50x its floor; a bf16 path at exactly its floor would be 6.00x "
        "fp32 eager",
        "ceiling, batch 4: fp32 eager runs at 1.25x its floor; a bf16 path at exactly its floor would be 5.00x "
        "fp32 eager",
    ]


def test_backends_are_timed_round_robin():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("fp32", "bf16", "onnx")}
    ms = _time_interleaved(fns, repeats=3, budget_s=60.0)
    # one warm-up each, then three rounds of one call each, in the same order every round
    assert calls == ["fp32", "bf16", "onnx"] * 4
    assert set(ms) == set(fns) and all(v >= 0 for v in ms.values())


def test_quick_timing_has_no_warm_up_and_one_round():
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in ("fp32", "torch-bf16")}
    _time_interleaved(fns, repeats=1, budget_s=0.0, warmup=False, min_rounds=1)
    assert calls == ["fp32", "torch-bf16"]


def test_peer_rows_run_the_onnx_file_at_their_own_defaults(tmp_path):
    """ONNX Runtime and OpenVINO rows at their default settings on an ONNX file (here a hand-made one:
    depth = 0.5 + weighted sum of the RGB channels, by a 1x1 convolution), against numpy; OpenVINO
    within bf16 rounding where it defaults to bf16."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    from onnx import TensorProto, helper, numpy_helper

    from depthsmith.bench.rows import PEERS, default_backends, row_runner

    w = np.array([0.2, 0.3, 0.5], np.float32).reshape(1, 3, 1, 1)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["depth"])], "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, ["batch", 1, "height", "width"])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([0.5], np.float32), "b")])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    x = torch.rand(1, 3, 20, 30)
    ref = torch.from_numpy((x.numpy() * w).sum(1, keepdims=True) + 0.5)
    assert not set(PEERS) & set(default_backends())  # opt-in rows
    for name in PEERS:
        run, precision = row_runner(path, name, 20, 30)
        rel = agreement(run(x), ref)[0]
        assert rel < (1e-6 if precision == "fp32" else 1e-2), (name, precision, rel)


def test_smp_reference_row_is_timed_at_its_own_size(one_thread):
    pytest.importorskip("segmentation_models_pytorch")
    model = depthsmith.create_model("test_resnet", decoder="unet")
    report = run_bench(model, 64, 80, batch_sizes=(1,), backends=["fp32"], repeats=1, smp_reference=True,
                       gemm_size=256)
    smp_row = report.row("smp", 1)
    assert smp_row is not None and "tu-inception_resnet_v2" in smp_row.label
    assert smp_row.pixels == 256 * 320 and smp_row.latency_ms > 0
    # no speed-up against a different model; its floor at the fp32 GEMM rate of the same run
    assert smp_row.speedup != smp_row.speedup
    assert np.isclose(smp_row.floor_ms, 1000 * smp_row.gflops / report.rates["fp32"])
    assert smp_row.gflops > 10 * report.gflops  # IRv2 at 256x320 against a tiny resnet at 64x80


def test_int8_row_has_its_accuracy_floor_and_the_cpu_flags(one_thread, tmp_path):
    """The OpenVINO int8 row: accuracy fields measured (not NaN) and in range, its floor from the
    measured int8 rate; the header names the CPU and which relevant flags it has and lacks."""
    pytest.importorskip("nncf")
    from depthsmith.cpu import RELEVANT_FLAGS, cpu_model, relevant_flags

    torch.manual_seed(0)
    model = depthsmith.create_model("test_resnet", decoder="unet", decoder_kwargs={"filters": [16, 8, 8, 8, 8]})
    real = tmp_path / "real"
    real.mkdir()
    from PIL import Image

    Image.fromarray((synthetic_scene(48, 64, seed=3)[0] * 255).astype(np.uint8)).save(real / "00000_rgb.png")
    report = run_bench(model, 64, 80, batch_sizes=(1,), backends=["fp32", "openvino-int8"], repeats=1,
                       gemm_size=256, rooms=1, real_dir=real)
    int8 = report.row("openvino-int8", 1)
    assert int8.precision == "int8" and report.rates["int8"] > 0
    assert np.isclose(int8.floor_ms, 1000 * int8.gflops / report.rates["int8"])
    for value in (int8.rel_diff, int8.delta1, int8.rel_diff_real, int8.delta1_real):
        assert 0 <= value <= 1
    table = bench_table(report)
    assert f"CPU {cpu_model()}" in table and "int8 (OpenVINO int8" in table
    flags_line = next(line for line in table.splitlines() if line.startswith("CPU "))
    for flag in RELEVANT_FLAGS:  # each relevant flag is named, as present or as absent
        assert flag in flags_line
        assert (flag in flags_line.split("(absent:")[0]) == (flag in relevant_flags())
    assert "1 real frames from" in table
