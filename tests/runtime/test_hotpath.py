"""The per-frame hot path (issue 13): uint8 pixels through one table straight into the input buffer.

Unit part (no artifacts): the pixel tables equal the float formula (``normalise``, and its int8
quantisation) for every pixel value; the writers give exactly what the simple path gives (letterbox /
crop_faces, normalise, quantise), on real frames, for the OpenCV and the NumPy path, and the two paths
stay within one grey level. Artifact part: detector and pose hot paths equal their simple paths
bit for bit, with a face count that changes from frame to frame (no interpreter re-allocated), and
the int8-input artifacts the converter now writes.
"""

from __future__ import annotations

import numpy as np
import pytest

from headpose.runtime.interpreter import quantize_input
from headpose.runtime.preprocess import (InputWriter, crop_boxes, crop_faces, letterbox, normalise, pixel_lut,
                                         to_color)
from headpose.runtime.registry import get_spec
from tests.conftest import IMAGES, VIDEO, need_shared

SCRFD = get_spec("scrfd_500m")
POSE = get_spec("mobilenetv3_small")
# (scale, zero_point) pairs: SCRFD-like inputs (scale exactly 1/128: every pixel a .5 tie, even and odd zero
# points), an ImageNet-like one, a skewed zero point
QUANTS = ((0.0078125, 0), (0.0078125, -1), (0.00784, -1), (0.018658, -14), (0.0173, 5))


def _frames():
    cv2 = pytest.importorskip("cv2", reason="frames are read with OpenCV")
    need_shared(VIDEO)
    cap = cv2.VideoCapture(str(VIDEO))
    ok, landscape = cap.read()
    cap.release()
    assert ok
    portrait = cv2.imread(str(need_shared(IMAGES / "emma.jpg")))
    return landscape, portrait


@pytest.fixture(scope="module")
def frames():
    return _frames()


def _reference_letterbox(frame, size, spec, use_opencv, dtype=np.float32, quant=None):
    canvas, scale = letterbox(frame, size, use_opencv)
    x = normalise(to_color(canvas, "BGR", spec.color), spec.mean, spec.std)
    return (x if quant is None else quantize_input(x, quant[0], quant[1], dtype)), scale


@pytest.mark.parametrize("spec", [SCRFD, POSE], ids=["scrfd", "imagenet"])
def test_pixel_lut_float_is_normalise(spec):
    img = np.repeat(np.arange(256, dtype=np.float32)[:, None], 3, axis=1)[None]  # (1, 256, 3): every value
    want = normalise(img, spec.mean, spec.std)[0]
    got = pixel_lut(spec.mean, spec.std)
    assert got.dtype == np.float32 and got.shape == (256, 3)
    assert np.array_equal(got, want)  # bit-identical, not close


@pytest.mark.parametrize("spec", [SCRFD, POSE], ids=["scrfd", "imagenet"])
@pytest.mark.parametrize("quant", QUANTS)
def test_pixel_lut_int8_is_the_quantised_formula(spec, quant):
    scale, zero = quant
    got = pixel_lut(spec.mean, spec.std, np.int8, quant)
    x = pixel_lut(spec.mean, spec.std)
    assert got.dtype == np.int8
    assert np.array_equal(got, quantize_input(x, scale, zero, np.int8))
    # the formula in float64, q = clip(round(((p - mean) / std) / scale) + zero_point): the float32
    # table differs only where float32 rounding lands on the other side of a .5 tie (none here)
    p = np.arange(256, dtype=np.float64)[:, None]
    exact = np.clip(np.round((p - np.asarray(spec.mean)) / np.asarray(spec.std) / scale) + zero, -128, 127)
    assert np.array_equal(got.astype(np.float64), exact)
    assert got[0].tolist() == quantize_input(x[0], scale, zero, np.int8).tolist()  # the padding value


def test_pixel_lut_needs_the_quantisation():
    from headpose.runtime.errors import InputError
    with pytest.raises(InputError, match="scale, zero_point"):
        pixel_lut(SCRFD.mean, SCRFD.std, np.int8)


@pytest.mark.parametrize("use_opencv", [True, False], ids=["opencv", "numpy"])
@pytest.mark.parametrize("quant", [None, (0.00784, -1)], ids=["float32", "int8"])
def test_letterbox_writer_equals_the_simple_path(frames, use_opencv, quant):
    if use_opencv:
        pytest.importorskip("cv2", reason="the OpenCV path")
    dtype = np.float32 if quant is None else np.int8
    w = InputWriter(SCRFD.mean, SCRFD.std, SCRFD.color, dtype, quant, use_opencv)
    buf = np.full((640, 640, 3), 99, dtype)  # the interpreter's buffer: garbage before the first write
    # landscape, portrait, landscape again: the padding is rewritten whenever the geometry changes
    for frame in (frames[0], frames[1], frames[0]):
        scale = w.letterbox(frame, buf, "BGR")
        want, want_scale = _reference_letterbox(frame, (640, 640), SCRFD, use_opencv, dtype, quant)
        assert scale == want_scale
        assert buf.dtype == want.dtype and np.array_equal(buf, want)


