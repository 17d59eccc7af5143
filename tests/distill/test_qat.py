"""Quantisation-aware fine-tuning (distill/qat.py, issue 14 point 3) on real crops and real students.

The fake-quant model with quantisation off is the float model exactly; on, it differs from it on real
faces by about what the shipped int8 TFLite model does; a 2-step QAT run writes a plain float
checkpoint that the converter's loader (weights_only) and ``headpose convert --precision int8`` take.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from headpose.convert.checkpoint import load_pose_checkpoint, load_pose_model
from headpose.convert.facedata import normalised_nchw
from headpose.convert.models.pose import fold_paired_head
from headpose.distill.distill import rotation_from_6d_torch
from headpose.distill.qat import FakeQuantModel, QATConfig, fake_quant_weight, qat_finetune
from headpose.runtime.registry import get_spec
from headpose.runtime.rotation import geodesic_deg, rotation_from_6d
from tests.conftest import ROOT, VIDEO, need_shared

STUDENT = ROOT / "weights" / "mobilenetv3_small_fsanet.pt"
SHIPPED_INT8 = ROOT / "weights" / "int8" / "mobilenetv3_small-224-tflite-int8"
SHIPPED_INT8_SOURCE = ROOT / "weights" / "mobilenetv3_small_fsanet_qat.pt"  # what SHIPPED_INT8 is converted from


def _inputs(cs, n=24):
    spec = get_spec("mobilenetv3_small")
    idx = np.linspace(0, len(cs) - 1, min(n, len(cs))).astype(int)
    base = np.asarray(cs.base[idx])
    return base, torch.from_numpy(normalised_nchw(base, spec))


def test_weight_fake_quant_is_per_channel_symmetric_int8():
    torch.manual_seed(0)
    w = torch.randn(8, 4, 3, 3) * torch.logspace(-3, 1, 8)[:, None, None, None]  # channel ranges 1e-3..10
    q = fake_quant_weight(w)
    scale = w.abs().flatten(1).amax(1) / 127
    steps = q / scale[:, None, None, None]
    assert torch.allclose(steps, steps.round(), atol=1e-3) and steps.abs().max() <= 127 + 1e-3
    assert ((q - w).abs() <= scale[:, None, None, None] / 2 + 1e-7).all()  # every channel on its own grid
    assert not torch.equal(q, w)


@pytest.mark.parametrize("model_id", ["mobilenetv3_small", "mobilenetv2"])
def test_quantisation_off_is_the_float_model_exactly(small_cropset, model_id):
    """Off: bit-equal to the float model (MobileNetV3: with its paired head folded, as the converter exports it)."""
    path = ROOT / "weights" / f"{model_id}_fsanet.pt"
    ref = load_pose_model(model_id, path).eval()
    folded = fold_paired_head(ref)
    assert folded == (model_id == "mobilenetv3_small")
    qm = FakeQuantModel(load_pose_model(model_id, path).eval())
    qm.set_quant(False)
    _, x = _inputs(small_cropset)
    with torch.no_grad():
        assert torch.equal(qm(x), ref(x))
        qm.set_quant(True)
        qm.calibrate([x])
        assert not torch.equal(qm(x), ref(x))
        qm.set_quant(False)
        assert torch.equal(qm(x), ref(x))  # switching back leaves nothing behind
    sd = qm.float_state_dict(model_id)
    orig = torch.load(path, weights_only=True)
    assert set(sd) == set(orig)
    for k in orig:  # nothing trained: the written checkpoint is the student's (head re-paired exactly)
        assert torch.allclose(sd[k].double(), orig[k].double(), atol=1e-6, rtol=1e-5), k
    model = qm.remove()
    with torch.no_grad():
        assert torch.equal(model(x), ref(x))
    assert not any("forward" in m.__dict__ for m in model.modules())


def test_quantisation_on_differs_like_int8_tflite(small_cropset):
    """On real crops the simulated int8 moves the rotation by the order of the shipped int8 TFLite model."""
    from headpose.distill.teachers import ArtifactTeacher
    base, x = _inputs(small_cropset, 48)
    ref = load_pose_model("mobilenetv3_small", SHIPPED_INT8_SOURCE).eval()
    qm = FakeQuantModel(copy.deepcopy(ref))
    with torch.no_grad():
        qm.calibrate([x[:24], x[24:]])
        r_float = rotation_from_6d_torch(ref(x)).double().numpy()
        r_fq = rotation_from_6d_torch(qm(x)).double().numpy()
    sim = geodesic_deg(r_float, r_fq)
    tfl = geodesic_deg(r_float, rotation_from_6d(ArtifactTeacher(SHIPPED_INT8).raw(base).astype(np.float64)))
    assert np.isfinite(sim).all() and sim.mean() > 0.05, "fake quantisation changed nothing"
    assert sim.mean() < 5.0 and np.percentile(sim, 99) < 30.0
    # same order as real int8 (the shipped one keeps its head in float and calibrates on other crops)
    assert tfl.mean() / 4 < sim.mean() < tfl.mean() * 4, (sim.mean(), tfl.mean())


@pytest.mark.integration
def test_two_step_qat_writes_a_checkpoint_convert_takes(small_cropset, tmp_path):
    need_shared(VIDEO)
    out = tmp_path / "mobilenetv3_small_qat.pt"
    cfg = QATConfig("mobilenetv3_small", steps=2, batch=4, calib_crops=8, val_limit=4)
    side = qat_finetune(cfg, small_cropset, small_cropset.subset(np.arange(4)), out, STUDENT, progress=False)
    assert [h["step"] for h in side["history"]] == [0, 2] and "fake_quant" in side["history"][-1]
    assert json.loads(out.with_suffix(".json").read_text())["sha256"] == side["sha256"]
    sd = torch.load(out, weights_only=True)
    orig = torch.load(STUDENT, weights_only=True)
    assert set(sd) == set(orig) and all(sd[k].shape == orig[k].shape for k in sd)
    assert any(not torch.equal(sd[k], orig[k]) for k in sd if sd[k].dtype.is_floating_point), "2 steps moved nothing"
    model, info = load_pose_checkpoint("mobilenetv3_small", out)
    assert fold_paired_head(model), "the head is written back in the paired layout the converter folds"
    p = subprocess.run([sys.executable, "-m", "headpose.cli", "convert", "mobilenetv3_small", "--weights", str(out),
                        "--precision", "int8", "--calib", str(VIDEO), "--max-int8-error", "-1",
                        "--out", str(tmp_path / "exports")], capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    art = tmp_path / "exports" / "mobilenetv3_small-224-tflite-int8"
    assert (art / "model.tflite").is_file() and (art / "manifest.json").is_file()
