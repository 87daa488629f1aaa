"""Evaluating a relative zoo model (a converted Depth Anything V2, output kind ``disparity``): ``auto``
takes the kind's own alignment (least squares in disparity space, as MiDaS and Depth Anything
evaluate), and an alignment that is wrong for the kind is refused with an InputError naming the
valid one, before any image is run."""

from __future__ import annotations

import pytest
import torch

import depthsmith
from depthsmith.errors import InputError
from depthsmith.evaluate import evaluate
from helpers import tiny_hf_depth_anything

pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def relative_zoo_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("da2-relative")
    tiny_hf_depth_anything("relative").save_pretrained(folder)
    return depthsmith.load_model(folder)


def _samples(n: int = 2) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        image = torch.rand(3, 42, 56, generator=g)
        depth = 1.0 + 4.0 * image.mean(dim=0, keepdim=True)
        out.append({"image": image, "depth": depth, "mask": depth > 0, "name": f"img{i}"})
    return out


def test_auto_alignment_of_a_disparity_model_is_least_squares_in_disparity(relative_zoo_model):
    assert relative_zoo_model.output == "disparity"
    native = dict(protocol="none", working_size="native", progress=False)  # the resize is not under test here
    auto = evaluate(relative_zoo_model, _samples(), **native)
    explicit = evaluate(relative_zoo_model, _samples(), align="lstsq_disparity", **native)
    assert auto.settings["align"] == "lstsq_disparity"
    assert auto.metrics["abs_rel"] == explicit.metrics["abs_rel"] and auto.metrics["abs_rel"] > 0


@pytest.mark.parametrize("align", ["none", "median", "lstsq"])
def test_a_wrong_alignment_for_a_disparity_model_is_refused(relative_zoo_model, align):
    with pytest.raises(InputError, match="output kind is 'disparity'.*lstsq_disparity"):
        evaluate(relative_zoo_model, _samples(1), protocol="none", align=align, progress=False)
