"""``headpose run`` end to end on the real video; Ctrl-C; the runtime imports nothing heavy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from headpose.runtime.manifest import artifact_id
from headpose.runtime.registry import DEFAULT_DETECTOR, DEFAULT_POSE

from headpose.cli import main
from headpose.runtime import cli as run_cli
from headpose.runtime.errors import ManifestError
from tests.conftest import ROOT, VIDEO, need_shared

HEAVY = ("torch", "tensorflow", "onnx", "onnxruntime", "headpose.convert", "keras", "onnx2tf")


def test_run_writes_every_output(det_dir, pose_dir, tmp_path, capsys):
    cv2 = pytest.importorskip("cv2", reason="video output")
    need_shared(VIDEO)
    out = {k: tmp_path / f"out.{k}" for k in ("mp4", "jsonl", "csv")}
    rc = main(["run", "--detector", str(det_dir), "--pose", str(pose_dir), "--source", str(VIDEO),
               "--max-frames", "12", "--detect-every", "2", "--draw", "cube", "--output", str(out["mp4"]),
               "--jsonl", str(out["jsonl"]), "--csv", str(out["csv"])])
    assert rc == 0
    summary = capsys.readouterr().out
    assert "headpose run: 12 frames" in summary and "FPS" in summary
    recs = [json.loads(line) for line in out["jsonl"].read_text().splitlines()]
    assert [r["frame"] for r in recs] == list(range(12))
    assert all(r["faces"] and r["time_ms"] > 0 for r in recs)
    n_faces = sum(len(r["faces"]) for r in recs)
    assert len(out["csv"].read_text().splitlines()) == n_faces + 1
    cap = cv2.VideoCapture(str(out["mp4"]))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "out.jsonl", "out.mp4"]  # no partial files


def test_ctrl_c_closes_the_outputs(det_dir, pose_dir, tmp_path):
    cv2 = pytest.importorskip("cv2", reason="video output")
    need_shared(VIDEO)
    jsonl, mp4 = tmp_path / "o.jsonl", tmp_path / "o.mp4"
    p = subprocess.Popen([sys.executable, "-m", "headpose.cli", "run", "--detector", str(det_dir), "--pose",
                          str(pose_dir), "--source", str(VIDEO), "--jsonl", str(jsonl), "--output", str(mp4)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         # a CI job started in the background inherits SIGINT ignored; a terminal's Ctrl-C
                         # reaches a process whose SIGINT is at its default, as here
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    partial = tmp_path / f".{jsonl.name}.partial.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        if partial.exists() and partial.read_text().count("\n") >= 5:
            break
        time.sleep(0.2)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "(interrupted)" in out
    lines = jsonl.read_text().splitlines()
    assert len(lines) >= 5 and [json.loads(x)["frame"] for x in lines] == list(range(len(lines)))
    cap = cv2.VideoCapture(str(mp4))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == len(lines)  # every frame processed before Ctrl-C is in the video


def test_no_heavy_imports(det_dir, pose_dir, tmp_path):
    """Import the runtime and run a frame in a fresh interpreter: no torch/TF/onnx/convert module loaded."""
    cv2 = pytest.importorskip("cv2", reason="reads the test frame")
    need_shared(VIDEO)
    ok, frame = cv2.VideoCapture(str(VIDEO)).read()
    np.save(tmp_path / "frame.npy", frame)
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        import headpose.runtime
        from headpose.runtime.estimator import HeadPoseEstimator
        import headpose.runtime.cli, headpose.runtime.sources, headpose.runtime.sinks, headpose.runtime.draw
        with HeadPoseEstimator.from_artifacts({str(det_dir)!r}, {str(pose_dir)!r}) as hpe:
            faces = hpe.estimate(np.load({str(tmp_path / 'frame.npy')!r}))
        assert faces, "no face found"
        heavy = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in {HEAVY!r}))
        print("FACES", len(faces), "HEAVY", heavy)
        assert not heavy, heavy
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "HEAVY []" in r.stdout


def test_cli_module_is_light_at_import():
    code = ("import sys, headpose.runtime.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'cv2', 'ai_edge_litert', 'torch')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


def test_default_artifacts_missing_says_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADPOSE_WEIGHTS_DIR", str(tmp_path / "w"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_cli, "PROJECT_ROOT", tmp_path)
    with pytest.raises(ManifestError) as e:
        run_cli.default_artifacts()
    msg = str(e.value)
    assert artifact_id(*DEFAULT_DETECTOR) in msg and artifact_id(*DEFAULT_POSE) in msg
    assert f"headpose convert {DEFAULT_DETECTOR[0]}" in msg and f"headpose convert {DEFAULT_POSE[0]}" in msg


def test_default_artifacts_found(det_dir, pose_dir, tmp_path, monkeypatch):
    exports = tmp_path / "w" / "exports"
    exports.mkdir(parents=True)
    det_id, pose_id = artifact_id(*DEFAULT_DETECTOR), artifact_id(*DEFAULT_POSE)
    os.symlink(det_dir, exports / det_id)  # any detector/pose artifact stands in for the defaults here
    os.symlink(pose_dir, exports / pose_id)
    monkeypatch.setenv("HEADPOSE_WEIGHTS_DIR", str(tmp_path / "w"))
    d, p = run_cli.default_artifacts()
    assert d == exports / det_id and p == exports / pose_id


def test_run_on_a_folder_treats_images_independently(det_dir, pose_dir, tmp_path, capsys):
    pytest.importorskip("cv2", reason="reads images")
    from tests.conftest import IMAGES
    need_shared(IMAGES)
    out = tmp_path / "img.jsonl"
    assert main(["run", "--detector", str(det_dir), "--pose", str(pose_dir), "--source", str(IMAGES),
                 "--jsonl", str(out), "--no-opencv"]) == 0
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == len(list(IMAGES.glob("*.jpg")))
    for r in recs:  # tracks (and smoothing) restart on every unrelated image
        assert sorted(f["track_id"] for f in r["faces"]) == list(range(1, len(r["faces"]) + 1))
    assert "headpose run: 3 frames" in capsys.readouterr().out
