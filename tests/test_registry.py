"""Every registered entry through one shared tester, parametrised from the registries themselves, so
that adding a decoder, preset, protocol, dataset type or backend adds its tests:

* decoders (``list_decoders``) on tiny timm encoders at odd sizes: shape, finite positive depth,
  gradients into encoder and decoder;
* presets (``list_models``) built on the meta device (no memory, no forward) with the parameter
  counts the README states and the published ones; a forward only for the small ones;
* protocols (``PROTOCOLS``) against a NumPy reference written from the protocol's own fields;
* dataset types (``DATASETS``) on a fixture each (tests/registry_datasets.py; none = failure);
* backends (``list_backends``) against fp32 PyTorch within their documented tolerance.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import depthsmith
from depthsmith.models.decoders.registry import standalone_decoders
from depthsmith.data import DATASETS, build_dataset
from depthsmith.evaluate import PROTOCOLS, evaluate_predictions
from depthsmith.metrics import CROP_REFERENCE_SIZE, CROPS, FRACTION_CROPS
from depthsmith.runtime import available_backends, create_runner, get_backend, list_backends
from registry_datasets import DATASET_FIXTURES
from helpers import check_sample, tiny_varying_model

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

README = Path(__file__).resolve().parents[1] / "README.md"


# -- decoders -------------------------------------------------------------------------------------
TINY_ENCODERS = ["test_resnet", "test_convnext", "test_efficientnet", "test_vit"]  # timm's test models


@pytest.mark.parametrize("size", [(50, 70), (64, 96)])
@pytest.mark.parametrize("encoder", TINY_ENCODERS)
@pytest.mark.parametrize("decoder", standalone_decoders())
def test_every_decoder_on_tiny_encoders_at_odd_sizes(decoder: str, encoder: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    model = depthsmith.create_model(encoder, decoder=decoder, encoder_weights=None).train()
    y = model(torch.rand(2, 3, *size))
    assert y.shape == (2, 1, *size)
    assert torch.isfinite(y).all() and (y > 0).all()
    y.mean().backward()
    for part in ("encoder", "decoder"):
        params = [(n, p) for n, p in getattr(model, part).named_parameters() if p.requires_grad]
        assert params, f"{part} has no trainable parameter"
        dead = [n for n, p in params if p.grad is None or not torch.isfinite(p.grad).all()]
        assert not dead, f"{part} parameters without a finite gradient: {dead[:5]}"
        assert any(p.grad.abs().sum() > 0 for _, p in params), f"no gradient reaches the {part}"


# -- presets --------------------------------------------------------------------------------------
# Published totals the presets reproduce (the seed paper's Table 2, DenseDepth arXiv:1812.11941; Depth-Anything-V2's README). The
# three other Table 2 comparisons are left out: the paper does not publish where it cut them.
PUBLISHED = {"enc-dec-irv2": 31.15e6, "densedepth-densenet169": 42.6e6, "depth-anything-v2-small": 24.8e6,
             "depth-anything-v2-base": 97.5e6, "depth-anything-v2-large": 335.3e6}
FORWARD_LIMIT = 35e6  # presets above this are counted on the meta device only (keeps the module fast)


def _readme_counts() -> dict[str, float]:
    """'params (ours)' of README's preset tables: | `name` | what | 31.14M | published |."""
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|[^|]*\| ([0-9.]+)M \|", README.read_text(), flags=re.M)
    return {name: float(count) for name, count in rows}


def _meta_model(preset: str) -> depthsmith.DepthModel:
    with torch.device("meta"):  # shapes only: even the 334M-parameter ViT-L builds in well under a second
        return depthsmith.create_model(preset, encoder_weights=None)


@pytest.mark.parametrize("preset", depthsmith.list_models())
def test_every_preset_has_the_parameter_count_the_docs_state(preset: str) -> None:
    model = _meta_model(preset)
    assert all(p.is_meta for p in model.parameters())
    n = model.num_parameters()
    readme = _readme_counts()
    assert preset in readme, f"README's preset tables do not list {preset!r} with its parameter count"
    assert round(n / 1e6, 2) == readme[preset], f"{preset}: {n} parameters, README says {readme[preset]}M"
    if preset in PUBLISHED:
        assert abs(n - PUBLISHED[preset]) / PUBLISHED[preset] < 0.01, (n, PUBLISHED[preset])