@pytest.mark.parametrize("use_opencv", [True, False], ids=["opencv", "numpy"])
@pytest.mark.parametrize("quant", [None, (0.018658, -14)], ids=["float32", "int8"])
def test_crop_writer_equals_crop_faces(frames, use_opencv, quant):
    if use_opencv:
        pytest.importorskip("cv2", reason="the OpenCV path")
    frame = frames[0]
    # real-size face boxes, one cut by the frame's border, one entirely outside (no crop)
    boxes = np.array([[100, 80, 160, 150, 0.9], [600.5, 300.2, 690.9, 410.7, 0.8], [1240, 690, 1300, 760, 0.7],
                      [-50, 10, 20, 90, 0.6], [2000, 2000, 2100, 2100, 0.5]], np.float32)
    dtype = np.float32 if quant is None else np.int8
    w = InputWriter(POSE.mean, POSE.std, POSE.color, dtype, quant, use_opencv)
    regions, kept = crop_boxes(frame.shape[:2], boxes, 0.2)
    ref, ref_kept = crop_faces(frame, boxes, 224, POSE.mean, POSE.std, "BGR", POSE.color, 0.2, use_opencv)
    assert kept.tolist() == ref_kept.tolist() == [0, 1, 2, 3]
    if quant is not None:
        ref = quantize_input(ref, quant[0], quant[1], dtype)
    for n in (4, 2, 4, 1):  # batches of changing size into buffers of that size
        buf = np.full((n, 224, 224, 3), 7, dtype)
        w.crops(frame, regions[:n], buf, "BGR")
        assert np.array_equal(buf, ref[:n])


def test_numpy_and_opencv_writers_within_one_grey_level(frames):
    pytest.importorskip("cv2", reason="compares with the OpenCV path")
    a = InputWriter(SCRFD.mean, SCRFD.std, SCRFD.color, use_opencv=True)
    b = InputWriter(SCRFD.mean, SCRFD.std, SCRFD.color, use_opencv=False)
    for frame in frames:
        x, y = np.zeros((640, 640, 3), np.float32), np.zeros((640, 640, 3), np.float32)
        a.letterbox(frame, x)
        b.letterbox(frame, y)
        assert np.abs(x - y).max() <= 1.0 / 128 + 1e-6  # one grey level of SCRFD's 1/128 scale


# -- real artifacts ---------------------------------------------------------------------------------

def _video_frames(n=12, step=27):
    cv2 = pytest.importorskip("cv2", reason="reads the video")
    cap = cv2.VideoCapture(str(need_shared(VIDEO)))
    out, i = [], 0
    while len(out) < n:
        ok, fr = cap.read()
        if not ok:
            break
        if i % step == 0:
            out.append(fr)
        i += 1
    cap.release()
    return out


def _check_hot_equals_simple(det_dir, pose_dir, use_opencv):
    from headpose.runtime.detector import FaceDetector
    from headpose.runtime.pose import PoseEstimator
    from headpose.runtime.rotation import euler_from_rotation, rotation_from_6d
    det = FaceDetector(det_dir, use_opencv=use_opencv)
    pose = PoseEstimator(pose_dir, use_opencv=use_opencv)
    from collections import OrderedDict
    interps: "OrderedDict[int, object]" = OrderedDict()  # the sizes the model keeps ready (the latest max_ready)
    counts = []
    for k, fr in enumerate(_video_frames()):
        dets, kps = det.detect(fr)
        x, scale = det.preprocess(fr)
        ref_dets, ref_kps = det.decode(det.raw(x), scale)
        assert np.array_equal(dets, ref_dets) and np.array_equal(kps, ref_kps)
        # a face count that changes from call to call: all faces, then the first 1, 3, 2 ...
        for n in (len(dets), 1, 3, 2, len(dets))[: 2 + k % 4]:
            boxes = dets[:n]
            rots, eul, kept = pose.estimate(fr, boxes)
            if not len(kept):
                continue
            counts.append(len(kept))
            interp, n = pose.model.interpreter, len(kept)
            if n in interps:  # a size used among the latest max_ready: the same interpreter, not re-allocated
                assert interps[n] is interp
                interps.move_to_end(n)
            interps[n] = interp
            while len(interps) > pose.model.max_ready:
                interps.popitem(last=False)
            batch, ref_kept = pose.crop(fr, boxes)
            assert np.array_equal(kept, ref_kept)
            ref = euler_from_rotation(rotation_from_6d(pose.infer(batch)))
            assert np.array_equal(eul, ref)
    assert len(set(counts)) >= 3, counts


@pytest.mark.parametrize("use_opencv", [True, False], ids=["opencv", "numpy"])
def test_hot_path_equals_simple_path_fp32(det_dir, pose_dir, use_opencv):
    if use_opencv:
        pytest.importorskip("cv2", reason="the OpenCV path")
    _check_hot_equals_simple(det_dir, pose_dir, use_opencv)


def test_int8_input_artifacts(artifact):
    """int8 conversions take int8 pixels: the manifest says so, the parity gate ran on them, the
    int8-input model equals the float-input one it was rewritten from (bit for bit) in no more XNNPACK
    partitions (SCRFD: one; the seeded pose network's random int8 scales make XNNPACK decline a few
    nodes with either input - the shipped students are one partition, test_xnnpack_partition.py), and
    the hot path (table into the int8 buffer) equals the simple path (float, quantised by the interpreter)."""
    from headpose.runtime.manifest import load_manifest
    dirs = artifact("scrfd_500m", "int8"), artifact("mobilenetv3_small", "int8")
    for d in dirs:
        m = load_manifest(d)
        assert m.input.dtype == "int8" and m.input.normalisation == "input_quantisation", m.input
        assert m.input.quantization and m.input.quantization["scale"] > 0
        assert m.parity["passed"] is True
        eq = m.quantization["int8_input"]
        assert eq["vs_float_input_max_abs"] == 0.0 and eq["samples"] > 0, eq
        assert eq["xnnpack_partitions"] == m.parity["xnnpack_partitions"] >= 1
    assert load_manifest(dirs[0]).parity["xnnpack_partitions"] == 1
    pytest.importorskip("cv2", reason="the OpenCV path")
    _check_hot_equals_simple(*dirs, use_opencv=True)
