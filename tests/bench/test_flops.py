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


def test_estimate_arithmetic():
    from headpose.benchmarks import estimate as est
    dense = est.rate_macs_per_ms("dense", "fp32")
    assert dense == pytest.approx(1814e6 / 100.3)                   # the one published dense fp32 point
    assert est.rate_macs_per_ms("dense", "int8") == pytest.approx(dense * est.INT8_GAIN)
    mobile = est.rate_macs_per_ms("mobile", "int8")                  # mean of the three int8 points
    assert mobile == pytest.approx((300e6 / 26.4 + 217e6 / 30.7 + 300e6 / 22.0) / 3)
    assert est.model_ms_pi4(1814e6, "dense", "fp32") == pytest.approx(100.3)
    assert est.frame_ms(60.0, 5.0, faces=2, detect_every=3, overhead_ms=4.0) == pytest.approx(20.0 + 10.0 + 4.0)
    rows = est.estimate_table({"a": 50e6, "resnet18": 1814e6}, 500e6, faces=(1,), detect_every=(1, 5))
    assert len(rows) == 2 * 2 * 2
    r = next(r for r in rows if r["model"] == "resnet18" and r["precision"] == "fp32" and r["detect_every"] == 1)
    assert r["pose_ms_pi4"] == 100.3 and not r["pi4_30fps"]
    assert all(lo <= hi for lo, hi in (x["fps_pi5"] for x in rows))
    assert "| resnet18 | fp32 | 1 | 1 | 100.3 |" in est.markdown(rows)
