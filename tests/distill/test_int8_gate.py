"""int8 gate figures and decisions; the full gate on a real conversion is a slow test."""

import json

import numpy as np
import pytest

from headpose.convert.int8_gate import angle_errors, passes
from headpose.runtime.rotation import rotation_from_euler


def _six(r):
    """6D vectors whose Gram-Schmidt gives ``r`` back (first two columns)."""
    return np.concatenate([r[:, :, 0], r[:, :, 1]], axis=1)


def test_angle_errors_known_offsets():
    rng = np.random.default_rng(0)
    n = 200
    ang = np.stack([rng.uniform(-30, 30, n), rng.uniform(-50, 50, n), rng.uniform(-20, 20, n)], 1)
    ref = rotation_from_euler(ang[:, 0], ang[:, 1], ang[:, 2])
    same = angle_errors(ref, _six(ref))
    assert same["n"] == n and same["max_deg"] < 1e-6
    off = ang.copy()
    off[:, 1] += 1.0  # 1 degree of yaw on every crop
    off[:10, 2] += 10.0  # 10 degrees of roll on 10 crops: 10 of the 600 differences (1.7 %)
    fig = angle_errors(ref, _six(rotation_from_euler(off[:, 0], off[:, 1], off[:, 2])))
    assert fig["per_axis_mean_deg"]["yaw"] == pytest.approx(1.0, abs=1e-6)
    assert fig["mean_deg"] == pytest.approx((n * 1.0 + 10 * 10.0) / (3 * n), abs=1e-3)
    assert fig["max_deg"] == pytest.approx(10.0, abs=1e-6)
    assert fig["p99_deg"] == pytest.approx(10.0, abs=1e-6)  # more than 1 % of the differences are 10 degrees
    assert passes(fig, 0.5, 12.0) and not passes(fig, 0.3, 12.0) and not passes(fig, 0.5, 0.5)


def test_convert_cli_has_the_gate_option():
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "headpose.cli", "convert", "--help"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0 and "--max-int8-error" in p.stdout


@pytest.mark.slow
def test_gate_on_a_real_int8_conversion(tmp_path):
    """Shipped student -> int8 TFLite with the gate: it passes (possibly with a remedy) and says so in the manifest."""
    from headpose.convert.pipeline import convert
    from tests.conftest import ROOT, VIDEO, WEIGHTS, need_shared
    student = ROOT / "weights" / "mobilenetv2_fsanet.pt"
    if not student.is_file():
        pytest.skip(f"{student} is not in this checkout")
    art = convert("mobilenetv2", student, "tflite", "int8", calib=need_shared(VIDEO), out_dir=tmp_path,
                  detector=need_shared(WEIGHTS / "scrfd_500m_bnkps.onnx"), max_int8_error=0.5)
    q = json.loads((art / "manifest.json").read_text())["quantization"]
    gate = q["int8_gate"]
    assert gate["passed"] and gate["gate"]["max_mean_deg"] == 0.5
    final = [a for a in gate["attempts"] if a["passed"]][-1]
    assert final["mean_deg"] <= 0.5 and final["p99_deg"] <= 3.0
    assert gate["latency_ms"]["chosen"] > 0
