"""The runtime on real data against the references: ONNX SCRFD (onnxruntime) and the PyTorch pose model.

Artifacts come from the session fixture ``artifact(model_id, precision)`` (tests/conftest.py): the
SCRFD-0.5GF detector converted from ../shared/weights/scrfd_500m_bnkps.onnx and the pose network
(mobilenetv3_small) converted from a seeded checkpoint. The references live in convert/ (the tests may
import it; the runtime itself never does - see test_no_heavy_imports).
"""

from __future__ import annotations

import numpy as np
import pytest

from headpose.runtime.detector import FaceDetector
from headpose.runtime.estimator import EstimatorOptions, HeadPoseEstimator
from headpose.runtime.manifest import load_manifest
from headpose.runtime.pose import PoseEstimator
from headpose.runtime.preprocess import crop_faces
from headpose.runtime.rotation import angle_difference_deg, euler_from_6d
from headpose.runtime.scrfd import box_iou
from headpose.runtime.smoothing import jitter_deg_per_frame
from tests.conftest import IMAGES, VIDEO, WEIGHTS, need_shared

POSE_MODEL = "mobilenetv3_small"
VIDEO_FRAMES = (0, 80, 160, 240, 320)
ANGLE_TOL = 0.1  # degrees, TFLite fp32 vs PyTorch
# NumPy vs OpenCV resize differ by <= 1 grey level (OpenCV's fixed-point rounding); through the detector
# this moves boxes by a fraction of a pixel and through the (seeded, untrained) pose network the angles by
# a few tenths of a degree at most.
OPENCV_BOX_IOU = 0.98
OPENCV_ANGLE_TOL = 1.0


def _frames():
    cv2 = pytest.importorskip("cv2", reason="frames are read with OpenCV")
    need_shared(VIDEO)
    need_shared(IMAGES)
    out = []
    cap = cv2.VideoCapture(str(VIDEO))
    i = 0
    want = set(VIDEO_FRAMES)
    while want:
        ok, fr = cap.read()
        if not ok:
            break
        if i in want:
            out.append((f"in_video#{i}", fr))
            want.discard(i)
        i += 1
    cap.release()
    for p in sorted(IMAGES.glob("*.jpg")):
        out.append((p.name, cv2.imread(str(p))))
    return out


@pytest.fixture(scope="module")
def frames():
    return _frames()


@pytest.fixture(scope="module")
def det_dir(artifact):
    return artifact("scrfd_500m", "fp32")


@pytest.fixture(scope="module")
def pose_dir(artifact):
    return artifact(POSE_MODEL, "fp32")


@pytest.fixture(scope="module")
def reference_detector():
    pytest.importorskip("onnxruntime", reason="the SCRFD reference runs in onnxruntime")
    from headpose.convert.facedata import OnnxFaceDetector
    return OnnxFaceDetector(need_shared(WEIGHTS / "scrfd_500m_bnkps.onnx"), 640)


