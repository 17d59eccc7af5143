"""Real calibration and parity data: face crops (pose) or letterboxed frames (SCRFD).

Both are made with the runtime's own preprocessing (``runtime/preprocess.py``) and the registry's
normalisation, so the int8 ranges and the parity figures describe what the device sees. Never
random noise. One data source (video, image or folder) is split into a calibration set (>= 200
samples for int8) and a disjoint parity set where the source is large enough.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from ..runtime.errors import ConversionError, InputError
from ..runtime.preprocess import letterbox, normalise, to_color
from ..runtime.registry import ModelSpec
from .facedata import OnnxFaceDetector, face_crops, iter_frames, list_sources, sample_evenly
from ..runtime.manifest import sha256_file as file_sha256, write_atomic
from ..runtime.paths import SHARED_VIDEO, SHARED_WEIGHTS, WEIGHTS_DIR

log = logging.getLogger(__name__)

MIN_CALIBRATION = 200   # int8 calibration needs at least this many real samples
N_CALIBRATION = 256     # pose face crops used for int8 calibration
N_PARITY_CROPS = 64     # pose parity crops
N_CALIBRATION_FRAMES = 200  # SCRFD int8 calibration frames (640x640 calibration is the slow part)
N_PARITY_FRAMES = 32    # detector parity frames
DETECTOR_FILE = "scrfd_500m_bnkps.onnx"


def default_data_source() -> Optional[Path]:
    """Real images for parity when ``--calib`` is not given: ``$HEADPOSE_DATA`` or the shared video."""
    for cand in (os.environ.get("HEADPOSE_DATA"), SHARED_VIDEO):
        if cand and Path(cand).exists():
            return Path(cand)
    return None


def default_detector() -> Optional[Path]:
    """SCRFD ONNX used to find faces for pose calibration: ``$HEADPOSE_DETECTOR``, weights/, ../shared."""
    for cand in (os.environ.get("HEADPOSE_DETECTOR"), WEIGHTS_DIR / DETECTOR_FILE, SHARED_WEIGHTS / DETECTOR_FILE):
        if cand and Path(cand).exists():
            return Path(cand)
    return None


def source_sha256(path: Union[str, Path]) -> str:
    """sha256 of a file, or of a folder's media files (relative names and contents, sorted)."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_file():
        return file_sha256(path)
    for f in list_sources(path):
        h.update(str(f.relative_to(path)).encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()


@dataclass
class CalibrationData:
    """Calibration and parity samples of one source, as normalised NHWC model inputs.

    Attributes
    ----------
    kind : str
        ``face_crops`` (pose) or ``letterboxed_frames`` (SCRFD).
    calibration : ndarray, (N, S, S, 3), float32, normalised, model colour order
    parity : ndarray, (M, S, S, 3), float32, normalised
    sample_rgb01 : ndarray, (K, S, S, 3), float32, RGB 0..1 (onnx2tf's check images)
    info : dict
        Source path, sha256, counts (what the manifest records).
    """

    kind: str
    calibration: np.ndarray
    parity: np.ndarray
    sample_rgb01: np.ndarray
    info: Dict = field(default_factory=dict)


_CROP_CACHE: Dict[Tuple, Tuple[np.ndarray, List[dict]]] = {}


def _resolve_source(source: Optional[Union[str, Path]]) -> Path:
    if source is None:
        found = default_data_source()
        if found is None:
            raise ConversionError("the parity gate needs real images and none were found: pass --calib PATH "
                                  "(a video, an image or a folder of images with faces)")
        return found
    path = Path(source)
    if not path.exists():
        raise InputError(f"calibration source '{path}' does not exist: expected a video, an image or a folder")
    list_sources(path)  # raises for an empty folder
    return path


def _split(n_total: int, n_calib: int, n_parity: int) -> Tuple[np.ndarray, np.ndarray, bool]:
    """Indices of a calibration and a (disjoint where possible) parity subset."""
    calib = sample_evenly(n_total, n_calib)
    rest = np.setdiff1d(np.arange(n_total), calib)
    if len(rest) >= min(n_parity, 8):
        return calib, rest[sample_evenly(len(rest), n_parity)], True
    return calib, np.arange(n_total)[sample_evenly(n_total, n_parity)], False


def cache_dir() -> Path:
    """Where face detections of calibration sources are cached: ``$HEADPOSE_CACHE`` or weights/cache."""
    return Path(os.environ.get("HEADPOSE_CACHE") or WEIGHTS_DIR / "cache")


class _ReplayDetector:
    """Wraps :class:`OnnxFaceDetector` for :func:`face_crops`: records every frame's detections, or
    replays recorded ones in the same frame order (face_crops visits frames deterministically)."""

    def __init__(self, detector: Optional[OnnxFaceDetector] = None, replay: Optional[List[np.ndarray]] = None):
        self.detector, self.replay, self.record, self.i = detector, replay, [], 0

    def detect(self, frame: np.ndarray):
        if self.replay is not None:
            if self.i >= len(self.replay):
                raise InputError("cached face detections do not match the source's frames; delete the cache")
            dets = self.replay[self.i]
            self.i += 1
            return dets, np.zeros((len(dets), 5, 2), np.float32)
        dets, kps = self.detector.detect(frame)
        self.record.append(dets)
        return dets, kps


def _cached_face_crops(path: Path, src_sha: str, det_path: Path, size: int, margin: float):
    """:func:`face_crops` with the SCRFD detections of ``path`` cached on disk (keyed by the sha256
    of the source and of the detector): finding faces is the slow part, cropping is cheap."""
    det_sha = file_sha256(det_path)
    cache = cache_dir() / f"faces-{src_sha[:16]}-{det_sha[:16]}-640.npz"
    if cache.exists():
        try:
            z = np.load(cache)
            counts, dets = z["counts"], z["dets"]
            replay = np.split(dets, np.cumsum(counts)[:-1]) if len(counts) else []
            log.info("face detections of %s from cache %s", path.name, cache)
            return face_crops(path, _ReplayDetector(replay=replay), size=size, margin=margin)
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as e:  # truncated, damaged
            log.warning("ignoring unreadable detection cache %s (%s); finding the faces again", cache, e)
    log.info("finding faces in %s for calibration/parity (cached afterwards in %s)", path, cache.parent)
    rec = _ReplayDetector(OnnxFaceDetector(det_path, 640))
    result = face_crops(path, rec, size=size, margin=margin)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(cache, lambda f: np.savez(
            f, counts=np.array([len(d) for d in rec.record], np.int64),
            dets=np.concatenate(rec.record) if rec.record else np.zeros((0, 5), np.float32)))
    except OSError as e:
        log.warning("could not cache face detections in %s (%s)", cache, e)
    return result


def pose_data(spec: ModelSpec, source: Optional[Union[str, Path]], size: int, need_calibration: bool,
              detector: Optional[Union[str, Path]] = None) -> CalibrationData:
    """Real face crops for a pose model, found by SCRFD and cut by the runtime's crop code.

    Parameters
    ----------
    spec : ModelSpec
        Registry entry (mean, std, colour).
    source : path or None
        Video, image or folder; ``None`` uses :func:`default_data_source`.
    size : int
        Crop side (the model input).
    need_calibration : bool
        ``True`` for int8: at least ``MIN_CALIBRATION`` crops are required.
    detector : path, optional
        SCRFD ONNX used to find faces (default :func:`default_detector`).

    Raises
    ------
    InputError
        Source missing / no faces / too few faces for int8.
    """
    path = _resolve_source(source)
    det_path = Path(detector) if detector else default_detector()
    if det_path is None or not det_path.exists():
        raise ConversionError(f"pose calibration needs a face detector ONNX to find faces: expected "
                              f"{DETECTOR_FILE} in weights/ or $HEADPOSE_DETECTOR, found none")
    src_sha = source_sha256(path)
    key = (src_sha, str(det_path), size)
    if key not in _CROP_CACHE:
        _CROP_CACHE[key] = _cached_face_crops(path, src_sha, det_path, size, spec.decode["crop"]["margin"])
    crops, meta = _CROP_CACHE[key]
    if need_calibration and len(crops) < MIN_CALIBRATION:
        raise InputError(f"int8 calibration needs at least {MIN_CALIBRATION} real face crops; '{path}' gave "
                         f"{len(crops)}: pass a longer video or a folder with more faces via --calib")
    ci, pi, disjoint = _split(len(crops), N_CALIBRATION, N_PARITY_CROPS)

    def norm(idx: np.ndarray) -> np.ndarray:
        return normalise(to_color(crops[idx].astype(np.float32), "RGB", spec.color), spec.mean, spec.std)
    info = {"source": str(path), "sha256": src_sha, "kind": "face_crops",
            "detector": det_path.name, "faces_found": int(len(crops)),
            "frames": len({m["frame"] for m in meta}),
            "samples": int(len(ci)) if need_calibration else 0, "parity_samples": int(len(pi)),
            "parity_disjoint": bool(disjoint), "preprocessing": "runtime.preprocess.crop_faces + registry mean/std"}
    return CalibrationData("face_crops", norm(ci if need_calibration else ci[:0]), norm(pi),
                           crops[pi[:20]].astype(np.float32) / 255.0, info)


class LetterboxedInputs:
    """Normalised detector inputs made on demand from stored letterboxed canvases (saves memory).

    Indexing returns ``(n, S, S, 3)`` float32 normalised NHWC arrays; ``len`` is the sample count.
    """

    def __init__(self, canvases: np.ndarray, spec: ModelSpec):
        self.canvases = canvases  # (N, S, S, 3) uint8, pixel units, BGR
        self.spec = spec

    def __len__(self) -> int:
        return len(self.canvases)

    def __getitem__(self, idx) -> np.ndarray:
        c = np.asarray(self.canvases[idx], np.float32)
        if c.ndim == 3:
            c = c[None]
        return normalise(to_color(c, "BGR", self.spec.color), self.spec.mean, self.spec.std)


def detector_data(spec: ModelSpec, source: Optional[Union[str, Path]], size: int,
                  need_calibration: bool) -> CalibrationData:
    """Real letterboxed frames (runtime letterbox + registry normalisation) for SCRFD.

    Frames are letterboxed with the runtime's :func:`letterbox` on its OpenCV resize path (same
    geometry as the NumPy path, within 1 grey level), which keeps the canvases exact in uint8.

    ``calibration`` is a :class:`LetterboxedInputs` (normalised on demand), ``parity`` an array.

    Raises
    ------
    InputError
        Source missing or too few frames for int8 (fewer than ``MIN_CALIBRATION``).
    """
    path = _resolve_source(source)
    frame_ids = [fid for fid, _ in iter_frames_ids(path)]
    n = len(frame_ids)
    if n == 0:
        raise InputError(f"no readable frames in '{path}'")
    if need_calibration and n < MIN_CALIBRATION:
        raise InputError(f"int8 calibration needs at least {MIN_CALIBRATION} real frames; '{path}' has {n}: "
                         f"pass a longer video or a folder with more images via --calib")
    if need_calibration:
        n_calib = max(MIN_CALIBRATION, min(N_CALIBRATION_FRAMES, n - N_PARITY_FRAMES))
        ci, pi, disjoint = _split(n, n_calib, N_PARITY_FRAMES)
    else:
        ci, pi, disjoint = np.zeros(0, np.int64), sample_evenly(n, N_PARITY_FRAMES), True
    want = {int(i): ("c", j) for j, i in enumerate(ci)}
    pwant = {int(i): j for j, i in enumerate(pi)}
    # the OpenCV path of the runtime's letterbox resizes uint8 to uint8: the canvases are exact in uint8
    calib = np.empty((len(ci), size, size, 3), np.uint8)
    par = np.empty((len(pi), size, size, 3), np.uint8)
    cfill, pfill = np.zeros(len(ci), bool), np.zeros(len(pi), bool)
    for k, (_, frame) in enumerate(iter_frames(path)):
        if k not in want and k not in pwant:
            continue
        canvas, _ = letterbox(frame, (size, size), use_opencv=True)
        if k in want:
            calib[want[k][1]], cfill[want[k][1]] = canvas, True
        if k in pwant:
            par[pwant[k]], pfill[pwant[k]] = canvas, True
    calib, par = calib[cfill], par[pfill]  # frame counts of some containers over-estimate
    if need_calibration and len(calib) < MIN_CALIBRATION or not len(par):
        raise InputError(f"'{path}' gave {len(calib)} calibration / {len(par)} parity frames; int8 needs "
                         f"{MIN_CALIBRATION}: pass a longer video or a folder with more images via --calib")
    parity = LetterboxedInputs(par, spec)[:]
    sample = to_color(par[:20].astype(np.float32), "BGR", "RGB") / 255.0
    info = {"source": str(path), "sha256": source_sha256(path), "kind": "letterboxed_frames",
            "frames_available": n, "samples": int(len(calib)), "parity_samples": int(len(par)),
            "parity_disjoint": bool(disjoint), "preprocessing": "runtime.preprocess.letterbox + registry mean/std"}
    return CalibrationData("letterboxed_frames", LetterboxedInputs(calib, spec), parity,
                           sample.astype(np.float32), info)


def iter_frames_ids(path: Path):
    """``(frame_id, None)`` for every frame of ``path`` without decoding images (counts frames)."""
    from ..runtime.sources import IMAGE_SUFFIXES, CaptureSource, SourceError  # the one frame reader
    for f in list_sources(path):
        if f.suffix.lower() in IMAGE_SUFFIXES:
            yield str(f), None
            continue
        try:
            with CaptureSource(str(f), live=False) as video:
                n = video.length or 0
        except SourceError:
            n = 0
        for i in range(n):
            yield f"{f}#{i}", None
