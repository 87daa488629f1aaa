"""transformers ZoeDepth (``Intel/zoedepth-nyu``, ``-nyu-kitti`` layouts): a tiny random
``ZoeDepthForDepthEstimation`` saved with ``save_pretrained`` and its ``ZoeDepthImageProcessor``
config, converted by ``depthsmith.load_model``, compared with transformers' processor + forward +
``post_process_depth_estimation`` on the same uint8 image (no download anywhere)."""

from __future__ import annotations

import json

import pytest
import torch

import depthsmith
from depthsmith.models import WeightFileError
from depthsmith.models.hf_zoedepth import ZoeDepthConfigError
from helpers import ZOE_BINS, save_hf_zoedepth, tiny_hf_zoedepth, zoedepth_processor

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = [(50, 70), (100, 60)]  # source sizes: padded, then resized to 64 x 96 and 160 x 96 for the network
TWO = ZOE_BINS


def _images(n=6):
    g = torch.Generator().manual_seed(3)
    return [(torch.rand(3, *SIZES[i % 2], generator=g) * 255).to(torch.uint8) for i in range(n)]


def _reference(hf, image):
    proc = zoedepth_processor()
    with torch.no_grad():
        out = hf(**proc(images=image, return_tensors="pt"))
    depth = proc.post_process_depth_estimation(out, source_sizes=[tuple(image.shape[-2:])])[0]["predicted_depth"]
    return depth, (None if out.domain_logits is None else int(out.domain_logits.argmax()))


@pytest.fixture(scope="module", params=["nyu", "nyu-kitti"])
def converted(request, tmp_path_factory):
    hf = tiny_hf_zoedepth(TWO[:1] if request.param == "nyu" else TWO)
    if request.param == "nyu-kitti":  # the classifier's bias centred on the test images: each head gets taken
        with torch.no_grad():
            logits = []
            for image in _images():
                proc = zoedepth_processor()(images=image, return_tensors="pt")
                logits.append(hf(**proc).domain_logits)
            hf.metric_head.mlp_classifier.linear2.bias -= torch.cat(logits).median(dim=0).values
    folder = save_hf_zoedepth(hf, tmp_path_factory.mktemp(f"zoe-{request.param}"))
    return request.param, hf, depthsmith.load_model(folder), folder


def _ours(model, image):
    with torch.no_grad():  # x * (1/255) as the processor's rescale (x / 255 can differ in the last bit)
        return model(image[None].float() * (1 / 255))[0, 0]


def test_matches_transformers_processor_forward_and_post_processing(converted):
    kind, hf, ours, _ = converted
    heads = set()
    for image in _images():
        expected, head = _reference(hf, image)
        got = _ours(ours, image)
        assert got.shape == expected.shape == image.shape[-2:]
        spread = expected.std().item()
        assert spread > 1e-2, "the random model's depth hardly varies: the comparison would prove little"
        assert (got - expected).abs().max().item() <= 1e-4 * spread
        heads.add(head)
    if kind == "nyu-kitti":
        assert heads == {0, 1}, "the test images did not take both heads"


def test_negative_controls_fail(converted):
    _, hf, ours, folder = converted
    image = _images(1)[0]
    expected, _ = _reference(hf, image)
    tolerance = 1e-4 * expected.std().item()
    wrong = depthsmith.load_model(folder)
    with torch.no_grad():
        wrong.decoder.layer_rn[3].weight.mul_(1.05)  # a perturbed weight (the bottleneck conv)
    assert (_ours(wrong, image) - expected).abs().max().item() > 10 * tolerance
    wrong = depthsmith.load_model(folder)  # the processor's normalisation, applied in the encoder's frame
    wrong.encoder.frame.mean.copy_(torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))  # ImageNet's, not 0.5
    wrong.encoder.frame.std.copy_(torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    assert (_ours(wrong, image) - expected).abs().max().item() > 10 * tolerance


def test_card_output_kind_and_round_trip(converted, tmp_path):
    kind, _, ours, _ = converted
    assert ours.output == "metric_direct" and ours.is_metric
    assert ours.max_depth == (10.0 if kind == "nyu" else 80.0)
    assert ours.card["license"] == "mit"
    assert ours.card["converted_from"].startswith("transformers ZoeDepthForDepthEstimation")
    assert ours.card["working_size"] == {"height": 64, "width": 96, "keep_aspect_ratio": True, "ensure_multiple_of": 32,
                                         "reflect_pad": True, "applied_in_model": True}
    ours.save_pretrained(tmp_path / "saved")
    again = depthsmith.load_model(tmp_path / "saved")
    image = _images(1)[0]
    assert torch.equal(_ours(again, image), _ours(ours, image))


def test_wrong_shape_names_file_and_key(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = save_hf_zoedepth(tiny_hf_zoedepth(TWO[:1]), tmp_path / "zoe")
    state = load_file(str(folder / "model.safetensors"))
    key = next(k for k in state if k.startswith("metric_head.attractors.2.conv2.weight"))
    state[key] = torch.zeros(3, *state[key].shape[1:])
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(WeightFileError, match=r"model\.safetensors.*metric_head\.attractors\.2\.conv2\.weight"):
        depthsmith.load_model(folder)


@pytest.mark.parametrize("key,value,needle", [
    ("bin_centers_type", "hybrid2", "bin_centers_type='hybrid2'"),
    ("bottleneck_features", 32, "bottleneck_features=32"),
    ("bin_configurations", [{"n_bins": 8, "min_depth": 0.1, "max_depth": 5}] * 3, "bin_configurations="),
])
def test_unsupported_config_is_refused_by_key(tmp_path, key, value, needle):
    folder = save_hf_zoedepth(tiny_hf_zoedepth(TWO[:1]), tmp_path / "zoe")
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ZoeDepthConfigError, match=needle.replace("[", r"\[")) as err:
        depthsmith.load_model(folder)
    assert "config.json" in str(err.value)


def test_log_binomial_constants_in_a_checkpoint_are_checked(tmp_path):
    """Checkpoints written with the constants as tensors load; a wrong constant is refused by key."""
    from safetensors.torch import load_file, save_file

    folder = save_hf_zoedepth(tiny_hf_zoedepth(TWO[:1]), tmp_path / "zoe")
    state = load_file(str(folder / "model.safetensors"))
    prefix = "metric_head.conditional_log_binomial.log_binomial_transform."
    state[prefix + "k_idx"] = torch.arange(12).view(1, -1, 1, 1)
    state[prefix + "k_minus_1"] = torch.tensor([11]).view(1, -1, 1, 1)
    save_file(state, str(folder / "model.safetensors"))
    depthsmith.load_model(folder)
    state[prefix + "k_idx"] = torch.arange(12).flip(0).view(1, -1, 1, 1).contiguous()
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(WeightFileError, match=r"model\.safetensors.*log_binomial_transform\.k_idx"):
        depthsmith.load_model(folder)
