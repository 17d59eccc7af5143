"""Golden vectors for the Android core module, written by the Python runtime from real data.

Run as a script (``python tests/android/android_golden.py OUT_DIR``) or through :func:`write_golden` (the
pytest fixture). Everything the Java side reads is raw model output or raw pixels; everything it is
compared to is what ``headpose.runtime`` makes of the same inputs:

* frames: real images (``../shared/data/images``) and frames of ``in_video.mp4``, as BGR ``uint8``;
* detector: the SCRFD-500M ONNX model run in ONNX Runtime (``session.run``) on the Python letterbox
  blob; raw score/bbox/kps per stride in, ``decode_scrfd`` boxes/keypoints out;
* crops: ``crop_faces`` on those boxes (NHWC, ImageNet-normalised RGB);
* pose, raw network output: a seeded ``mobilenetv3_small`` checkpoint (``headpose.convert.checkpoint``)
  run in PyTorch on the real crops; raw (non-orthonormal) 6-vectors in, ``euler_from_6d`` out. Seeded
  backbones give nearly the same output for every face, so real angles come from:
* pose, real angles: the trained FSA-Net ONNX (``fsanet_1x1.onnx``, ONNX Runtime) on the same crops;
  its yaw/pitch/roll -> ``rotation_from_euler`` -> 6D (the first two columns) in, ``euler_from_6d``
  and ``draw.axis_points`` out;
* tracking + smoothing: 40 consecutive video frames through ``IoUTracker`` and a ``RotationSmoother``
  per track on the FSA-Net rotations, plus a plain ``OneEuroFilter`` on one track's FSA-Net angles;
* manifests: the detector and pose manifests (``Manifest.to_dict``) plus broken variants that the
  Python parser rejects.

Layout of ``OUT_DIR``: ``index.json`` (what the Java runner reads) and little-endian ``.bin`` files
(``float32``, ``float64``, ``int32`` or ``uint8``), each described in the index by file, dtype and shape.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
VIDEO = SHARED / "data" / "in_video.mp4"
IMAGES = SHARED / "data" / "images"
SCRFD_ONNX = SHARED / "weights" / "scrfd_500m_bnkps.onnx"
FSANET_ONNX = SHARED / "weights" / "fsanet_1x1.onnx"
DET_SIZE = 640
POSE_MODEL = "mobilenetv3_small"
VIDEO_STILLS = (0, 120, 240)  # frames used like images
SEQ_START, SEQ_LEN = 60, 40  # consecutive frames for tracking + smoothing
FPS = 30.0
STREAM_LEN, STREAM_DETECT_EVERY = 12, 2  # whole-estimator replay on real artifacts
EURO_PARAMS = {"min_cutoff": 0.5, "beta": 0.05, "d_cutoff": 1.0}  # non-default, on Euler degrees


class Writer:
    """Collects arrays as ``.bin`` files and their descriptions."""

    def __init__(self, out: Path):
        self.out = out
        self.n = 0

    def __call__(self, arr: np.ndarray, name: str) -> Dict[str, Any]:
        arr = np.ascontiguousarray(arr)
        dtype = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64",
                 np.dtype(np.int32): "int32", np.dtype(np.uint8): "uint8"}[arr.dtype]
        self.n += 1
        fname = f"{self.n:04d}_{name}.bin"
        arr.astype(arr.dtype.newbyteorder("<"), copy=False).tofile(self.out / fname)
        return {"file": fname, "dtype": dtype, "shape": list(arr.shape)}


def read_bin(out: Path, desc: Dict[str, Any]) -> np.ndarray:
    """Read back one array described in an index (used by the test to read Java's outputs too)."""
    dt = {"float32": "<f4", "float64": "<f8", "int32": "<i4", "uint8": "u1"}[desc["dtype"]]
    return np.fromfile(out / desc["file"], dtype=dt).reshape(desc["shape"])


def _manifests(det_session, det_roles, pose_input_name: str, pose_output_name: str):
    from headpose.runtime.manifest import Manifest, TensorSpec, artifact_id, sha256_file
    from headpose.runtime.registry import get_spec
    det_spec, pose_spec = get_spec("scrfd_500m"), get_spec(POSE_MODEL)
    outs = [TensorSpec(name=o.name, shape=[1] + [int(v) for v in o.shape], dtype="float32", role=role,
                       stride=stride)
            for o, (role, stride) in zip(det_session.get_outputs(), det_roles)]
    det = Manifest(id=artifact_id("scrfd_500m", DET_SIZE, "onnx", "fp32"), model="scrfd_500m",
                   task="face_detection", format="onnx", precision="fp32", file=SCRFD_ONNX.name,
                   input=TensorSpec(name=det_session.get_inputs()[0].name, shape=[1, 3, DET_SIZE, DET_SIZE],
                                    role="image", layout="NCHW", color=det_spec.color,
                                    mean=list(det_spec.mean), std=list(det_spec.std)),
                   outputs=outs, decode=copy.deepcopy(det_spec.decode), file_bytes=SCRFD_ONNX.stat().st_size,
                   file_sha256=sha256_file(SCRFD_ONNX),
                   created_utc="2026-11-25T00:00:00Z")
    pose = Manifest(id=artifact_id(POSE_MODEL, 224, "tflite", "fp32"), model=POSE_MODEL, task="head_pose",
                    format="tflite", precision="fp32", file="model.tflite",
                    file_sha256="0" * 64, file_bytes=1,  # a TFLite manifest records them (no model file here)
                    input=TensorSpec(name=pose_input_name, shape=[1, 224, 224, 3], role="image", layout="NHWC",
                                     color=pose_spec.color, mean=list(pose_spec.mean), std=list(pose_spec.std)),
                    outputs=[TensorSpec(name=pose_output_name, shape=[1, 6], role="ortho6d",
                                        quantization={"scale": 0.0078125, "zero_point": -3})],
                    decode=copy.deepcopy(pose_spec.decode), quantization={"mode": "none"},
                    tools={"note": "caf\u00e9 \u2713 \U0001F600 \"quoted\" \\ tab\t"},
                    created_utc="2026-11-25T00:00:00Z")
    return det.to_dict(), pose.to_dict()


def _broken(manifest: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Variants the Python parser rejects, each with why."""
    cases = []
    for why, edit in (
            ("schema_version 2", lambda d: d.__setitem__("schema_version", 2)),
            ("no decode", lambda d: d.pop("decode")),
            ("no outputs", lambda d: d.__setitem__("outputs", [])),
            ("task 'pose'", lambda d: d.__setitem__("task", "pose")),
            ("format 'tf'", lambda d: d.__setitem__("format", "tf")),
            ("input without layout", lambda d: d["input"].pop("layout")),
            ("input colour 'YUV'", lambda d: d["input"].__setitem__("color", "YUV"))):
        d = copy.deepcopy(manifest)
        edit(d)
        cases.append({"why": why, "text": json.dumps(d)})
    cases.append({"why": "truncated JSON", "text": json.dumps(manifest)[:-7]})
    return cases


def write_golden(out: Path) -> Dict[str, Any]:
    """Write every golden vector into ``out`` and return the index (also saved as ``index.json``)."""
    import cv2
    import torch

    from headpose.convert.checkpoint import load_pose_model, seeded_checkpoint
    from headpose.convert.facedata import OnnxFaceDetector, iter_frames
    from headpose.runtime.draw import axis_points
    from headpose.runtime.manifest import Manifest
    from headpose.runtime.preprocess import crop_faces, expand_box
    from headpose.runtime.registry import SCRFD_DECODE, get_spec
    from headpose.runtime.rotation import euler_from_6d, euler_from_rotation, rotation_from_euler
    from headpose.runtime.scrfd import decode_scrfd
    from headpose.runtime.smoothing import OneEuroFilter, RotationSmoother
    from headpose.runtime.tracking import IoUTracker

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    put = Writer(out)
    torch.set_num_threads(1)
    det = OnnxFaceDetector(SCRFD_ONNX, DET_SIZE)
    pose_spec = get_spec(POSE_MODEL)
    ckpt = seeded_checkpoint(POSE_MODEL, out / "pose_seeded.pt", seed=1)
    model = load_pose_model(POSE_MODEL, ckpt)
    det_manifest, pose_manifest = _manifests(det.session, det.roles, "serving_default_input:0",
                                             "StatefulPartitionedCall:0")
    for d in (det_manifest, pose_manifest):  # the Python parser must accept what the Java side parses
        Manifest.from_dict(json.loads(json.dumps(d)))
    broken = _broken(pose_manifest) + _broken(det_manifest)[:3]
    for b in broken:
        try:
            Manifest.from_dict(json.loads(b["text"]))
            b["python"] = "accepted"
        except Exception as e:  # ManifestError, or JSONDecodeError for the truncated one
            b["python"] = type(e).__name__
    margin = float(pose_spec.decode["crop"]["margin"])
    strides = SCRFD_DECODE["strides"]

    import onnxruntime as ort
    fsa = ort.InferenceSession(str(FSANET_ONNX), providers=["CPUExecutionProvider"])

    def fsa_ypr(frame: np.ndarray, dets: np.ndarray) -> np.ndarray:
        """FSA-Net yaw, pitch, roll (degrees, (M, 3) float64) of the kept faces' crops."""
        rgb, _ = crop_faces(frame, dets, 224, (0, 0, 0), (1, 1, 1), "BGR", "RGB", margin)
        if not len(rgb):
            return np.zeros((0, 3))
        crops = np.clip(np.round(rgb), 0, 255).astype(np.uint8)
        small = np.stack([cv2.resize(c, (64, 64), interpolation=cv2.INTER_AREA) for c in crops])
        x = np.ascontiguousarray(((small[..., ::-1].astype(np.float32) - 127.5) / 128.0).transpose(0, 3, 1, 2))
        return fsa.run(None, {fsa.get_inputs()[0].name: x})[0].astype(np.float64)

    def as6d(ypr: np.ndarray) -> np.ndarray:
        r = rotation_from_euler(ypr[:, 1], ypr[:, 0], ypr[:, 2]).reshape(-1, 3, 3)
        return np.concatenate([r[:, :, 0], r[:, :, 1]], axis=1)

    def pose6(batch_nhwc: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(batch_nhwc.transpose(0, 3, 1, 2).copy())).numpy().astype(np.float32)

    def frame_case(frame_id: str, frame: np.ndarray) -> Dict[str, Any]:
        blob, scale = det.blob(frame)
        raw = det.raw(blob)
        dets, kps = decode_scrfd(raw, (DET_SIZE, DET_SIZE), strides, SCRFD_DECODE["anchors_per_cell"],
                                 SCRFD_DECODE["score_threshold"], SCRFD_DECODE["nms_threshold"], scale)
        case = {"id": frame_id, "width": int(frame.shape[1]), "height": int(frame.shape[0]),
                "frame": put(frame, "frame"), "det_input": put(blob[0], "det_input"), "scale": float(scale),
                "raw": [{"role": r, "stride": s, "data": put(np.asarray(raw[(r, s)], np.float32), f"{r}{s}")}
                        for (r, s) in det.roles],
                "dets": put(dets, "dets"), "kps": put(kps.reshape(-1, 10), "kps")}
        batch, kept = crop_faces(frame, dets, 224, pose_spec.mean, pose_spec.std, "BGR", pose_spec.color, margin)
        boxes = np.asarray([expand_box(b, margin) for b in dets], np.int32).reshape(-1, 4)
        boxes[:, 2] = np.minimum(boxes[:, 2], frame.shape[1])
        boxes[:, 3] = np.minimum(boxes[:, 3], frame.shape[0])
        case["crop_boxes"] = put(boxes, "crop_boxes")
        case["crop_kept"] = put(kept.astype(np.int32), "crop_kept")
        case["crops"] = put(batch, "crops")
        v6 = pose6(batch) if len(batch) else np.zeros((0, 6), np.float32)
        eul = euler_from_6d(v6) if len(v6) else np.zeros((0, 3))
        case["pose6d"] = put(v6, "pose6d")
        case["euler"] = put(np.asarray(eul, np.float64).reshape(-1, 3), "euler")
        ypr = fsa_ypr(frame, dets)
        f6 = as6d(ypr) if len(ypr) else np.zeros((0, 6))
        feul = euler_from_6d(f6) if len(f6) else np.zeros((0, 3))
        axes = [sum(axis_points(e[1], e[0], e[2], expand_box(dets[k], margin)), ()) for e, k in zip(feul, kept)]
        case["fsa_ypr"] = put(ypr.reshape(-1, 3), "fsa_ypr")
        case["fsa6d"] = put(f6.reshape(-1, 6), "fsa6d")
        case["fsa_euler"] = put(np.asarray(feul, np.float64).reshape(-1, 3), "fsa_euler")
        case["axes"] = put(np.asarray(axes, np.int32).reshape(-1, 8), "axes")
        return case

    frames = []
    for path in sorted(IMAGES.glob("*.jpg")):
        frames.append(frame_case(path.name, cv2.imread(str(path), cv2.IMREAD_COLOR)))
    for i, (fid, frame) in enumerate(iter_frames(VIDEO, stop=max(VIDEO_STILLS) + 1)):
        if i in VIDEO_STILLS:
            frames.append(frame_case(f"in_video#{i}", frame))

    # tracking + smoothing over consecutive frames
    tracker = IoUTracker()
    smoothers: Dict[int, RotationSmoother] = {}
    euro = OneEuroFilter(**EURO_PARAMS)
    seq = []
    euro_in, euro_out, euro_t = [], [], []
    for fid, frame in iter_frames(VIDEO, start=SEQ_START, stop=SEQ_START + SEQ_LEN):
        idx = int(fid.rsplit("#", 1)[1])
        t = idx / FPS
        dets, kps = det.detect(frame)
        tracks = tracker.update(dets, kps)
        _, kept = crop_faces(frame, dets, 224, pose_spec.mean, pose_spec.std, "BGR", pose_spec.color, margin)
        ypr = fsa_ypr(frame, dets)
        rots = rotation_from_euler(ypr[:, 1], ypr[:, 0], ypr[:, 2]) if len(ypr) else np.zeros((0, 3, 3))
        smoothed = []
        for r, k in zip(rots.reshape(-1, 3, 3), kept):
            tid = tracks[k].track_id
            smoothers.setdefault(tid, RotationSmoother())
            smoothed.append(smoothers[tid](r, t))
            if tid == 1:
                e = euler_from_rotation(r)
                euro_in.append(e)
                euro_t.append(t)
                euro_out.append(euro(e, t))
        seq.append({"t": t, "dets": put(dets, "seq_dets"), "kps": put(kps.reshape(-1, 10), "seq_kps"),
                    "track_ids": put(np.asarray([tr.track_id for tr in tracks], np.int32), "seq_ids"),
                    "kept": put(kept.astype(np.int32), "seq_kept"),
                    "fsa_ypr": put(ypr.reshape(-1, 3), "seq_fsa_ypr"),
                    "rotations": put(np.asarray(rots, np.float64).reshape(-1, 9), "seq_rotations"),
                    "smoothed": put(np.asarray(smoothed, np.float64).reshape(-1, 9), "seq_smoothed")})
    # int8/uint8 (de)quantisation as runtime/interpreter.py does it (quantize_input), on a real detector
    # input; the scale/zero-point pairs are illustrative (the formula is what is compared)
    from headpose.runtime.interpreter import quantize_input
    x = _read_first_det_input(out, frames[0])
    quant = []
    for dtype, scale, zero in (("int8", 0.0078125, -1), ("uint8", 0.0079, 128)):
        q = quantize_input(x, scale, zero, np.dtype(dtype))
        deq = (q.astype(dtype).astype(np.float32) - zero) * scale
        quant.append({"dtype": dtype, "scale": scale, "zero_point": zero, "x": frames[0]["det_input"],
                      "q": put(q.astype(np.int32), f"quant_{dtype}"), "deq": put(deq.astype(np.float32), "deq")})
    index = {
        "quant": quant,
        "det_manifest": json.dumps(det_manifest, indent=2),
        "pose_manifest": json.dumps(pose_manifest, indent=2, ensure_ascii=False),
        "pose_manifest_ascii": json.dumps(pose_manifest, ensure_ascii=True),
        "broken_manifests": broken,
        "frames": frames,
        "sequence": seq,
        "euro": {"params": EURO_PARAMS, "t": euro_t, "x": put(np.asarray(euro_in, np.float64), "euro_in"),
                 "y": put(np.asarray(euro_out, np.float64), "euro_out")},
    }
    (out / "index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False), encoding="utf-8")
    return index


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/android/android_golden.py OUT_DIR")
    idx = write_golden(Path(sys.argv[1]))
    print(f"wrote {len(idx['frames'])} frames, {len(idx['sequence'])} sequence steps to {sys.argv[1]}")


def write_artifact_golden(out: Path, detector_dir: Path, pose_dir: Path) -> Dict[str, Any]:
    """Golden vectors from REAL converted TFLite artifacts, run by the Python device runtime.

    The Java side reads the converter's own ``manifest.json`` files and finds every output by the
    name they record, as the app does. Raw outputs come from the LiteRT interpreter
    (``FaceDetector.model``, ``PoseEstimator.infer``); expected results from ``FaceDetector.decode``,
    ``PoseEstimator.crop`` and ``euler_from_6d`` (NumPy resize path, the reference).
    Writes ``out/index.json`` with ``"kind": "tflite"``.
    """
    import cv2

    from headpose.convert.facedata import iter_frames
    from headpose.runtime.detector import FaceDetector
    from headpose.runtime.pose import PoseEstimator
    from headpose.runtime.rotation import euler_from_6d

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    put = Writer(out)
    det = FaceDetector(detector_dir, use_opencv=False)
    pose = PoseEstimator(pose_dir, use_opencv=False)
    sources = [(p.name, cv2.imread(str(p), cv2.IMREAD_COLOR)) for p in sorted(IMAGES.glob("*.jpg"))]
    sources += [(f"in_video#{i}", f) for i, (_, f) in enumerate(iter_frames(VIDEO, stop=VIDEO_STILLS[1] + 1))
                if i == VIDEO_STILLS[1]]
    frames = []
    for frame_id, frame in sources:
        x, scale = det.preprocess(frame)
        named = det.model(x)
        dets, kps = det.decode(det.raw(x), scale)
        batch, kept = pose.crop(frame, dets)
        v6 = pose.infer(batch)
        eul = euler_from_6d(v6) if len(v6) else np.zeros((0, 3))
        frames.append({
            "id": frame_id, "width": int(frame.shape[1]), "height": int(frame.shape[0]),
            "frame": put(frame, "frame"), "det_input": put(x[0], "det_input"), "scale": float(scale),
            "outputs": {name: put(np.asarray(a, np.float32), "out") for name, a in named.items()},
            "dets": put(dets, "dets"), "kps": put(kps.reshape(-1, 10), "kps"),
            "crops": put(batch, "crops"), "crop_kept": put(kept.astype(np.int32), "kept"),
            "pose6d": put(v6.astype(np.float32), "pose6d"), "euler": put(np.asarray(eul, np.float64), "euler")})
    index = {"kind": "tflite",
             "det_manifest": (Path(detector_dir) / "manifest.json").read_text(encoding="utf-8"),
             "pose_manifest": (Path(pose_dir) / "manifest.json").read_text(encoding="utf-8"),
             "frames": frames,
             "stream": _stream_golden(put, detector_dir, pose_dir)}
    (out / "index.json").write_text(json.dumps(index, indent=1, ensure_ascii=False), encoding="utf-8")
    return index


def _read_first_det_input(out: Path, case: Dict[str, Any]) -> np.ndarray:
    return read_bin(out, case["det_input"])


class _Recording:
    """Wraps a runtime ``TFLiteModel``: every call's input and named outputs are kept."""

    def __init__(self, model):
        self.model = model
        self.calls = []

    def __call__(self, x):
        y = self.model(x)
        self.calls.append((np.array(x, np.float32), {k: np.array(v, np.float32) for k, v in y.items()}))
        return y

    def fill(self, writer, batch=None):  # the runtime's hot path: the input written into the buffer...
        def keep(buf):
            writer(buf)
            self._filled = np.array(buf, np.float32)  # a copy, no view of the interpreter's memory kept
        self.model.fill(keep, batch)

    def invoke(self):  # ...then run: recorded as one call, like __call__
        y = self.model.invoke()
        self.calls.append((self._filled, {k: np.array(v, np.float32) for k, v in y.items()}))
        return y

    def __getattr__(self, name):  # interpreter, manifest... of the wrapped model
        return getattr(self.model, name)


def _stream_golden(put: Writer, detector_dir: Path, pose_dir: Path, start: int = SEQ_START, n: int = STREAM_LEN,
                   detect_every: int = STREAM_DETECT_EVERY) -> Dict[str, Any]:
    """The whole estimator (``HeadPoseEstimator``: detect every N frames, track, batched pose, One-Euro)
    over consecutive video frames, with every interpreter call recorded for replay on the Java side."""
    from headpose.convert.facedata import iter_frames
    from headpose.runtime.estimator import EstimatorOptions, HeadPoseEstimator

    opts = EstimatorOptions(detect_every=detect_every, smooth=True, use_opencv=False)
    est = HeadPoseEstimator.from_artifacts(detector_dir, pose_dir, opts)
    det_rec, pose_rec = _Recording(est.detector.model), _Recording(est.pose.model)
    est.detector.model, est.pose.model = det_rec, pose_rec
    frames = []
    for fid, frame in iter_frames(VIDEO, start=start, stop=start + n):
        t = int(fid.rsplit("#", 1)[1]) / FPS
        faces = est.estimate(frame, "BGR", timestamp=t)
        frames.append({"t": t, "frame": put(frame, "stream_frame"), "faces": [
            {"track_id": f.track_id, "box": [float(v) for v in f.box], "score": float(f.score),
             "keypoints": [float(v) for v in np.asarray(f.keypoints).reshape(-1)],
             "yaw": f.yaw, "pitch": f.pitch, "roll": f.roll,
             "rotation": [float(v) for v in np.asarray(f.rotation).reshape(-1)]} for f in faces]})
    det_calls = [{"input": put(x, "det_call_in"), "outputs": {k: put(v, "det_call_out") for k, v in y.items()}}
                 for x, y in det_rec.calls]
    pose_rows = []  # the Java engine runs faces one by one: split each batch call into rows
    for x, y in pose_rec.calls:
        for i in range(len(x)):
            pose_rows.append({"input": put(x[i], "pose_row_in"),
                              "outputs": {k: put(v[i], "pose_row_out") for k, v in y.items()}})
    est.close()
    return {"detect_every": detect_every, "frames": frames, "detector_calls": det_calls, "pose_calls": pose_rows}