@pytest.fixture(scope="module")
def torch_pose(pose_dir, seeded_ckpt):
    torch = pytest.importorskip("torch", reason="the pose reference is the PyTorch model")
    import hashlib
    from headpose.convert.checkpoint import load_pose_model
    ckpt = seeded_ckpt(POSE_MODEL)  # the checkpoint the artifact fixture converts (seeded: deterministic)
    want = load_manifest(pose_dir).source.get("sha256")
    assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == want, "pose artifact was built from another checkpoint"
    m = load_pose_model(POSE_MODEL, ckpt)
    m.eval()

    def run(batch_nhwc: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return m(torch.from_numpy(batch_nhwc.transpose(0, 3, 1, 2).copy())).numpy()
    return run


def _match(ref: np.ndarray, ours: np.ndarray) -> np.ndarray:
    """For each reference box, the IoU of the best-overlapping runtime box."""
    if len(ref) == 0:
        return np.zeros(0)
    return box_iou(ref, ours).max(axis=1)


def test_detector_matches_onnx_scrfd(frames, det_dir, reference_detector):
    det = FaceDetector(det_dir, use_opencv=False)
    total = 0
    for name, fr in frames:
        ref, ref_kps = reference_detector.detect(fr)
        ours, kps = det.detect(fr)
        assert len(ours) == len(ref), f"{name}: {len(ours)} faces, reference {len(ref)}"
        if len(ref):
            iou = box_iou(ref, ours)
            assert iou.max(axis=1).min() >= 0.95, f"{name}: IoU {iou.max(axis=1)}"
            j = iou.argmax(axis=1)
            np.testing.assert_allclose(ours[j, 4], ref[:, 4], atol=0.01, err_msg=name)
            np.testing.assert_allclose(kps[j], ref_kps, atol=2.0, err_msg=name)
        total += len(ref)
    assert total >= 12  # the video has 1-7 faces per frame: the comparison covered many faces


def test_pose_matches_pytorch(frames, pose_dir, reference_detector, torch_pose):
    pose = PoseEstimator(pose_dir, use_opencv=False)
    inp = pose.manifest.input
    n = 0
    yaws = []
    for name, fr in frames:
        dets, _ = reference_detector.detect(fr)
        if not len(dets):
            continue
        _, eul, kept = pose.estimate(fr, dets)
        batch, kept_ref = crop_faces(fr, dets, 224, inp.mean, inp.std, "BGR", inp.color, pose.margin)
        ref = euler_from_6d(torch_pose(batch))
        np.testing.assert_array_equal(kept, kept_ref)
        diff = angle_difference_deg(eul, ref)
        assert diff.max() < ANGLE_TOL, f"{name}: max angle difference {diff.max():.3f} deg"
        n += len(kept)
        yaws += list(eul[:, 1])
    assert n >= 15
    # the (seeded) network's angles vary from face to face, so this comparison can fail
    assert np.std(yaws) > 0.5, f"pose outputs barely vary across faces (yaw std {np.std(yaws):.3f} deg)"


def test_end_to_end_equals_reference_pipeline(frames, det_dir, pose_dir, reference_detector, torch_pose):
    """The whole estimator (no smoothing, NumPy path) gives the reference faces and angles."""
    opts = EstimatorOptions(smooth=False, use_opencv=False)
    with HeadPoseEstimator.from_artifacts(det_dir, pose_dir, opts) as hpe:
        for name, fr in frames[::2]:  # a subset: test_pose_matches_pytorch covers every frame
            hpe.reset()
            faces = hpe.estimate(fr)
            dets, _ = reference_detector.detect(fr)
            assert len(faces) == len(dets), name
            if not faces:
                continue
            boxes = np.stack([f.box for f in faces])
            assert box_iou(boxes, dets).max(axis=1).min() >= 0.95, name
            inp = hpe.pose.manifest.input
            batch, _ = crop_faces(fr, boxes, 224, inp.mean, inp.std, "BGR", inp.color, hpe.pose.margin)
            ref = euler_from_6d(torch_pose(batch))  # pitch, yaw, roll of the same crops in PyTorch
            ours = np.array([[f.pitch, f.yaw, f.roll] for f in faces])
            assert angle_difference_deg(ours, ref).max() < ANGLE_TOL, name
            assert set(hpe.last_timings) == {"detector_preprocess", "detector", "decode", "crop", "pose",
                                             "smoothing"}
            assert hpe.last_timings["smoothing"] == 0.0 and hpe.last_timings["detector"] > 0


def test_multi_face_batch_equals_one_by_one(frames, pose_dir, reference_detector):
    pose = PoseEstimator(pose_dir, use_opencv=False)
    multi = [(n, f) for n, f in frames if len(reference_detector.detect(f)[0]) >= 3]
    assert multi, "no frame with >= 3 faces"
    for name, fr in multi:
        dets, _ = reference_detector.detect(fr)
        rots, eul, kept = pose.estimate(fr, dets)
        assert len(kept) == len(dets), f"{name}: every face gets a pose"
        assert pose.model.input_shape[0] == len(dets) and pose._batched  # one call with the whole batch
        single = np.concatenate([pose.estimate(fr, dets[i:i + 1])[1] for i in range(len(dets))])
        np.testing.assert_allclose(eul, single, atol=1e-3, err_msg=name)


def test_numpy_and_opencv_paths_agree(frames, det_dir, pose_dir):
    pytest.importorskip("cv2", reason="compares with the OpenCV resize path")
    a = HeadPoseEstimator.from_artifacts(det_dir, pose_dir, EstimatorOptions(smooth=False, use_opencv=False))
    b = HeadPoseEstimator.from_artifacts(det_dir, pose_dir, EstimatorOptions(smooth=False, use_opencv=True))
    worst_iou, worst_angle = 1.0, 0.0
    for name, fr in frames:
        a.reset()
        b.reset()
        fa, fb = a.estimate(fr), b.estimate(fr)
        assert len(fa) == len(fb), name
        if not fa:
            continue
        iou = box_iou(np.stack([f.box for f in fa]), np.stack([f.box for f in fb]))
        j = iou.argmax(axis=1)
        worst_iou = min(worst_iou, iou.max(axis=1).min())
        ang_a = np.array([[f.pitch, f.yaw, f.roll] for f in fa])
        ang_b = np.array([[fb[k].pitch, fb[k].yaw, fb[k].roll] for k in j])
        worst_angle = max(worst_angle, angle_difference_deg(ang_a, ang_b).max())
    print(f"NumPy vs OpenCV path: worst box IoU {worst_iou:.4f}, worst angle difference {worst_angle:.3f} deg")
    assert worst_iou >= OPENCV_BOX_IOU and worst_angle < OPENCV_ANGLE_TOL, (worst_iou, worst_angle)


def test_tracking_ids_stable_over_a_run_of_frames(det_dir, pose_dir):
    cv2 = pytest.importorskip("cv2", reason="reads the video")
    need_shared(VIDEO)
    cap = cv2.VideoCapture(str(VIDEO))
    hpe = HeadPoseEstimator.from_artifacts(det_dir, pose_dir, EstimatorOptions(smooth=True))
    prev = None
    switches = matched = 0
    for i in range(25):
        ok, fr = cap.read()
        assert ok
        faces = hpe.estimate(fr, timestamp=i / 25)
        assert len({f.track_id for f in faces}) == len(faces)
        if prev:
            pb = np.stack([f.box for f in prev]) if prev else np.zeros((0, 4))
            for f in faces:
                iou = box_iou(f.box[None], pb)[0]
                if iou.max() > 0.6:  # the same face, barely moved
                    matched += 1
                    switches += prev[int(iou.argmax())].track_id != f.track_id
        prev = faces
    cap.release()
    assert matched >= 40 and switches == 0, (matched, switches)


def test_detect_every_carries_boxes(det_dir, pose_dir):
    cv2 = pytest.importorskip("cv2", reason="reads the video")
    need_shared(VIDEO)
    cap = cv2.VideoCapture(str(VIDEO))
    hpe = HeadPoseEstimator.from_artifacts(det_dir, pose_dir, EstimatorOptions(detect_every=3, smooth=False))
    last_det = None
    for i in range(9):
        ok, fr = cap.read()
        faces = hpe.estimate(fr)
        t = hpe.last_timings
        if i % 3 == 0:
            assert t["detector"] > 0
            last_det = faces
        else:
            assert t["detector"] == 0 and t["decode"] == 0 and t["pose"] > 0
            assert [f.track_id for f in faces] == [f.track_id for f in last_det]
            for f, g in zip(faces, last_det):
                np.testing.assert_array_equal(f.box, g.box)
    cap.release()
    assert last_det


def test_jitter_on_a_static_head(det_dir, pose_dir):
    """Jitter figure: a still portrait with fresh sensor-like noise per frame (sigma 3 grey levels).

    The head does not move, so the frame-to-frame rotation change is pure jitter; the One-Euro filter
    on the rotation must cut it substantially.
    """
    cv2 = pytest.importorskip("cv2", reason="reads the image")
    img = cv2.imread(str(need_shared(IMAGES / "single_face.jpg"))).astype(np.float32)
    rng = np.random.default_rng(0)
    frames = [np.clip(img + rng.normal(0, 3.0, img.shape), 0, 255).astype(np.uint8) for _ in range(20)]
    figures = {}
    for smooth in (False, True):
        hpe = HeadPoseEstimator.from_artifacts(det_dir, pose_dir, EstimatorOptions(smooth=smooth))
        rots = []
        for i, fr in enumerate(frames):
            (face,) = hpe.estimate(fr, timestamp=i / 25)
            rots.append(face.rotation)
        figures[smooth] = jitter_deg_per_frame(np.stack(rots))
    print(f"jitter on a static head: raw {figures[False]:.3f} deg/frame, smoothed {figures[True]:.3f} deg/frame")
    assert figures[False] > 0.01  # the noise does move the raw estimate
    assert figures[True] < figures[False] / 2


def test_int8_artifacts_follow_fp32(frames, det_dir, pose_dir, artifact):
    """Full-integer artifacts (int8 body, float32 I/O) through the same runtime: the faces of fp32
    (same count, IoU >= 0.85 - here >= 0.93), poses within 5 deg geodesic (here <= 2.1), batching exact."""
    from headpose.runtime.rotation import geodesic_deg
    det8, pose8 = artifact("scrfd_500m", "int8"), artifact(POSE_MODEL, "int8")
    opts = EstimatorOptions(smooth=False, use_opencv=False)
    f32 = HeadPoseEstimator.from_artifacts(det_dir, pose_dir, opts)
    i8 = HeadPoseEstimator.from_artifacts(det8, pose8, opts)
    assert i8.detector.manifest.precision == i8.pose.manifest.precision == "int8"
    for name, fr in frames:
        f32.reset()
        i8.reset()
        a, b = f32.estimate(fr), i8.estimate(fr)
        assert len(a) == len(b), name
        if not a:
            continue
        iou = box_iou(np.stack([f.box for f in a]), np.stack([f.box for f in b]))
        assert iou.max(axis=1).min() >= 0.85, name
        j = iou.argmax(axis=1)
        g = geodesic_deg(np.stack([f.rotation for f in a]), np.stack([b[k].rotation for k in j]))
        assert g.max() < 5.0, f"{name}: int8 vs fp32 pose {g.max():.2f} deg"
        boxes = np.stack([f.box for f in b])
        _, batched, _ = i8.pose.estimate(fr, boxes)
        single = np.concatenate([i8.pose.estimate(fr, boxes[k:k + 1])[1] for k in range(len(boxes))])
        np.testing.assert_allclose(batched, single, atol=1e-3, err_msg=name)
