"""Parity gates: the converted artifact against its source model on real crops / frames.

Pose: Euler angles (pitch, yaw, roll, via ``runtime/rotation.py``) and geodesic distance of the
artifact's 6-vector against the source model's, in degrees. Detector: boxes decoded by the runtime's
SCRFD decoder from the artifact against those of the source ONNX, matched by IoU. TFLite artifacts
run through ``runtime/interpreter.py`` (the device code path); ONNX artifacts through ONNX Runtime.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Mapping, Tuple, Union

import numpy as np

from ..runtime.errors import ConversionError
from ..runtime.manifest import Manifest, load_manifest
from ..runtime.rotation import (angle_difference_deg, euler_from_6d, euler_from_rotation, geodesic_deg,
                                rotation_from_6d)
from ..runtime.scrfd import box_iou, decode_scrfd

log = logging.getLogger(__name__)

# gates: the largest allowed pose rotation distance (geodesic, degrees) per precision; None = recorded only
POSE_MAX_DEG = {"fp32": 0.05, "fp16": 0.5, "int8": None, "dynamic-int8": None}
# detector: smallest allowed mean IoU (every reference face must be matched) per precision
DETECTOR_MIN_IOU = {"fp32": 0.99, "fp16": None, "int8": None, "dynamic-int8": None}
MATCH_IOU = 0.5


class ArtifactRunner:
    """Run an artifact directory on NHWC float32 batches, returning ``{output name: array}``.

    TFLite artifacts use :class:`headpose.runtime.interpreter.TFLiteModel` (XNNPACK); ONNX ones
    ONNX Runtime with the NHWC batch transposed to the manifest's layout.
    """

    def __init__(self, artifact: Union[str, Path, Manifest]):
        self.manifest = artifact if isinstance(artifact, Manifest) else load_manifest(artifact)
        if self.manifest.format == "tflite":
            from ..runtime.interpreter import TFLiteModel
            self._tfl = TFLiteModel(self.manifest, num_threads=2)
            self._sess = None
        else:
            import onnxruntime as ort
            opts = ort.SessionOptions()
            opts.log_severity_level = 3
            self._sess = ort.InferenceSession(str(self.manifest.model_path), opts,
                                              providers=["CPUExecutionProvider"])

    def __call__(self, x_nhwc: np.ndarray) -> Dict[str, np.ndarray]:
        x = np.ascontiguousarray(x_nhwc, np.float32)
        if self._sess is None:
            return self._tfl(x)
        if self.manifest.input.layout == "NCHW":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        names = [o.name for o in self.manifest.outputs]
        return dict(zip(names, self._sess.run(names, {self.manifest.input.name: x})))


def pose_metrics(reference_rotation: np.ndarray, test_6d: np.ndarray) -> Dict:
    """Angle differences of a pose artifact against the reference, in degrees.

    Parameters
    ----------
    reference_rotation : ndarray, (B, 3, 3)
    test_6d : ndarray, (B, 6)

    Returns
    -------
    dict: ``samples``, ``euler_max_deg``, ``euler_mean_deg`` (over pitch/yaw/roll and samples),
    ``per_axis_max_deg`` {pitch, yaw, roll}, ``euler_worst_yaw_deg`` (the reference yaw of the crop
    with the largest Euler difference: near +-90 deg Euler pitch/roll are degenerate),
    ``geodesic_max_deg``, ``geodesic_mean_deg`` (the rotation distance: the gated figure),
    ``reference_euler_std_deg`` (spread of the reference angles: a near-constant model would make
    the gate meaningless).
    """
    ref_euler = euler_from_rotation(reference_rotation)
    test_euler = euler_from_6d(test_6d)
    d = angle_difference_deg(ref_euler, test_euler)
    geo = geodesic_deg(reference_rotation, rotation_from_6d(test_6d))
    worst = int(np.argmax(d.max(axis=1)))
    return {"samples": int(len(d)), "euler_max_deg": float(d.max()), "euler_mean_deg": float(d.mean()),
            "per_axis_max_deg": {k: float(d[:, i].max()) for i, k in enumerate(("pitch", "yaw", "roll"))},
            "euler_worst_yaw_deg": round(float(ref_euler[worst, 1]), 2),
            "geodesic_max_deg": float(np.nanmax(geo)), "geodesic_mean_deg": float(np.nanmean(geo)),
            "reference_euler_std_deg": {k: float(ref_euler[:, i].std()) for i, k in enumerate(("pitch", "yaw", "roll"))}}


def pose_parity(runner: ArtifactRunner, inputs: np.ndarray, reference_rotation: np.ndarray,
                precision: str, batch: int = 16) -> Dict:
    """Run the pose gate: artifact on ``inputs`` (N, S, S, 3) vs ``reference_rotation`` (N, 3, 3).

    Also runs a batch of 4 against 4 single runs (the runtime resizes the batch for N faces) and
    records the largest absolute difference of the 6-vectors (``batch4_vs_single_max_abs``).

    Raises
    ------
    ConversionError
        When the gate of ``precision`` is not met or the batch differs from single runs.
    """
    name = runner.manifest.output("ortho6d").name
    outs = [runner(inputs[i:i + batch])[name] for i in range(0, len(inputs), batch)]
    test = np.concatenate(outs).reshape(len(inputs), 6)
    m = pose_metrics(reference_rotation, test)
    singles = np.concatenate([runner(inputs[i:i + 1])[name] for i in range(4)])
    batched = runner(inputs[:4])[name]
    m["batch4_vs_single_max_abs"] = float(np.abs(singles - batched).max())
    limit = POSE_MAX_DEG.get(precision)
    # gated on the rotation distance: Euler differences explode near |yaw| = 90 deg (gimbal lock; the
    # MobileNetV3-Large student's fp16 artifact: Euler max 0.76 deg at a profile face, rotation 0.06 deg)
    m["gate"] = {"geodesic_max_deg": limit} if limit is not None else None
    m["passed"] = bool(limit is None or m["geodesic_max_deg"] < limit)
    scale = max(1e-3, float(np.abs(test).max()))
    if m["batch4_vs_single_max_abs"] > 1e-3 * scale * (1 if precision in ("fp32", "fp16") else 50):
        m["passed"] = False
        m["failure"] = "a batch of 4 differs from 4 single runs"
    return m


def detector_outputs(named: Mapping[str, np.ndarray], manifest: Manifest) -> Dict[Tuple[str, int], np.ndarray]:
    """``{(role, stride): array}`` from one run's ``{name: array}`` using the manifest's roles."""
    return {(o.role, o.stride): named[o.name] for o in manifest.outputs}


def decode(raw: Mapping[Tuple[str, int], np.ndarray], manifest: Manifest) -> np.ndarray:
    """Runtime SCRFD decode with the artifact's own manifest (input size, strides, anchors, thresholds);
    dets (K, 5) in detector-input pixels."""
    d = manifest.scrfd
    dets, _ = decode_scrfd(raw, manifest.input_hw, d.strides, d.anchors_per_cell, d.score_threshold,
                           d.nms_threshold, 1.0)
    return dets


def match_faces(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Greedy IoU matching; for every reference box the IoU of its match (0 when unmatched)."""
    best = np.zeros(len(ref))
    if not len(ref) or not len(test):
        return best
    iou = box_iou(ref, test)
    used = set()
    for r in np.argsort(-iou.max(axis=1)):
        for t in np.argsort(-iou[r]):
            if t not in used and iou[r, t] >= MATCH_IOU:
                best[r] = iou[r, t]
                used.add(t)
                break
    return best