@pytest.mark.parametrize("preset", depthsmith.list_models())
def test_every_small_preset_predicts_in_its_output_range(preset: str) -> None:
    if _meta_model(preset).num_parameters() > FORWARD_LIMIT:
        pytest.skip(f"{preset}: over {FORWARD_LIMIT / 1e6:g}M parameters, counted on the meta device only")
    torch.manual_seed(0)
    model = depthsmith.create_model(preset, encoder_weights=None).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 50, 70))
    assert y.shape == (1, 1, 50, 70) and torch.isfinite(y).all()
    if model.output == "metric":
        assert (y > 0).all() and (y < model.max_depth).all()
    elif model.output == "inverse":
        assert (y >= model.min_depth).all() and (y <= model.max_depth + 1e-4).all()
    else:
        assert (y >= 0).all()


# -- protocols ------------------------------------------------------------------------------------
def _pixels(proto, shape: tuple[int, int]) -> np.ndarray:
    """The protocol's crop as a boolean map, from the crop tables (pixel bounds on 480 x 640, or
    BTS's int(fraction * size))."""
    h, w = shape
    inside = np.zeros(shape, bool)
    if proto.crop is None:
        inside[:] = True
    elif proto.crop in FRACTION_CROPS:
        t, b, l, r = FRACTION_CROPS[proto.crop]
        inside[int(t * h):int(b * h), int(l * w):int(r * w)] = True
    else:
        t, b, l, r = CROPS[proto.crop]
        inside[t:b, l:r] = True
    return inside


def _errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    ratio = np.maximum(pred / gt, gt / pred)
    return {"abs_rel": float(np.mean(np.abs(pred - gt) / gt)), "sq": float(np.mean((pred - gt) ** 2)),
            "d1": float(np.mean(ratio < 1.25)), "n": int(gt.size)}


def _reference(proto, preds: list[np.ndarray], gts: list[np.ndarray], factor: float) -> dict[str, float]:
    """The protocol's numbers from its fields alone: scale, crop, valid range, mask, clamp, pooling."""
    lo = proto.min_depth if proto.min_depth is not None else 0.0
    hi = proto.max_depth if proto.max_depth is not None else math.inf
    assert proto.masked or not proto.pooled, "the tester has no reference for an unmasked pooled protocol yet"
    rows, pooled_p, pooled_g = [], [], []
    for pred, gt in zip(preds, gts):
        pred = pred * factor
        pred = np.clip(pred, lo, hi) if proto.clamp else pred
        inside = _pixels(proto, gt.shape)
        valid = inside & (gt > lo) & (gt < hi) if proto.masked else inside & (gt > 0)
        pooled_p.append(pred[valid]), pooled_g.append(gt[valid])
        row = _errors(pred[valid], gt[valid])
        if not proto.masked:
            # The seed's unmasked evaluation, computed directly: every pixel of the crop, holes
            # (gt = 0) included, in the formulas that stay finite there (the squared error; delta,
            # whose ratio is inf there: a failure); AbsRel divides by gt, so it keeps gt > 0.
            p, g = pred[inside], gt[inside]
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.maximum(p / g, g / p)
            row.update(sq=float(np.mean((p - g) ** 2)), d1=float(np.mean(ratio < 1.25)), n=int(p.size))
        rows.append(row)
    if proto.pooled:
        row = _errors(np.concatenate(pooled_p), np.concatenate(pooled_g))
        return {"abs_rel": row["abs_rel"], "rmse": math.sqrt(row["sq"]), "d1": row["d1"], "n_valid": row["n"]}
    return {"abs_rel": float(np.mean([r["abs_rel"] for r in rows])),
            "rmse": float(np.mean([math.sqrt(r["sq"]) for r in rows])),
            "d1": float(np.mean([r["d1"] for r in rows])), "n_valid": sum(r["n"] for r in rows)}


