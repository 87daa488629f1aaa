"""Evaluation: predictions (from a model or saved) -> protocol -> metrics per image and overall.

`evaluate_predictions` is the core: it takes predictions in the model's output units at
any resolution, so saved predictions and hand-made test cases go through exactly the code
path that `evaluate(model, dataset)` uses (the protocol's scoring is ``evaluate.scorer``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..device import resolve_device
from ..errors import InputError
from ..resize import check_working_size, describe_working_size, resized, working_size_for

from .protocols import PROTOCOLS, Protocol, get_protocol
from ..metrics import as_map
from .scorer import EvalResult, Scorer, make_result, to_tensor, resize_map
from ..errors import InputError

__all__ = ["EvalResult", "evaluate", "evaluate_predictions", "resize_map", "SEED_INPUTS", "check_seed_input"]

def evaluate_predictions(
    preds: Iterable[Any],
    gts: Iterable[Any],
    protocol: str = "nyu-eigen",
    masks: Iterable[Any] | None = None,
    names: Sequence[str] | None = None,
    align: str = "auto",
    output: str = "metric",
    min_depth: float | None = None,
    max_depth: float | None = None,
    images: Iterable[Any] | None = None,
    keep_examples: int = 0,
    crop_mode: str = "exact",
) -> EvalResult:
    """Evaluate saved or hand-made predictions.

    preds: H' x W' maps in the model's output units (metres; [0, 1] for ``output='relative'``),
    at any resolution: each is upsampled bilinearly to its ground truth's size.
    gts: H x W metres, 0 = invalid. masks: optional H x W bool (True = valid).
    crop_mode: how a protocol's pixel crop (defined on 480 x 640) applies to ground truth of
    another size: 'exact' (refuse), 'scaled' or 'literal' (see ``metrics.crop_mask``).
    """
    proto = get_protocol(protocol, min_depth, max_depth)
    scorer = Scorer(proto, align, output, keep_examples, crop_mode)
    masks_it = iter(masks) if masks is not None else None
    images_it = iter(images) if images is not None else None
    for i, (pred, gt) in enumerate(zip(preds, gts, strict=True)):
        gt_np = as_map(to_tensor(gt), "gt")
        pred_t = scorer.sanitize(to_tensor(pred).to(torch.float64).cpu())
        pred_np = resize_map(pred_t, gt_np.shape).numpy()
        mask = None if masks_it is None else np.asarray(next(masks_it), dtype=bool)
        image = None if images_it is None else next(images_it)
        scorer.add(pred_np, gt_np, mask, names[i] if names is not None else f"{i:05d}", image)
    return make_result(scorer, {"source": "predictions"}, False, None)


def _load_model(model: Any) -> torch.nn.Module:
    if isinstance(model, (str, Path)):
        from depthsmith.models import load_model

        return load_model(model)
    return model


def _unreadable_name(data: Any, position: int) -> str:
    """A name for the skipped list, for a sample the dataset could not read."""
    names = getattr(data, "names", None)
    try:
        return f"{names()[position]} (unreadable)" if names is not None else f"sample {position} (unreadable)"
    except Exception:  # a reader that cannot name it either
        return f"sample {position} (unreadable)"


def _load_dataset(dataset: Any) -> Any:
    if isinstance(dataset, (str, Path, dict)):
        from depthsmith.data import build_dataset

        return build_dataset(dataset)
    return dataset


SEED_INPUTS = ("model", "raw")


@contextmanager
def _input_as(model: torch.nn.Module, seed_input: str) -> Iterator[None]:
    """``raw``: feed RGB x/255 straight to the network, as the seed's evaluate.py does (no per-image
    min-max, no BGR order), although the seed trained on BGR min-max input. ``model``: the model's
    own input normalisation (what it was trained with)."""
    if seed_input == "model":
        yield
        return
    if not hasattr(model, "input_norm"):
        raise InputError("seed_input='raw' needs a depthsmith DepthModel (it bypasses the model's input_norm)")
    norm = model.input_norm
    model.input_norm = torch.nn.Identity()
    try:
        yield
    finally:
        model.input_norm = norm


@torch.inference_mode()
def _predict(model: torch.nn.Module, x: torch.Tensor, flip_tta: bool, input_size: tuple[int, int] | None,
             rule: dict[str, Any] | None = None) -> torch.Tensor:
    """Model output at the input's size; optionally averaged with the flipped prediction. The network
    sees ``input_size`` (a protocol's fixed input, resized as its code does) or else the working size
    of ``rule`` (depthsmith.resize, the rule predict uses)."""
    size = tuple(x.shape[-2:])
    if input_size is not None and tuple(input_size) != size:
        x = F.interpolate(x, size=tuple(input_size), mode="bilinear", align_corners=False)
    elif input_size is None and rule is not None:
        x = resized(x, working_size_for(rule, *size))
    y = model(x)
    if flip_tta:
        y = 0.5 * (y + torch.flip(model(torch.flip(x, dims=[-1])), dims=[-1]))
    return resize_map(y.float(), size)


def evaluate(
    model: Any,
    dataset: Any,
    protocol: str = "nyu-eigen",
    flip_tta: bool = False,
    align: str = "auto",
    batch_size: int = 8,
    device: str | torch.device = "auto",
    min_depth: float | None = None,
    max_depth: float | None = None,
    progress: bool = True,
    input_size: tuple[int, int] | None = None,
    num_workers: int = 0,
    keep_examples: int = 0,
    max_images: int | None = None,
    seed_input: str = "model",
    crop_mode: str = "exact",
    working_size: dict[str, Any] | str | None = None,
) -> EvalResult:
    """Evaluate a model (object, folder or Hub id) on a dataset (object or config) under a protocol.

    The network sees each image at its own size (or ``input_size``, or the protocol's: the
    seed resizes to 240 x 320); the prediction is upsampled bilinearly to the ground truth.
    Images of different sizes are batched separately, so any dataset works.
    ``seed_input='raw'`` (protocol 'seed' only) reproduces the seed's evaluation input, RGB x/255
    without the model's normalisation (see ``_input_as``).
    ``working_size``: None or 'model' (the model's own working size, as predict uses it), 'native'
    (each image at its own size) or ``{"height": H, "width": W}``; a protocol that fixes the
    network input (``seed``: 240 x 320) and ``input_size`` take precedence.
    """
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    proto = get_protocol(protocol, min_depth, max_depth)
    check_seed_input(proto, seed_input)
    model, data = _load_model(model), _eval_data(dataset, max_images)
    dev = resolve_device(device)
    model = model.to(dev).eval()
    output = getattr(model, "output", "metric")
    scorer = Scorer(proto, align, output, keep_examples, crop_mode)
    size = input_size or proto.input_size
    rule = _size_rule(model, working_size, proto.name if size else None)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=list)
    eval_size: list[int] | None = list(size) if size else None  # network input size, for the report's GFLOPs
    with tqdm(total=len(data), desc=f"eval {proto.name}", unit="img", disable=not progress) as bar:
        for batch_start, samples in zip(range(0, len(data), batch_size), loader):
            scorer.skipped += [_unreadable_name(data, batch_start + i) for i, s in enumerate(samples) if s is None]
            readable = [s for s in samples if s is not None]
            seen = _score_batch(model, scorer, readable, dev, flip_tta, size, seed_input, keep_examples, rule)
            eval_size = eval_size or seen
            bar.update(len(samples))
    settings = {"source": "model", "model": getattr(model, "name", type(model).__name__), "device": str(dev),
                "batch_size": batch_size, "eval_size": eval_size, "seed_input": seed_input,
                "working_size": rule}
    result = make_result(scorer, settings, flip_tta, size)
    if rule is not None:  # the description says which size the network saw
        result.description = result.description.replace(
            "Network input: the image at its own size", f"Network input: the image resized to the working size "
            f"{describe_working_size(rule)} (bilinear, antialiased when shrinking)")
    return result


def _size_rule(model: Any, working_size: Any, fixed_by: str | None) -> dict[str, Any] | None:
    """The working-size rule eval resizes by (None: native), see ``evaluate``'s ``working_size``."""
    if fixed_by is not None:
        if isinstance(working_size, dict):
            raise InputError(f"--working-size {working_size}: protocol {fixed_by!r} fixes the network input size "
                             "itself; leave --working-size out (or use protocol none).")
        return None
    if working_size == "native":
        return None
    if working_size in (None, "model"):
        return getattr(model, "working_size", None)
    return check_working_size(working_size, "working_size")


def _eval_data(dataset: Any, max_images: int | None) -> Any:
    """The dataset to evaluate: loaded, bad samples dropped (not replaced), the first ``max_images``."""
    from torch.utils.data import Subset

    data = _load_dataset(dataset)
    if hasattr(data, "substitute_skipped"):
        data.substitute_skipped = False  # on_error=skip: a bad sample is dropped and counted, not replaced
    if max_images is not None and max_images < len(data):
        data = Subset(data, range(max_images))
    return data


def _score_batch(model: Any, scorer: Scorer, samples: list[dict[str, Any]], dev: torch.device, flip_tta: bool,
                 size: tuple[int, int] | None, seed_input: str, keep_examples: int,
                 rule: dict[str, Any] | None = None) -> list[int] | None:
    """Predict and score one batch of readable samples; returns the first network input size (H, W) or None."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, s in enumerate(samples):  # one forward per image size
        groups.setdefault(tuple(s["image"].shape), []).append(i)
    preds: dict[int, torch.Tensor] = {}
    first_size = None
    for members in groups.values():
        x = torch.stack([samples[i]["image"] for i in members]).to(dev)
        first_size = first_size or list(working_size_for(rule, int(x.shape[-2]), int(x.shape[-1])))
        with _input_as(model, seed_input):
            out = scorer.sanitize(_predict(model, x, flip_tta, size, rule)).cpu()
        preds.update(zip(members, out))
    for i, s in enumerate(samples):  # score in dataset order
        depth, mask = s["depth"].numpy(), s["mask"].numpy()
        image = s["image"].numpy() if len(scorer.examples) < keep_examples else None
        pred = resize_map(preds[i].double(), tuple(depth.shape[-2:]))
        scorer.add(pred.numpy(), depth, mask, s["name"], image)
    return first_size


def check_seed_input(proto: Protocol, seed_input: str) -> None:
    if seed_input not in SEED_INPUTS:
        raise InputError(f"seed_input must be one of {', '.join(SEED_INPUTS)}, got {seed_input!r}")
    if seed_input != "model" and not proto.raw_input:
        raw = ", ".join(p.name for p in PROTOCOLS.values() if p.raw_input)
        raise InputError(f"seed_input='raw' reproduces the seed's evaluation input: use it with protocol {raw} only "
                         f"(protocol 'seed' only), not {proto.name!r}")