def detector_parity(runner: ArtifactRunner, inputs: np.ndarray,
                    reference: List[Mapping[Tuple[str, int], np.ndarray]], precision: str) -> Dict:
    """Run the detector gate: artifact boxes vs reference boxes on the same letterboxed frames.

    Parameters
    ----------
    inputs : ndarray, (N, S, S, 3), float32, normalised NHWC
    reference : list of N ``{(role, stride): array}`` raw source-model outputs

    Returns
    -------
    dict: ``frames``, ``reference_faces``, ``matched``, ``recall``, ``mean_iou`` (over reference
    faces, 0 for unmatched), ``min_iou``, ``extra_detections``, ``gate``, ``passed``.
    """
    ious, extra = [], 0
    for x, ref_raw in zip(inputs, reference):
        ref = decode(ref_raw, runner.manifest)
        test = decode(detector_outputs(runner(x[None]), runner.manifest), runner.manifest)
        m = match_faces(ref, test)
        ious.extend(m.tolist())
        extra += int(len(test) - (m > 0).sum())
    ious = np.asarray(ious)
    n = len(ious)
    out = {"frames": int(len(inputs)), "reference_faces": int(n), "matched": int((ious > 0).sum()),
           "recall": float((ious > 0).mean()) if n else 1.0, "mean_iou": float(ious.mean()) if n else 1.0,
           "min_iou": float(ious.min()) if n else 1.0, "extra_detections": int(extra)}
    if n == 0:
        raise ConversionError("the detector parity frames hold no faces for the reference model; pass --calib "
                              "with images that show faces")
    limit = DETECTOR_MIN_IOU.get(precision)
    out["gate"] = {"mean_iou": limit, "every_face_matched": True} if limit is not None else None
    out["passed"] = bool(limit is None or (out["mean_iou"] >= limit and out["matched"] == n))
    return out


def map_outputs_by_values(named: Mapping[str, np.ndarray], reference: Mapping[Tuple[str, int], np.ndarray]
                          ) -> Dict[str, Tuple[str, int]]:
    """Assign each artifact output to the (role, stride) whose reference output it equals best.

    Compared on the values of a real frame (mean absolute difference among outputs of the same
    element count), never by order. Raises :class:`ConversionError` when the assignment is not
    one-to-one.
    """
    mapping: Dict[str, Tuple[str, int]] = {}
    for name, arr in named.items():
        a = np.asarray(arr, np.float32).reshape(-1)
        cands = [(float(np.abs(a - np.asarray(r, np.float32).reshape(-1)).mean()), key)
                 for key, r in reference.items()
                 if np.size(r) == a.size and np.shape(r)[-1] == np.shape(arr)[-1]]
        if not cands:
            raise ConversionError(f"artifact output '{name}' of shape {np.shape(arr)} matches no SCRFD output")
        mapping[name] = min(cands)[1]
    if len(set(mapping.values())) != len(reference) or len(mapping) != len(reference):
        raise ConversionError(f"artifact outputs do not map one-to-one onto the SCRFD outputs: {mapping}")
    return mapping
