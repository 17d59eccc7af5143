"""The int8 pose artifacts the project ships under weights/int8/ (issue 14): found by id, one XNNPACK
partition, converted from the shipped students, their gate figures on held-out people recorded, and
they run on real faces close to the float student."""

from __future__ import annotations

import json

import numpy as np
import pytest

from headpose.runtime.interpreter import make_interpreter, xnnpack_partitions
from headpose.runtime.manifest import load_manifest, sha256_file
from headpose.runtime.resolve import resolve_artifact, search_dirs
from tests.conftest import ROOT, VIDEO, WEIGHTS, need_shared

SHIPPED = ROOT / "weights" / "int8"
STUDENTS = ("mobilenetv2", "mobilenetv3_small", "mobilenetv3_large")
# the float checkpoint each artifact is converted from: MobileNetV3-Small's is its quantisation-aware
# fine-tune (headpose distill --qat, weights/README.md), closer to its own int8 on held-out people
SOURCE = {"mobilenetv2": "mobilenetv2_fsanet.pt", "mobilenetv3_small": "mobilenetv3_small_fsanet_qat.pt",
          "mobilenetv3_large": "mobilenetv3_large_fsanet.pt"}


@pytest.mark.parametrize("model", STUDENTS)
def test_shipped_int8_is_found_and_describes_itself(model, monkeypatch):
    aid = f"{model}-224-tflite-int8"
    d = SHIPPED / aid
    assert (d / "manifest.json").is_file(), f"{d} is committed (weights/README.md)"
    monkeypatch.delenv("HEADPOSE_WEIGHTS_DIR", raising=False)
    assert SHIPPED.resolve() in [p.resolve() for p in search_dirs()]
    assert resolve_artifact(aid, task="head_pose", search=[SHIPPED]) == d
    assert resolve_artifact(model, task="head_pose", precision="int8", search=[SHIPPED]) == d
    m = load_manifest(d, expect_task="head_pose")
    assert m.precision == "int8" and m.file_bytes < 4_000_000 and sha256_file(m.model_path) == m.file_sha256
    assert m.source["sha256"] == sha256_file(ROOT / "weights" / SOURCE[model])  # the shipped student
    q = m.quantization
    sets = q["calibration"]["sets"]
    assert q["calibration"]["split"] == "gate_data"
    names = lambda s: {x["name"] for x in sets[s]["sources"]}  # noqa: E731
    assert not names("calibration") & names("gate") and not ({x["sha256"] for x in sets["calibration"]["sources"]}
                                                             & {x["sha256"] for x in sets["gate"]["sources"]})
    assert sets["gate"]["samples"] >= 256 and len(sets["gate"]["sources"]) >= 10  # held-out people
    gate = q["int8_gate"]
    if model == "mobilenetv3_small":  # the QAT student's figures (PTQ of the plain student: 1.06 / 8.04)
        held = gate["figures_by_set"]["gate"]
        assert held["geodesic_mean_deg"] < 1.0 and held["geodesic_p99_deg"] < 7.0, held
    for part in ("gate", "calibration"):
        fig = gate["figures_by_set"][part]
        assert fig["geodesic_mean_deg"] > 0 and fig["geodesic_p99_deg"] >= fig["geodesic_mean_deg"]
        assert sum(b["n"] for b in fig["by_yaw_bin"].values()) == fig["n"]
    assert xnnpack_partitions(make_interpreter(str(m.model_path))) == 1


@pytest.mark.parametrize("model", STUDENTS)
def test_shipped_int8_runs_close_to_its_float_student(model):
    """On 48 real crops of in_video.mp4, the artifact (through the runtime's TFLiteModel) stays within its
    recorded calibration-set figures of the float student (PyTorch)."""
    torch = pytest.importorskip("torch", reason="the float reference needs the convert extra (PyTorch)")
    pytest.importorskip("onnxruntime", reason="finding faces needs the convert extra (ONNX Runtime)")
    from headpose.convert.calibration import pose_data
    from headpose.convert.checkpoint import load_pose_model
    from headpose.convert.facedata import normalised_nchw  # noqa: F401  (same normalisation as the crops)
    from headpose.runtime.interpreter import TFLiteModel
    from headpose.runtime.registry import get_spec
    from headpose.runtime.rotation import geodesic_deg, rotation_from_6d
    d = SHIPPED / f"{model}-224-tflite-int8"
    m = load_manifest(d)
    data = pose_data(get_spec(model), need_shared(VIDEO), 224, False, need_shared(WEIGHTS / "scrfd_500m_bnkps.onnx"))
    x = data.parity[:48]
    net = load_pose_model(model, ROOT / "weights" / SOURCE[model])
    with torch.no_grad():
        ref = rotation_from_6d(net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
                               .astype(np.float64))
    run = TFLiteModel(m, num_threads=1)
    name = m.output("ortho6d").name
    out = np.concatenate([run(x[i:i + 1])[name] for i in range(len(x))]).reshape(-1, 6)
    geo = geodesic_deg(ref, rotation_from_6d(out.astype(np.float64)))
    cal = m.quantization["int8_gate"]["figures_by_set"]["calibration"]
    assert np.mean(geo) <= 2 * cal["geodesic_mean_deg"] + 0.2, (np.mean(geo), cal)
    assert json.loads((d / "manifest.json").read_text())["quantization"]["int8_gate"]["gate"]["crops"] >= 256


def test_old_float_io_int8_artifacts_still_run():
    """int8 artifacts converted before int8 input tensors (float32 in/out around the int8 body) load and
    run through the runtime as before: those of the bench cache of this checkout (git-ignored)."""
    from headpose.runtime.interpreter import TFLiteModel
    old = [d for d in sorted((ROOT / "weights" / "cache" / "bench").glob("*/*-tflite-int8"))
           if (d / "manifest.json").is_file() and load_manifest(d).input.dtype == "float32"]
    if not old:
        pytest.skip("no float-input int8 artifact in weights/cache/bench/ of this checkout (made by `headpose "
                    "bench` before int8 input tensors); nothing old to check")
    for d in old:
        m = load_manifest(d)
        run = TFLiteModel(m, num_threads=1)
        x = np.zeros([1, *m.input.shape[1:]], np.float32)
        outs = run(x)
        assert all(np.isfinite(v).all() for v in outs.values()), d