def _scene(proto, rng: np.random.Generator) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two 480 x 640 ground truths reaching past both ends of the range, with holes; metric
    predictions with per-image different errors (so pooled and per-image means differ) and values
    past both bounds (so clamping shows)."""
    hi = proto.max_depth if proto.max_depth is not None else 100.0
    lo = proto.min_depth or 0.0
    gts, preds = [], []
    for noise, holes in ((0.2, 0.05), (0.6, 0.4)):
        gt = rng.uniform(0.5, 1.2 * hi, CROP_REFERENCE_SIZE)
        if lo > 0:
            gt[rng.random(gt.shape) < 0.02] = 0.5 * lo  # below the range: out under a masked protocol
        gt[rng.random(gt.shape) < holes] = 0.0
        gts.append(gt)
        pred = np.where(gt > 0, gt, 3.0) * np.exp(rng.normal(0.0, noise, gt.shape))
        if lo > 0:
            pred[rng.random(gt.shape) < 0.01] = 0.1 * lo  # below the range: clamped up where the protocol clamps
        preds.append(pred)
    return preds, gts


@pytest.mark.parametrize("name", list(PROTOCOLS))
def test_every_protocol_matches_a_reference_from_its_own_fields(name: str) -> None:
    proto = PROTOCOLS[name]
    preds, gts = _scene(proto, np.random.default_rng(0))
    # A protocol with a fixed relative range scores a relative [0, 1] output: feed it one.
    output = "relative" if proto.relative_range is not None else "metric"
    factor = (proto.relative_range if output == "relative" else 1.0) * (proto.fixed_scale or 1.0)
    unit = proto.relative_range if output == "relative" else 1.0
    result = evaluate_predictions([p / unit for p in preds], gts, protocol=name, output=output)
    reference = _reference(proto, [p / unit for p in preds], gts, factor)
    assert result.metrics["n_valid"] == reference["n_valid"]
    for key in ("abs_rel", "rmse", "d1"):
        assert result.metrics[key] == pytest.approx(reference[key], rel=1e-9), key


# -- dataset types --------------------------------------------------------------------------------
def test_every_dataset_fixture_is_a_registered_type() -> None:
    assert set(DATASET_FIXTURES) <= set(DATASETS), sorted(set(DATASET_FIXTURES) - set(DATASETS))


@pytest.mark.parametrize("kind", list(DATASETS))
def test_every_dataset_type_yields_the_documented_sample(kind: str, tmp_path: Path) -> None:
    if kind not in DATASET_FIXTURES:
        pytest.fail(f"dataset type {kind!r} has no fixture: add a builder to tests/registry_datasets.py")
    case = DATASET_FIXTURES[kind](tmp_path, np.random.default_rng(0))
    dataset = build_dataset(dict(case.config))
    assert isinstance(dataset, DATASETS[kind]) and len(dataset) >= 1
    sample = dataset[0]
    assert {"image", "depth", "mask", "name"} <= set(sample)
    if case.rgb is not None:  # metres, mask, RGB and dtypes against what the fixture wrote
        check_sample(sample, case.rgb, case.mm, depth_tol=case.depth_tol, rgb_tol=case.rgb_tol)
        return
    h, w = sample["depth"].shape[-2:]  # a generated dataset: the contract and plausible metres
    assert sample["image"].dtype == torch.float32 and sample["image"].shape == (3, h, w)
    assert 0 <= sample["image"].min() and sample["image"].max() <= 1
    assert sample["depth"].dtype == torch.float32 and sample["mask"].dtype == torch.bool
    assert sample["mask"].shape == sample["depth"].shape == (1, h, w) and isinstance(sample["name"], str)
    assert torch.equal(sample["mask"], sample["depth"] > 0) and torch.isfinite(sample["depth"]).all()
    assert 0.1 < sample["depth"][sample["mask"]].min() and sample["depth"].max() < 100.0  # metres, not mm


# -- backends -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model() -> depthsmith.DepthModel:
    """A tiny model whose depth varies over a few metres (head scaled up: a random head gives a
    near-constant map, on which precision differences would not show)."""
    return tiny_varying_model()


def _backend_params() -> list:
    slow = {"torch-compile"}  # compiles per size with inductor: minutes on a busy CPU
    return [pytest.param(n, marks=pytest.mark.slow) if n in slow else n for n in list_backends()]


@pytest.mark.parametrize("name", _backend_params())
def test_every_backend_matches_fp32_within_its_tolerance(name: str, tiny_model) -> None:
    if name not in available_backends():
        with pytest.raises(ValueError, match="not installed") as err:  # and says so when asked for
            get_backend(name)
        pytest.skip(str(err.value))  # the reason: which package is missing, and how to install it
    from depthsmith.bench import agreement
    from depthsmith.bench import synthetic_rooms

    rooms = torch.cat(synthetic_rooms(2, 64, 96))
    with torch.no_grad():
        ref = tiny_model(rooms)
    options = {"precision": "fp32"} if name == "torch-compile" else {}
    runner = create_runner(name, tiny_model, device="cpu", **options)
    out = runner(rooms.numpy())  # arrays are accepted as well as tensors
    assert runner.backend == name and out.shape == (2, 1, 64, 96) and out.dtype == torch.float32
    rel, delta1 = agreement(out, ref)
    spec = get_backend(name)  # torch-compile's tolerance covers bf16; run in fp32 it is held to fp32's
    tolerance = spec.tolerance if spec.precision != "auto" else get_backend("torch-fp32").tolerance
    assert rel <= tolerance, f"{name}: mean relative difference {rel:.2e}"
    assert delta1 >= 0.98 and runner.is_metric and runner.max_depth == tiny_model.max_depth
