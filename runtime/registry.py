"""The one registry of model facts.

Every number the converter and the runtime need about a model family (input size, colour order,
normalisation, output meaning, decode parameters) is stated here once. Artifacts copy these facts
into their ``manifest.json`` at conversion time; from then on the runtime trusts the manifest.

Normalisation convention everywhere: ``x = (pixel - mean) / std`` with ``pixel`` in 0..255 in the
stated colour order.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Dict, Tuple

from .errors import UnknownModelError

IMAGENET_MEAN_255 = (123.675, 116.28, 103.53)  # 0.485, 0.456, 0.406 x 255
IMAGENET_STD_255 = (58.395, 57.12, 57.375)  # 0.229, 0.224, 0.225 x 255


@dataclass(frozen=True)
class ModelSpec:
    """Facts about one registered model.

    Attributes
    ----------
    model_id : str
        Registry key, e.g. ``"mobilenetv3_small"``.
    task : str
        ``"head_pose"`` or ``"face_detection"``.
    family : str
        Architecture family (``"resnet"``, ``"mobilenetv2"``, ``"mobilenetv3"``, ``"scrfd"``).
    input_size : int
        Default square input side in pixels.
    color : str
        Channel order the network expects, ``"RGB"`` or ``"BGR"``.
    mean, std : tuple of float
        Per-channel normalisation in pixel units (0..255).
    arch : dict
        Family-specific construction arguments (blocks, layers, variant).
    decode : dict
        How raw outputs turn into results (``ortho6d`` pose or ``scrfd`` boxes).
    description : str
        One line for ``headpose models``.
    """

    model_id: str
    task: str
    family: str
    input_size: int
    color: str
    mean: Tuple[float, float, float]
    std: Tuple[float, float, float]
    arch: Dict = field(default_factory=dict)
    decode: Dict = field(default_factory=dict)
    description: str = ""


# How a face box becomes the pose network's input; the yakhyo/head-pose-estimation inference
# scripts widen x by 20 % of the box height and y by 20 % of the box width on each side, clip the
# top-left corner at 0 (the bottom-right is clipped by the frame), then resize to 224x224 without
# keeping the aspect ratio (bilinear).
POSE_CROP = {"method": "expand_box", "margin": 0.2, "keep_aspect": False, "interpolation": "bilinear"}

POSE_DECODE = {
    "kind": "ortho6d",
    # columns of R are Gram-Schmidt of the two 3-vectors: x = n(a1), z = n(x cross a2), y = z cross x
    "rotation": "gram_schmidt_columns",
    "euler": {"pitch": "x", "yaw": "y", "roll": "z", "units": "degrees",
              "formula": "pitch=atan2(R21,R22), yaw=atan2(-R20,sqrt(R00^2+R10^2)), roll=atan2(R10,R00)"},
    "crop": POSE_CROP,
}

SCRFD_DECODE = {
    "kind": "scrfd",
    "strides": [8, 16, 32],
    "anchors_per_cell": 2,
    "keypoints": 5,
    "score_threshold": 0.5,
    "nms_threshold": 0.4,
    # distances are in units of the stride: box = centre -/+ d * stride (insightface distance2bbox)
    "distance_scale": "stride",
    # the frame is resized keeping its aspect ratio into the top-left of a zero (black) canvas
    "letterbox": {"align": "top_left", "pad_value": 0, "interpolation": "bilinear"},
}


def _pose(model_id: str, family: str, arch: Dict, description: str) -> ModelSpec:
    return ModelSpec(model_id=model_id, task="head_pose", family=family, input_size=224, color="RGB",
                     mean=IMAGENET_MEAN_255, std=IMAGENET_STD_255, arch=arch, decode=POSE_DECODE,
                     description=description)


def _scrfd(model_id: str, description: str) -> ModelSpec:
    return ModelSpec(model_id=model_id, task="face_detection", family="scrfd", input_size=640,
                     color="RGB", mean=(127.5, 127.5, 127.5), std=(128.0, 128.0, 128.0),
                     arch={}, decode=SCRFD_DECODE, description=description)


REGISTRY: Dict[str, ModelSpec] = {s.model_id: s for s in (
    _pose("resnet18", "resnet", {"block": "basic", "layers": [2, 2, 2, 2]}, "ResNet-18 6DRepNet head pose, 11.2 M params"),
    _pose("resnet34", "resnet", {"block": "basic", "layers": [3, 4, 6, 3]}, "ResNet-34 6DRepNet head pose, 21.3 M params"),
    _pose("resnet50", "resnet", {"block": "bottleneck", "layers": [3, 4, 6, 3]}, "ResNet-50 6DRepNet head pose, 23.5 M params"),
    _pose("mobilenetv2", "mobilenetv2", {}, "MobileNetV2 6DRepNet head pose, 2.2 M params"),
    _pose("mobilenetv3_small", "mobilenetv3", {"variant": "small", "head_hidden": 1024}, "MobileNetV3-Small 6DRepNet head pose, 0.93 M params"),
    _pose("mobilenetv3_large", "mobilenetv3", {"variant": "large", "head_hidden": 1280}, "MobileNetV3-Large 6DRepNet head pose, 3.0 M params"),
    _scrfd("scrfd_500m", "SCRFD-0.5GF face detector with 5 keypoints (InsightFace)"),
    _scrfd("scrfd_2.5g", "SCRFD-2.5GF face detector with 5 keypoints (InsightFace)"),
    _scrfd("scrfd_10g", "SCRFD-10GF face detector with 5 keypoints (InsightFace)"),
)}

POSE_MODELS = tuple(k for k, s in REGISTRY.items() if s.task == "head_pose")
DETECTOR_MODELS = tuple(k for k, s in REGISTRY.items() if s.task == "face_detection")


def get_spec(model_id: str) -> ModelSpec:
    """Return the registry entry of ``model_id``.

    Raises
    ------
    UnknownModelError
        With the known ids and the closest match ("did you mean").
    """
    try:
        return REGISTRY[model_id]
    except KeyError:
        close = difflib.get_close_matches(str(model_id), REGISTRY, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UnknownModelError(
            f"unknown model id '{model_id}': expected one of {', '.join(REGISTRY)}.{hint}") from None


def format_registry() -> str:
    """The registry as a fixed-width table (what ``headpose models`` prints)."""
    rows = [("model", "task", "input", "colour", "mean", "std", "output")]
    for s in REGISTRY.values():
        rows.append((s.model_id, s.task, f"{s.input_size}x{s.input_size}", s.color,
                     "/".join(f"{m:g}" for m in s.mean), "/".join(f"{v:g}" for v in s.std),
                     "6D rotation" if s.task == "head_pose" else "score/bbox/5 kps at strides 8/16/32, 2 anchors"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)



# What `headpose run` uses with no model arguments (built on first use by headpose.convert.defaults):
# SCRFD-2.5G from the scrfd==0.3.0 package and the project's distilled student, both fp32 because a
# fresh machine has too few real faces (the package's photos) for int8 calibration. Tuples are
# (model, input size, format, precision); paths are relative to the weights directory.
DEFAULT_DETECTOR = ("scrfd_2.5g", 640, "tflite", "fp32")
DEFAULT_POSE = ("mobilenetv3_small", 224, "tflite", "fp32")
DEFAULT_POSE_WEIGHTS = "mobilenetv3_small_fsanet.pt"
DEFAULT_SAMPLE = "cache/scrfd-0.3.0/images/solvay_conference_1927.jpg"

# The candidates `headpose run` takes without --detector/--pose when an artifact of them is on this
# install and passed its gates (runtime.resolve.gates_passed: built by `headpose convert` / `headpose
# bench` from ../shared's SCRFD and the shipped students, or shipped in weights/int8/): the fastest of
# them on this machine, timed once and remembered (runtime.resolve.fastest). Otherwise the
# fresh-machine pair above.
FAST_DETECTORS = (("scrfd_500m", 640, "tflite", "int8"), ("scrfd_500m", 640, "tflite", "fp32"),
                  ("scrfd_2.5g", 640, "tflite", "int8"))
FAST_POSES = (("mobilenetv3_small", 224, "tflite", "int8"), ("mobilenetv3_small", 224, "tflite", "fp32"))
