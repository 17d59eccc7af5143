"""``headpose convert``: bad input exits 2 with one clear line; real runs print the artifact last;
atomic writes and --force; a failed parity gate leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from headpose.cli import main
from tests.conftest import IMAGES, ROOT, VIDEO, WEIGHTS, need_shared

SCRFD = WEIGHTS / "scrfd_500m_bnkps.onnx"


def _fails(capsys, argv, *needles):
    rc = main(["convert", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    last = err[-1]
    assert last.startswith("headpose convert: error: ")
    for n in needles:
        assert n in last, last
    return last


def test_unknown_model_did_you_mean(capsys, tmp_path):
    _fails(capsys, ["mobilenetv3_smal", "--weights", str(tmp_path / "x.pt")], "Did you mean 'mobilenetv3_small'")


def test_missing_weights(capsys, tmp_path):
    _fails(capsys, ["resnet18", "--weights", str(tmp_path / "none.pt")], "does not exist")


def test_bad_precision_and_format(capsys, seeded_ckpt):
    ck = str(seeded_ckpt("mobilenetv3_small"))
    _fails(capsys, ["mobilenetv3_small", "--weights", ck, "--precision", "int4"], "fp32, fp16, int8, dynamic-int8")
    _fails(capsys, ["mobilenetv3_small", "--weights", ck, "--format", "tensorrt"], "tflite, onnx")


def test_pose_checkpoint_for_scrfd(capsys, seeded_ckpt):
    _fails(capsys, ["scrfd_500m", "--weights", str(seeded_ckpt("mobilenetv3_small"))], "not an ONNX file")


def test_bad_input_size(capsys):
    _fails(capsys, ["scrfd_500m", "--weights", str(need_shared(SCRFD)), "--input-size", "300"], "multiple of 32")


def test_wrong_architecture_suggests_the_right_one(capsys, seeded_ckpt, tmp_path):
    last = _fails(capsys, ["resnet18", "--weights", str(seeded_ckpt("mobilenetv3_small")), "--out", str(tmp_path)],
                  "does not fit 'resnet18'", "fits 'mobilenetv3_small'")
    assert "missing keys" in last
    assert list(tmp_path.iterdir()) == [], "a failed conversion left files behind"


def test_corrupt_files(capsys, tmp_path):
    bad_pt = tmp_path / "bad.pt"
    bad_pt.write_bytes(os.urandom(512))
    _fails(capsys, ["resnet18", "--weights", str(bad_pt), "--out", str(tmp_path / "o")], "could not be read")
    bad_onnx = tmp_path / "bad.onnx"
    bad_onnx.write_bytes(b"\x08\x07" + os.urandom(512))
    _fails(capsys, ["scrfd_500m", "--weights", str(bad_onnx), "--out", str(tmp_path / "o")], "ONNX")
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_scrfd_onnx_given_for_a_pose_model(capsys, tmp_path):
    _fails(capsys, ["mobilenetv3_small", "--weights", str(need_shared(SCRFD)), "--out", str(tmp_path)],
           "6-output")


def test_missing_calibration_source(capsys, seeded_ckpt, tmp_path):
    _fails(capsys, ["mobilenetv3_small", "--weights", str(seeded_ckpt("mobilenetv3_small")), "--precision", "int8",
                    "--calib", str(tmp_path / "nothing.mp4"), "--out", str(tmp_path / "o")], "does not exist")


def test_int8_needs_200_real_faces(capsys, seeded_ckpt, tmp_path):
    _fails(capsys, ["mobilenetv3_small", "--weights", str(seeded_ckpt("mobilenetv3_small")), "--precision", "int8",
                    "--calib", str(need_shared(IMAGES)), "--format", "onnx", "--out", str(tmp_path)],
           "at least 200 real face crops")
    assert list(tmp_path.iterdir()) == []


def test_onnx_format_force_and_failed_gate(capsys, seeded_ckpt, tmp_path, monkeypatch):
    """ONNX artifacts: built, refused without --force, replaced with it; a failed gate leaves none."""
    from headpose.convert import parity
    need_shared(IMAGES)
    argv = ["mobilenetv3_small", "--weights", str(seeded_ckpt("mobilenetv3_small")), "--format", "onnx",
            "--calib", str(IMAGES), "--out", str(tmp_path)]
    assert main(["convert", *argv]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    art = tmp_path / "mobilenetv3_small-224-onnx-fp32"
    assert out[-1] == str(art)
    man = json.loads((art / "manifest.json").read_text())
    assert man["input"]["layout"] == "NCHW" and man["parity"]["passed"] and man["parity"]["euler_max_deg"] < 0.05
    created = man["created_utc"]
    _fails(capsys, argv, "already exists", "--force")
    # an impossible gate: the conversion fails and the existing artifact is left untouched
    monkeypatch.setitem(parity.POSE_MAX_DEG, "fp32", 0.0)
    _fails(capsys, argv + ["--force"], "parity gate failed", "no artifact was written")
    assert json.loads((art / "manifest.json").read_text())["created_utc"] == created
    assert sorted(p.name for p in tmp_path.iterdir()) == [art.name], "staging directory left behind"
    monkeypatch.setitem(parity.POSE_MAX_DEG, "fp32", 0.05)
    assert main(["convert", *argv, "--force"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(art)


def test_cli_tflite_prints_artifact_last(seeded_ckpt, tmp_path):
    """A real subprocess run: onnx2tf's console output must not reach stdout; timings go to stderr. The
    --out is relative, as the CLI's default (weights/exports) is: onnx2tf runs in another directory."""
    need_shared(IMAGES)
    exe = [sys.executable, "-m", "headpose.cli"]
    r = subprocess.run(exe + ["convert", "mobilenetv3_small", "--weights", str(seeded_ckpt("mobilenetv3_small")),
                              "--calib", str(IMAGES), "--out", "exports"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.strip().splitlines()
    art = tmp_path / "exports" / "mobilenetv3_small-224-tflite-fp32"
    assert lines == ["exports/mobilenetv3_small-224-tflite-fp32"], r.stdout[-2000:]
    assert "[convert] onnx2tf:" in r.stderr and "parity mobilenetv3_small tflite fp32" in r.stderr
    assert (art / "model.tflite").exists() and (art / "manifest.json").exists()


def test_int8_with_several_sources_gates_on_other_sources(capsys, seeded_ckpt, tmp_path):
    """--calib repeated: split by source; the manifest names both sets, none on both sides, and the int8
    figures (recorded: a seeded network is not gated) per set with their |yaw| bins."""
    from tests.convert.test_calib_gate import DRIVING, TALK
    for p in (VIDEO, DRIVING, TALK):
        need_shared(p)
    argv = ["mobilenetv3_small", "--weights", str(seeded_ckpt("mobilenetv3_small")), "--precision", "int8",
            "--calib", str(VIDEO), "--calib", str(DRIVING), "--calib", str(TALK), "--max-int8-error", "-1",
            "--out", str(tmp_path)]
    assert main(["convert", *argv]) == 0
    art = tmp_path / "mobilenetv3_small-224-tflite-int8"
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(art)
    q = json.loads((art / "manifest.json").read_text())["quantization"]
    c = q["calibration"]
    assert c["split"] == "by_source"
    calib = {s["name"] for s in c["sets"]["calibration"]["sources"]}
    gate = {s["name"] for s in c["sets"]["gate"]["sources"]}
    assert calib == {str(VIDEO)} and gate == {str(DRIVING), str(TALK)}
    g = q["int8_gate"]
    assert g["passed"] is None and g["gate"]["recorded_only"] is True
    assert g["figures_by_set"]["gate"]["n"] == c["sets"]["gate"]["samples"] == c["parity_samples"]
    assert g["figures_by_set"]["calibration"]["n"] == c["sets"]["calibration"]["samples"]
    assert set(g["figures_by_set"]["gate"]["by_yaw_bin"]) == {"abs_yaw_lt_30", "abs_yaw_30_60", "abs_yaw_ge_60"}
