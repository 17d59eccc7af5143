"""Pose teachers: models that label real face crops with rotation matrices.

Every teacher takes the runtime's face crops (uint8 RGB, (N, 224, 224, 3), made by
:func:`headpose.runtime.preprocess.crop_faces` with the registry's margin) and returns rotation
matrices (N, 3, 3) in the project's convention ``R = Rz(roll) · Ry(yaw) · Rx(pitch)``.

Kinds
-----
* ONNX models that output degrees, e.g. FSA-Net (``fsanet_1x1.onnx``, ``fsanet_var.onnx``): input
  [B, 3, 64, 64] BGR ``(x - 127.5) / 128`` made from the face crop, output [B, 3] = yaw, pitch, roll
  in degrees. Several such files are averaged (angle by angle, as FSA-Net's authors do).
* A checkpoint of one of our six backbones (``MODEL_ID=path.pt``, or ``path.pt`` whose keys fit
  exactly one backbone): the 6D output is turned into R by Gram-Schmidt.
* A converted artifact folder (``manifest.json`` + model), run by the runtime's interpreter.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from ..runtime.errors import InputError
from ..runtime.registry import POSE_MODELS, get_spec
from ..runtime.rotation import rotation_from_6d, rotation_from_euler
from ..convert.facedata import normalised_nchw

log = logging.getLogger(__name__)

FSANET_SIZE = 64
FSANET_MEAN = 127.5
FSANET_STD = 128.0


def _check_crops(crops: np.ndarray) -> np.ndarray:
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3 or crops.dtype != np.uint8:
        raise InputError(f"expected face crops as uint8 RGB (N, H, W, 3), found {crops.dtype} {crops.shape}")
    return crops


class OnnxDegreesTeacher:
    """ONNX pose models with degrees out (FSA-Net), averaged when several are given.

    Parameters
    ----------
    paths : sequence of path
        ``.onnx`` files, each [B, 3, 64, 64] BGR -> [B, 3] yaw, pitch, roll (degrees).
    """

    kind = "onnx_degrees"

    def __init__(self, paths: Sequence[Union[str, Path]], batch: int = 64):
        import onnxruntime as ort
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise InputError("no ONNX teacher given: expected one or more .onnx files (e.g. fsanet_1x1.onnx)")
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = 1
        self.sessions = []
        for p in self.paths:
            if not p.is_file():
                raise InputError(f"teacher '{p}' does not exist: expected an ONNX file such as fsanet_1x1.onnx")
            s = ort.InferenceSession(str(p), opts, providers=["CPUExecutionProvider"])
            shape = s.get_inputs()[0].shape
            if len(shape) != 4 or shape[1] != 3 or shape[2] not in (FSANET_SIZE, "height", None) and \
                    not isinstance(shape[2], str):
                raise InputError(f"teacher '{p}' takes input {shape}: expected [B, 3, 64, 64] (FSA-Net)")
            self.sessions.append(s)
        self.batch = batch
        self.description = " + ".join(p.name for p in self.paths)

    @staticmethod
    def blob(crops: np.ndarray) -> np.ndarray:
        """uint8 RGB crops (N, H, W, 3) -> FSA-Net input (N, 3, 64, 64) float32, BGR, (x-127.5)/128."""
        import cv2
        small = np.stack([cv2.resize(c, (FSANET_SIZE, FSANET_SIZE), interpolation=cv2.INTER_AREA) for c in crops])
        x = (small[..., ::-1].astype(np.float32) - FSANET_MEAN) / FSANET_STD
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def degrees_each(self, crops: np.ndarray) -> np.ndarray:
        """(M, N, 3) yaw, pitch, roll in degrees, one row block per ONNX model."""
        crops = _check_crops(crops)
        out = np.zeros((len(self.sessions), len(crops), 3), np.float64)
        for i in range(0, len(crops), self.batch):
            x = self.blob(crops[i:i + self.batch])
            for m, s in enumerate(self.sessions):
                out[m, i:i + len(x)] = s.run(None, {s.get_inputs()[0].name: x})[0]
        return out

    def degrees(self, crops: np.ndarray) -> np.ndarray:
        """(N, 3) yaw, pitch, roll in degrees, averaged over the models."""
        return self.degrees_each(crops).mean(axis=0)

    def rotations(self, crops: np.ndarray) -> np.ndarray:
        """(N, 3, 3) rotation matrices ``Rz(roll) Ry(yaw) Rx(pitch)``."""
        ypr = self.degrees(crops)
        return rotation_from_euler(ypr[:, 1], ypr[:, 0], ypr[:, 2]).reshape(-1, 3, 3)


class CheckpointTeacher:
    """A checkpoint of one of the six backbones, run in PyTorch."""

    kind = "checkpoint"

    def __init__(self, model_id: str, path: Union[str, Path], batch: int = 32):
        from ..convert.checkpoint import load_pose_model
        self.model_id = model_id
        self.spec = get_spec(model_id)
        import torch
        # channels-last runs the depthwise convolutions 2-3x faster on CPU; results are the same
        self.model = load_pose_model(model_id, path).to(memory_format=torch.channels_last)
        self.batch = batch
        self.description = f"{model_id}={Path(path).name}"

    def raw(self, crops: np.ndarray) -> np.ndarray:
        """(N, 6) raw 6D outputs."""
        import torch
        crops = _check_crops(crops)
        out = []
        with torch.no_grad():
            for i in range(0, len(crops), self.batch):
                x = torch.from_numpy(normalised_nchw(crops[i:i + self.batch], self.spec))
                out.append(self.model(x.contiguous(memory_format=torch.channels_last)).numpy())
        return np.concatenate(out).astype(np.float64) if out else np.zeros((0, 6))

    def rotations(self, crops: np.ndarray) -> np.ndarray:
        return rotation_from_6d(self.raw(crops)).reshape(-1, 3, 3)


class ArtifactTeacher:
    """A converted pose artifact (``manifest.json`` + model file), run by the runtime interpreter."""

    kind = "artifact"

    def __init__(self, artifact: Union[str, Path], batch: int = 16, num_threads: int = 1):
        from ..runtime.interpreter import TFLiteModel
        from ..runtime.manifest import load_manifest
        self.manifest = load_manifest(artifact, expect_task="head_pose")
        self.model = TFLiteModel(self.manifest, num_threads=num_threads)
        self.out_name = self.manifest.output("ortho6d").name
        self.batch = batch
        self.description = str(artifact)

    def raw(self, crops: np.ndarray) -> np.ndarray:
        from ..runtime.preprocess import normalise, to_color
        crops = _check_crops(crops)
        inp = self.manifest.input
        out = []
        for i in range(0, len(crops), self.batch):
            x = normalise(to_color(crops[i:i + self.batch].astype(np.float32), "RGB", inp.color), inp.mean, inp.std)
            out.append(np.asarray(self.model(x)[self.out_name], np.float64).reshape(len(x), 6))
        return np.concatenate(out) if out else np.zeros((0, 6))

    def rotations(self, crops: np.ndarray) -> np.ndarray:
        return rotation_from_6d(self.raw(crops)).reshape(-1, 3, 3)


def make_teacher(specs: Sequence[str]):
    """Build a teacher from command-line strings.

    Parameters
    ----------
    specs : list of str
        One or more ``.onnx`` files (averaged); or one ``MODEL_ID=checkpoint.pt`` / ``checkpoint.pt``;
        or one artifact folder.

    Raises
    ------
    InputError
        For missing files, mixtures of kinds, or a checkpoint that fits no backbone.
    """
    specs = [str(s) for s in specs]
    if not specs:
        raise InputError("no teacher given: expected --teacher fsanet_1x1.onnx [fsanet_var.onnx], "
                         "--teacher MODEL_ID=checkpoint.pt, or --teacher ARTIFACT_DIR")
    if all(s.lower().endswith(".onnx") for s in specs):
        return OnnxDegreesTeacher(specs)
    if len(specs) != 1:
        raise InputError(f"teachers {specs}: only ONNX files can be averaged; give one checkpoint or one artifact")
    s = specs[0]
    model_id, _, path = s.partition("=") if "=" in s else ("", "", s)
    p = Path(path)
    if p.is_dir():
        return ArtifactTeacher(p)
    if not p.is_file():
        raise InputError(f"teacher '{s}' does not exist: expected an .onnx file, a checkpoint or an artifact folder")
    if not model_id:
        from ..convert.checkpoint import read_state_dict, suggest_backbone
        model_id = suggest_backbone(read_state_dict(p)) or ""
        if not model_id:
            raise InputError(f"teacher checkpoint '{p}' fits none of {', '.join(POSE_MODELS)}: "
                             f"name its backbone as MODEL_ID={p}")
    return CheckpointTeacher(model_id, p)


def describe(teacher) -> dict:
    """What a sidecar records about the teacher."""
    d = {"kind": teacher.kind, "what": teacher.description}
    if isinstance(teacher, OnnxDegreesTeacher):
        d["files"] = [str(p) for p in teacher.paths]
        d["combine"] = "mean of yaw/pitch/roll degrees, then R = Rz(roll) Ry(yaw) Rx(pitch)"
    return d
