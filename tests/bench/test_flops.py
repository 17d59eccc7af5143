"""MAC counting by forward hooks (PyTorch) and by ONNX shape inference, on a network counted by hand."""

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from headpose.benchmarks.flops import count_macs, onnx_conv_macs, pose_model_macs  # noqa: E402


def tiny():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1, groups=8),          # depthwise
                         nn.Conv2d(8, 4, 1, stride=2),                     # pointwise, stride 2
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6))


# by hand at 16x16: 16*16*8 outputs * 3*3*3 + 16*16*8 * 1*3*3 + 8*8*4 * 8 + 6 * 4
HAND = 16 * 16 * 8 * 27 + 16 * 16 * 8 * 9 + 8 * 8 * 4 * 8 + 24


def test_count_macs_by_hand():
    c = count_macs(tiny(), (1, 3, 16, 16))
    assert c["macs"] == HAND and c["linear_macs"] == 24 and c["layers"] == 4
    assert c["params"] == sum(p.numel() for p in tiny().parameters())
    assert count_macs(tiny(), (2, 3, 16, 16))["macs"] == 2 * HAND   # linear in the batch


def test_onnx_count_agrees_with_hooks(tmp_path):
    path = tmp_path / "tiny.onnx"
    torch.onnx.export(tiny().eval(), torch.zeros(1, 3, 16, 16), str(path), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {2: "h", 3: "w"}})
    assert onnx_conv_macs(path, (1, 3, 16, 16)) == HAND
    assert onnx_conv_macs(path, (1, 3, 32, 32)) == 4 * (HAND - 24) + 24   # convs scale with the area


def test_registered_backbones_are_ordered_by_cost():
    small, v2, r18 = (pose_model_macs(m)["macs"] for m in ("mobilenetv3_small", "mobilenetv2", "resnet18"))
    assert small < v2 < r18
