"""oneDNN weight pre-packing: same outputs as torch's own convolution, per input shape."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import depthsmith
from depthsmith.inference import Predictor
from depthsmith.runtime.fast import fast_model
from depthsmith.packing import MAX_SHAPES, PackedConv2d, pack_convolutions, packing_available

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not packing_available(), reason="this torch build has no oneDNN packing ops"),
]

CONVS = {
    "3x3": dict(in_channels=16, out_channels=24, kernel_size=3, padding=1),
    "stride 2, no bias": dict(in_channels=16, out_channels=8, kernel_size=3, stride=2, bias=False),
    "1x7 (IRv2)": dict(in_channels=16, out_channels=16, kernel_size=(1, 7), padding=(0, 3)),
    "grouped, dilated": dict(in_channels=16, out_channels=32, kernel_size=3, padding=2, dilation=2, groups=4),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", list(CONVS))
def test_packed_convolution_equals_torch_conv2d(name, dtype):
    torch.manual_seed(0)
    conv = nn.Conv2d(**CONVS[name]).eval().to(dtype).to(memory_format=torch.channels_last)
    packed = PackedConv2d(conv)
    with torch.inference_mode():
        for shape in [(1, 16, 23, 31), (3, 16, 40, 17), (1, 16, 23, 31)]:
            x = torch.randn(shape).to(dtype).contiguous(memory_format=torch.channels_last)
            # torch's default tolerances per dtype: the same sums, at most in another order
            torch.testing.assert_close(packed(x), conv(x), msg=f"{name}, {dtype}, {shape}")


def test_one_packed_weight_per_shape_and_at_most_max_shapes():
    conv = nn.Conv2d(8, 8, 3, padding=1).eval().to(memory_format=torch.channels_last)
    packed = PackedConv2d(conv)
    shapes = [(1, 8, 10 + i, 12) for i in range(MAX_SHAPES + 2)]
    with torch.inference_mode():
        for shape in shapes:
            x = torch.randn(shape).contiguous(memory_format=torch.channels_last)
            torch.testing.assert_close(packed(x), conv(x))
        assert list(packed.packed) == shapes[-MAX_SHAPES:]  # the oldest shapes were dropped
        x = torch.randn(shapes[0]).contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(packed(x), conv(x))  # a dropped shape is packed again, still correct


def test_only_plain_zero_padded_convolutions_are_packed():
    from timm.layers import Conv2dSame

    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
        nn.Conv2d(4, 4, 3, padding="same"),
        Conv2dSame(4, 4, 3, stride=2),
        nn.Conv2d(4, 2, 1),
    ).eval()
    x = torch.rand(1, 3, 17, 19)
    with torch.inference_mode():
        reference = model(x)
    assert pack_convolutions(model) == 2
    assert [type(m).__name__ for m in model] == ["PackedConv2d", "Conv2d", "Conv2d", "Conv2dSame", "PackedConv2d"]
    with pytest.raises(ValueError, match="only plain nn.Conv2d"):
        PackedConv2d(Conv2dSame(4, 4, 3))
    with torch.inference_mode():
        torch.testing.assert_close(model(x), reference)


def test_predictor_packs_on_cpu_and_matches_the_unpacked_fast_model():
    torch.manual_seed(0)
    model = depthsmith.create_model("test_resnet", decoder="unet").eval()
    predictor = Predictor(model, device="cpu", precision="bf16", backend="torch")  # the torch fast path, not auto
    assert any(isinstance(m, PackedConv2d) for m in predictor.runner.model.modules())
    unpacked = fast_model(model, torch.device("cpu"), "bf16", prepack=False)
    assert not any(isinstance(m, PackedConv2d) for m in unpacked.modules())
    with torch.inference_mode():
        for batch in (1, 3):
            x = torch.rand(batch, 3, 64, 80)
            expected = unpacked(x.contiguous(memory_format=torch.channels_last)).float()[:, 0]
            torch.testing.assert_close(predictor.run(x), expected, rtol=1e-4, atol=1e-5)
