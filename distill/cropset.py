"""A cached set of real face crops with teacher labels, for distillation and evaluation.

Each face found by our SCRFD detector gives two images:

* ``base``: the runtime's own pose crop (``crop_faces`` with the registry's margin), uint8 RGB
  (224, 224, 3): what the device sees, what the teacher labels, what evaluation uses;
* ``ctx``: a square context crop around the same box, ``CONTEXT_SCALE`` times its longer side,
  uint8 RGB (C, C, 3), with the runtime box's centre and half sizes in its pixels, so that training
  can re-cut the runtime crop with jitter and in-plane rotation (:func:`render`) without black corners.

Sources are strings ``PATH[#START:STOP][@EVERY]``: a video, image or folder; for videos a frame range
``[START, STOP)`` and a step. Each crop remembers its source string (``group``), so whole people can be
held out.

On disk a crop set is a folder of ``.npy`` files (memory-mapped on load) plus ``meta.json``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..convert.staging import publish, stage_folder, sweep
from ..runtime.errors import InputError
from ..runtime.manifest import write_atomic
from ..runtime.preprocess import crop_faces, expand_box
from ..runtime.registry import POSE_CROP

log = logging.getLogger(__name__)

CONTEXT_SCALE = 1.5
CONTEXT_SIZE = 256
ARRAYS = ("base", "ctx", "centre", "half", "R", "each", "group")


def parse_source(spec: str) -> Tuple[str, int, int, Optional[int]]:
    """``PATH[#START:STOP][@EVERY]`` -> (path, every, start, stop).

    Only a trailing ``#digits:digits`` and ``@digits`` are read as range and step, so paths that
    contain ``@`` or ``#`` elsewhere (``demo@obama/obama.mp4``) stay intact.
    """
    m = re.fullmatch(r"(.+?)(?:#(\d*):(\d*))?(?:@(\d+))?", str(spec))
    if not m:
        raise InputError(f"source '{spec}': expected PATH[#START:STOP][@EVERY]")
    path, a, b, e = m.groups()
    every = int(e) if e else 1
    if every < 1:
        raise InputError(f"source '{spec}': the step @EVERY must be >= 1")
    return path, every, int(a or 0), (int(b) if b else None)


@dataclass
class CropSet:
    """Arrays of one crop set (N crops).

    Attributes
    ----------
    base : (N, 224, 224, 3) uint8 RGB, the runtime crop
    ctx : (N, C, C, 3) uint8 RGB, context crop
    centre : (N, 2) float32, runtime crop centre (x, y) in ctx pixels (continuous coordinates)
    half : (N, 2) float32, runtime crop half width and half height in ctx pixels
    R : (N, 3, 3) float64 teacher rotations
    each : (M, N, 3) float64 yaw, pitch, roll of each teacher model (ONNX teachers), else (0, N, 3)
    group : (N,) str, source spec of each crop
    meta : dict, how it was made
    """

    base: np.ndarray
    ctx: np.ndarray
    centre: np.ndarray
    half: np.ndarray
    R: np.ndarray
    each: np.ndarray
    group: np.ndarray
    meta: Dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.base)

    def subset(self, idx: np.ndarray) -> "CropSet":
        idx = np.asarray(idx)
        return CropSet(self.base[idx], self.ctx[idx], self.centre[idx], self.half[idx], self.R[idx],
                       self.each[:, idx] if self.each.size else self.each[:, :0], self.group[idx], dict(self.meta))

    def groups(self) -> List[str]:
        return list(dict.fromkeys(self.group.tolist()))


def context_crop(frame: np.ndarray, box: Sequence[float], margin: float, size: int = CONTEXT_SIZE,
                 scale: float = CONTEXT_SCALE) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Square context around the runtime crop box of one face.

    Returns
    -------
    ctx : (size, size, 3) uint8, same colour order as ``frame``
    centre : (2,) float32, runtime crop centre in ctx pixels
    half : (2,) float32, runtime crop half sizes in ctx pixels
    """
    import cv2
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = expand_box(box, margin)
    x2, y2 = min(x2, w), min(y2, h)
    cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    side = max(int(round(scale * 2 * max(hw, hh))), 2)
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    pad = side
    padded = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    win = padded[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    ctx = cv2.resize(win, (size, size), interpolation=interp)
    f = size / side
    return ctx, np.array([(cx - x0) * f, (cy - y0) * f], np.float32), np.array([hw * f, hh * f], np.float32)


def render(ctx: np.ndarray, centre: Sequence[float], half: Sequence[float], size: int = 224, scale: float = 1.0,
           shift: Sequence[float] = (0.0, 0.0), theta: float = 0.0) -> np.ndarray:
    """Re-cut the runtime crop from a context crop, jittered and rotated in the image plane.

    The result is the crop the runtime would make of the frame rotated by ``theta`` degrees
    counter-clockwise on screen (OpenCV's positive angle) about the crop centre, with the box
    scaled by ``scale`` and moved by ``shift`` (fractions of its width and height). The exact label
    of a rotated crop is ``Rz(-theta) · R`` (:func:`headpose.distill.labels.rotate_labels`).

    Parameters
    ----------
    ctx : (C, C, 3) uint8
    centre, half : 2 floats each, ctx pixels

    Returns
    -------
    (size, size, 3) uint8
    """
    import cv2
    t = np.radians(theta)
    c, s = np.cos(t), np.sin(t)
    rinv = np.array([[c, -s], [s, c]])  # inverse of OpenCV's on-screen rotation [[c, s], [-s, c]]
    d = np.diag([half[0] * scale, half[1] * scale]) * (2.0 / size)
    a = rinv @ d
    origin = np.array([centre[0] + shift[0] * 2 * half[0], centre[1] + shift[1] * 2 * half[1]])
    # dst pixel index u (centre u+0.5) -> box coords (u+0.5)*2/size - 1 -> ctx continuous -> ctx index (-0.5)
    off = origin + a @ np.array([0.5 - size / 2, 0.5 - size / 2]) - 0.5
    m = np.hstack([a, off[:, None]]).astype(np.float64)
    return cv2.warpAffine(ctx, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def build_cropset(sources: Sequence[str], detector, teacher, size: int = 224, min_face: int = 40,
                  margin: Optional[float] = None, progress: bool = True) -> CropSet:
    """Detect, crop and label every face of ``sources``.

    Parameters
    ----------
    sources : list of str
        ``PATH[#START:STOP][@EVERY]`` (see :func:`parse_source`).
    detector : :class:`headpose.convert.facedata.OnnxFaceDetector`
    teacher : a teacher from :mod:`headpose.distill.teachers` (``rotations(crops)``)
    min_face : int
        Drop faces whose detector box is shorter than this on its shorter side.

    Raises
    ------
    InputError
        When no face at all is found.
    """
    from ..convert.facedata import iter_frames
    margin = POSE_CROP["margin"] if margin is None else margin
    base, ctx, centre, half, group, frames = [], [], [], [], [], []
    t0 = time.time()
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    bar = tqdm(total=len(sources), desc="crops", unit="source", disable=not progress) if tqdm else None
    for spec in sources:
        path, every, start, stop = parse_source(spec)
        n0 = len(base)
        for frame_id, frame in iter_frames(path, every, start, stop):
            dets, _ = detector.detect(frame)
            if not len(dets):
                continue
            sides = np.minimum(dets[:, 2] - dets[:, 0], dets[:, 3] - dets[:, 1])
            dets = dets[sides >= min_face]
            if not len(dets):
                continue
            batch, kept = crop_faces(frame, dets, size, (0, 0, 0), (1, 1, 1), "BGR", "RGB", margin)
            for b, k in zip(batch, kept):
                c, ce, ha = context_crop(frame, dets[k], margin)
                base.append(np.clip(np.round(b), 0, 255).astype(np.uint8))
                ctx.append(np.ascontiguousarray(c[..., ::-1]))
                centre.append(ce)
                half.append(ha)
                group.append(spec)
                frames.append(frame_id)
        log.info("%s: %d crops", spec, len(base) - n0)
        if bar:
            bar.update(1)
            bar.set_postfix(crops=len(base))
    if bar:
        bar.close()
    if not base:
        raise InputError(f"no faces of at least {min_face} px were found in {list(sources)}")
    base_a = np.stack(base)
    if hasattr(teacher, "degrees_each"):
        each = teacher.degrees_each(base_a)
        ypr = each.mean(axis=0)
        from ..runtime.rotation import rotation_from_euler
        r = rotation_from_euler(ypr[:, 1], ypr[:, 0], ypr[:, 2]).reshape(-1, 3, 3)
    else:
        each = np.zeros((0, len(base_a), 3))
        r = teacher.rotations(base_a)
    from .teachers import describe
    meta = {"sources": list(sources), "frames": frames, "min_face": min_face, "margin": margin,
            "context_scale": CONTEXT_SCALE, "teacher": describe(teacher), "build_seconds": round(time.time() - t0, 1)}
    return CropSet(base_a, np.stack(ctx), np.stack(centre), np.stack(half), r, each, np.array(group), meta)


def save_cropset(cs: CropSet, folder: Union[str, Path]) -> Path:
    """Write a crop set to ``folder`` (atomically: the converter's staged folder, published by rename)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    sweep(folder.parent)  # staged folders left by a killed run
    tmp = stage_folder(folder.parent, folder.name)
    try:
        for name in ARRAYS:
            np.save(tmp / f"{name}.npy", getattr(cs, name))
        write_atomic(tmp / "meta.json", json.dumps(cs.meta, indent=1))
        publish(tmp, folder, force=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def load_cropset(folder: Union[str, Path], mmap: bool = True) -> CropSet:
    """Read a crop set written by :func:`save_cropset` (images memory-mapped)."""
    folder = Path(folder)
    missing = [n for n in ARRAYS if not (folder / f"{n}.npy").is_file()]
    if missing or not (folder / "meta.json").is_file():
        raise InputError(f"'{folder}' is not a crop set: missing {missing or ['meta.json']}; "
                         f"build one with `headpose distill --data ...` (it caches its crops)")
    arr = {n: np.load(folder / f"{n}.npy", mmap_mode="r" if mmap and n in ("base", "ctx") else None)
           for n in ARRAYS}
    return CropSet(meta=json.loads((folder / "meta.json").read_text()), **arr)


def cached_cropset(sources: Sequence[str], folder: Union[str, Path], detector_path: Union[str, Path],
                   teacher_specs: Sequence[str], min_face: int = 40, progress: bool = True) -> CropSet:
    """Load the crop set in ``folder`` if it was built from the same sources and teacher, else build it.

    Parameters
    ----------
    detector_path : path
        SCRFD ONNX with keypoints (``scrfd_500m_bnkps.onnx``).
    teacher_specs : list of str
        As :func:`headpose.distill.teachers.make_teacher` takes them.
    """
    folder = Path(folder)
    want = {"sources": list(sources), "teacher_specs": [str(t) for t in teacher_specs], "min_face": min_face,
            "detector": Path(detector_path).name}
    if (folder / "meta.json").is_file():
        cs = load_cropset(folder)
        if {k: cs.meta.get(k) for k in want} == want:
            log.info("reusing cached crop set %s (%d crops)", folder, len(cs))
            return cs
        log.info("crop set %s was built from other sources/teacher: rebuilding", folder)
    from ..convert.facedata import OnnxFaceDetector
    from .teachers import make_teacher
    if not Path(detector_path).is_file():
        raise InputError(f"face detector '{detector_path}' does not exist: expected an SCRFD ONNX with keypoints "
                         f"(e.g. ../shared/weights/scrfd_500m_bnkps.onnx); pass it with --detector")
    cs = build_cropset(sources, OnnxFaceDetector(detector_path, 640), make_teacher(teacher_specs),
                       min_face=min_face, progress=progress)
    cs.meta.update(want)
    save_cropset(cs, folder)
    return load_cropset(folder)
