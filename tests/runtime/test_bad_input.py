"""Bad input gets a clear HeadposeError (never a traceback from deep inside NumPy)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from headpose.cli import main
from headpose.runtime.errors import HeadposeError, InputError, ManifestError
from headpose.runtime.estimator import EstimatorOptions, HeadPoseEstimator
from headpose.runtime.detector import FaceDetector
from headpose.runtime.pose import PoseEstimator
from tests.conftest import IMAGES, need_shared


@pytest.fixture(scope="module")
def hpe(det_dir, pose_dir):
    return HeadPoseEstimator.from_artifacts(det_dir, pose_dir, EstimatorOptions(smooth=False))


@pytest.fixture(scope="module")
def two_faces():
    cv2 = pytest.importorskip("cv2", reason="reads the image")
    return cv2.imread(str(need_shared(IMAGES / "trump_hillary.jpg")))


def test_missing_manifest(tmp_path, pose_dir):
    with pytest.raises(ManifestError, match="does not exist"):
        FaceDetector(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="holds no manifest.json"):
        PoseEstimator(tmp_path / "empty")


def test_malformed_manifest(tmp_path, det_dir):
    bad = tmp_path / "det"
    shutil.copytree(det_dir, bad)
    (bad / "manifest.json").write_text("{ not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        FaceDetector(bad)
    d = json.loads((det_dir / "manifest.json").read_text())
    d["outputs"] = [o for o in d["outputs"] if not (o["role"] == "bbox" and o["stride"] == 16)]
    (bad / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(ManifestError, match="bbox@16"):
        FaceDetector(bad)
    d = json.loads((det_dir / "manifest.json").read_text())
    d["outputs"][0]["name"] = "no_such_tensor"
    (bad / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(ManifestError, match="no_such_tensor"):
        FaceDetector(bad)


def test_artifacts_swapped(det_dir, pose_dir):
    with pytest.raises(ManifestError, match="face_detection model was expected"):
        FaceDetector(pose_dir)
    with pytest.raises(ManifestError, match="head_pose model was expected"):
        PoseEstimator(det_dir)
    with pytest.raises(ManifestError, match="face_detection model was expected"):
        HeadPoseEstimator.from_artifacts(pose_dir, det_dir)


def test_grey_and_rgba_frames(hpe, two_faces):
    cv2 = pytest.importorskip("cv2")
    grey = cv2.cvtColor(two_faces, cv2.COLOR_BGR2GRAY)
    ref = hpe.estimate(np.repeat(grey[:, :, None], 3, axis=2))
    for frame in (grey, grey[:, :, None]):
        hpe.reset()
        got = hpe.estimate(frame)
        assert len(got) == len(ref) == 2
        assert [f.yaw for f in got] == [f.yaw for f in ref]
    hpe.reset()
    bgr_faces = hpe.estimate(two_faces)
    hpe.reset()
    rgba = np.dstack([two_faces, np.full(two_faces.shape[:2], 255, np.uint8)])
    got = hpe.estimate(rgba)
    assert [f.yaw for f in got] == [f.yaw for f in bgr_faces]
    hpe.reset()
    got_rgb = hpe.estimate(np.ascontiguousarray(two_faces[:, :, ::-1]), color="RGB")
    np.testing.assert_allclose([f.yaw for f in got_rgb], [f.yaw for f in bgr_faces], atol=1e-6)


@pytest.mark.parametrize("frame", [np.zeros((0, 10, 3), np.uint8), np.zeros(100, np.uint8),
                                   np.zeros((10, 10, 2), np.uint8), "frame.jpg", None])
def test_not_a_frame(hpe, frame):
    with pytest.raises(InputError, match="expected a frame"):
        hpe.estimate(frame)


def test_bad_colour_and_options(hpe, two_faces):
    with pytest.raises(InputError, match="color"):
        hpe.estimate(two_faces, color="HSV")
    for bad in (dict(detect_every=0), dict(threads=0), dict(max_faces=-1), dict(draw="sphere"),
                dict(score_threshold=2.0)):
        with pytest.raises(InputError):
            EstimatorOptions(**bad).validate()


def test_faces_at_and_beyond_the_border(hpe, two_faces):
    pose = hpe.pose
    h, w = two_faces.shape[:2]
    boxes = np.array([[-50, -40, 60, 70],  # partly outside (top-left): clipped crop
                      [w - 30, h - 20, w + 80, h + 90],  # partly outside (bottom-right)
                      [w + 50, 10, w + 140, 90],  # entirely outside, even with the margin: no crop
                      [20, 20, 20, 20]], np.float32)  # zero size, inside: the margin gives nothing either
    rots, eul, kept = pose.estimate(two_faces, boxes)
    assert kept.tolist() == [0, 1] and eul.shape == (2, 3) and np.isfinite(eul).all()
    rots, eul, kept = pose.estimate(two_faces, boxes[2:])
    assert kept.tolist() == [] and eul.shape == (0, 3)
    # a face cut by the frame border in a real frame still gets a pose
    cut = np.ascontiguousarray(two_faces[:, : w // 3])
    hpe.reset()
    assert all(np.isfinite([f.yaw, f.pitch, f.roll]).all() for f in hpe.estimate(cut))


def test_closed_estimator(det_dir, pose_dir, two_faces):
    e = HeadPoseEstimator.from_artifacts(det_dir, pose_dir)
    e.close()
    with pytest.raises(HeadposeError, match="closed"):
        e.estimate(two_faces)


def test_cli_bad_sources(det_dir, pose_dir, tmp_path, capsys):
    args = ["run", "--detector", str(det_dir), "--pose", str(pose_dir), "--source"]
    assert main(args + [str(tmp_path / "missing.mp4")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00" * 4096)
    assert main(args + [str(bad)]) == 2
    err = capsys.readouterr().err
    assert "could not be opened" in err or "no frame could be decoded" in err
    assert main(["run", "--detector", str(pose_dir), "--pose", str(det_dir), "--source", str(bad)]) == 2
    assert "face_detection model was expected" in capsys.readouterr().err
