"""Real calibration and parity data: face crops (pose) or letterboxed frames (SCRFD).

Both are made with the runtime's own preprocessing (``runtime/preprocess.py``) and the registry's
normalisation, so the int8 ranges and the parity figures describe what the device sees. Never
random noise.

Pose data may come from several sources (``--calib`` repeated, folders, list files): they are split
*by source* into a calibration part and a gate part (the int8 gate and the parity checks), so that the
gate judges people the calibration never saw; never frames of one video on both sides. An explicit
gate set (``--gate-data``) takes the place of the split. One source alone (today's
``--calib in_video.mp4``) keeps the split of its frames into a calibration set (>= 200 samples for
int8) and a disjoint parity set, recorded as such.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

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
MIN_GATE = 64           # pose crops the int8 gate needs from sources not used for calibration
N_GATE_CROPS = 512      # at most this many gate crops (spread evenly over the gate sources)
GATE_SHARE = 0.25       # share of all crops the gate part aims at when the sources are split
LIST_SUFFIXES = (".txt", ".list")  # a --calib file with these suffixes lists sources, one a line
SPLIT_RULES = {
    "frames_of_one_source": "one source: its crops split into disjoint calibration and gate crops (the same "
                            "people on both sides)",
    "by_source": "whole sources (a file, or a sub-folder of a given folder) go to one side only, in sha256 "
                 "order, the gate taking >= 25% of the crops (>= 64) while calibration keeps >= 200",
    "gate_data": "--calib sources calibrate, --gate-data sources gate (no file on both sides)",
    "parity_only": "no calibration (not int8): every source is parity data",
}

SourcesArg = Optional[Union[str, Path, Sequence[Union[str, Path]]]]
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


def expand_sources(sources: SourcesArg, default: bool = True) -> List[Path]:
    """``--calib`` / ``--gate-data`` values as paths.

    Parameters
    ----------
    sources : path, sequence of paths, or None
        Videos, images, folders, or list files (``.txt`` / ``.list``: one source a line, ``#``
        comments, relative paths from the list file's folder). ``None``: :func:`default_data_source`
        when ``default`` is true.

    Returns
    -------
    list of Path, each an existing video, image or non-empty folder, without repeats.

    Raises
    ------
    InputError
        A source that does not exist, an empty folder or list.
    """
    if sources is None:
        return [_resolve_source(None)] if default else []
    items = [sources] if isinstance(sources, (str, Path)) else list(sources)
    out: List[Path] = []
    for item in items:
        path = Path(item)
        if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            lines = [ln.split("#", 1)[0].strip() for ln in path.read_text().splitlines()]
            listed = [Path(ln) if Path(ln).is_absolute() else Path(os.path.normpath(path.parent / ln))
                      for ln in lines if ln]
            if not listed:
                raise InputError(f"source list '{path}' names no source: expected one video, image or folder a line")
            found = expand_sources(listed)
        else:
            found = [_resolve_source(path)]
        out += [f for f in found if f.resolve() not in {o.resolve() for o in out}]
    if not out:
        raise InputError("no calibration source given: pass --calib PATH (a video, an image or a folder with faces)")
    return out


def source_units(paths: Sequence[Path]) -> List[Path]:
    """The units a by-source split moves whole: each given file; each entry of a given folder (a file,
    or a sub-folder with everything under it, e.g. one person's photos)."""
    from .facedata import VIDEO_SUFFIXES
    from ..runtime.sources import IMAGE_SUFFIXES
    media = IMAGE_SUFFIXES + VIDEO_SUFFIXES
    units: List[Path] = []
    for p in paths:
        if p.is_file():
            units.append(p)
            continue
        for c in sorted(p.iterdir()):
            if (c.is_file() and c.suffix.lower() in media) or (
                    c.is_dir() and any(f.suffix.lower() in media for f in c.rglob("*"))):
                units.append(c)
    seen, out = set(), []
    for u in units:
        if u.resolve() not in seen:
            seen.add(u.resolve())
            out.append(u)
    return out


def _refuse_overlap(calib: Sequence[Path], gate: Sequence[Path]) -> None:
    """A file (by content) among both the calibration and the gate sources is refused."""
    def files(paths):
        return {file_sha256(f): f for p in paths for f in list_sources(p)}
    c, g = files(calib), files(gate)
    both = sorted(set(c) & set(g))
    if both:
        raise InputError(f"--gate-data must hold sources not used for calibration; "
                         f"{', '.join(str(g[s]) for s in both[:5])}{' ...' if len(both) > 5 else ''} "
                         f"{'is' if len(both) == 1 else 'are'} also among the --calib sources: remove "
                         f"{'it' if len(both) == 1 else 'them'} from one side")


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


def pose_data(spec: ModelSpec, source: SourcesArg, size: int, need_calibration: bool,
              detector: Optional[Union[str, Path]] = None, gate: SourcesArg = None) -> CalibrationData:
    """Real face crops for a pose model, found by SCRFD and cut by the runtime's crop code.

    Parameters
    ----------
    spec : ModelSpec
        Registry entry (mean, std, colour).
    source : path, sequence of paths, or None
        Videos, images, folders or list files (:func:`expand_sources`); ``None`` uses
        :func:`default_data_source`. Split by source (:func:`source_units`, :func:`split_by_source`)
        into a calibration part and a gate part unless ``gate`` is given; a single source is split
        by its frames (calibration and parity crops disjoint, same people).
    size : int
        Crop side (the model input).
    need_calibration : bool
        ``True`` for int8: at least ``MIN_CALIBRATION`` calibration crops are required (and
        ``MIN_GATE`` gate crops from other sources when the data is split by source).
    detector : path, optional
        SCRFD ONNX used to find faces (default :func:`default_detector`).
    gate : path, sequence of paths, or None
        Explicit gate sources (``--gate-data``): all of ``source`` calibrates, ``gate`` is the parity
        / int8-gate set. A file in both is refused.

    Returns
    -------
    CalibrationData
        ``calibration`` (<= ``N_CALIBRATION`` crops) and ``parity`` (the gate crops, <=
        ``N_GATE_CROPS``; ``N_PARITY_CROPS`` for one source); ``info`` records the split and both
        sets (source names, sha256, face counts) for the manifest.

    Raises
    ------
    InputError
        Source missing / no faces / too few faces for int8 (with how many are needed) / a gate
        source that is also a calibration source.
    """
    det_path = Path(detector) if detector else default_detector()
    if det_path is None or not det_path.exists():
        raise ConversionError(f"pose calibration needs a face detector ONNX to find faces: expected "
                              f"{DETECTOR_FILE} in weights/ or $HEADPOSE_DETECTOR, found none")
    margin = spec.decode["crop"]["margin"]
    paths = expand_sources(source)
    gate_paths = expand_sources(gate, default=False) if gate is not None else []
    if gate_paths:
        _refuse_overlap(paths, gate_paths)
        calib_units = [_unit_faces(u, det_path, size, margin) for u in source_units(paths)]
        gate_units = [_unit_faces(u, det_path, size, margin) for u in source_units(gate_paths)]
        return _by_source(spec, calib_units, gate_units, "gate_data", need_calibration, det_path)
    units = source_units(paths)
    if len(units) == 1 and units[0] == paths[0]:  # one video / image: today's split of its frames
        return _one_source(spec, _unit_faces(paths[0], det_path, size, margin, quiet=True), det_path,
                           need_calibration)
    faces = _distinct([_unit_faces(u, det_path, size, margin) for u in units])
    if not need_calibration:  # fp32/fp16 parity: every source is parity data
        return _by_source(spec, [], faces, "parity_only", False, det_path)
    split = split_by_source(faces)
    if split is None:
        total = sum(len(f.crops) for f in faces)
        need = MIN_CALIBRATION + MIN_GATE
        if len(paths) == 1 and total >= MIN_CALIBRATION:  # one folder, as before: split its crops, say so
            log.warning("%s: %d face crops in %d sources cannot be split by source into >= %d for calibration "
                        "and >= %d for the gate; splitting its crops instead (the gate then shares sources with "
                        "the calibration: add sources or pass --gate-data for a held-out gate)",
                        paths[0], total, len(faces), MIN_CALIBRATION, MIN_GATE)
            whole = UnitFaces(str(paths[0]), source_sha256(paths[0]),
                              np.concatenate([f.crops for f in faces]), sum(f.frames for f in faces))
            return _one_source(spec, whole, det_path, need_calibration)
        raise InputError(_too_few(faces, need))
    calib_units, gate_units = split
    return _by_source(spec, calib_units, gate_units, "by_source", need_calibration, det_path)


def _too_few(faces: Sequence["UnitFaces"], need: int) -> str:
    total = sum(len(f.crops) for f in faces)
    per = ", ".join(f"{f.name}: {len(f.crops)}" for f in faces[:12]) + (", ..." if len(faces) > 12 else "")
    return (f"int8 calibration needs at least {MIN_CALIBRATION} real face crops, and the gate {MIN_GATE} more from "
            f"other sources (never frames of one video on both sides): {need} in all; the {len(faces)} sources "
            f"given hold {total} ({per}), and no split by source reaches both counts. Pass more videos / images "
            f"via --calib (repeatable, or a .txt list of paths), or the gate's sources via --gate-data")


@dataclass
class UnitFaces:
    """The face crops of one source unit (a file, or a sub-folder taken whole).

    Attributes
    ----------
    name : str
        The unit's path as given (display and manifest name).
    sha256 : str
        :func:`source_sha256` of the unit.
    crops : ndarray, (N, S, S, 3), uint8, RGB
    frames : int
        Frames (images / video frames) that gave at least one face.
    """

    name: str
    sha256: str
    crops: np.ndarray
    frames: int


def _unit_faces(unit: Path, det_path: Path, size: int, margin: float, quiet: bool = False) -> UnitFaces:
    """The crops of ``unit`` (detections cached on disk, crops in this process); none found: zero crops."""
    sha = source_sha256(unit)
    key = (sha, str(det_path), size)
    if key not in _CROP_CACHE:
        try:
            _CROP_CACHE[key] = _cached_face_crops(unit, sha, det_path, size, margin)
        except InputError as e:  # no face in this unit: it counts zero
            if not quiet:
                log.warning("%s: %s", unit, e)
            _CROP_CACHE[key] = (np.zeros((0, size, size, 3), np.uint8), [])
    crops, meta = _CROP_CACHE[key]
    return UnitFaces(str(unit), sha, crops, len({m["frame"] for m in meta}))


def _distinct(units: List[UnitFaces]) -> List[UnitFaces]:
    """One unit per content (a copy of a video under another name would otherwise fall on both sides)."""
    seen, out = set(), []
    for u in units:
        if u.sha256 in seen:
            log.warning("%s: the same content as another source; used once", u.name)
            continue
        seen.add(u.sha256)
        out.append(u)
    return out


def split_by_source(units: Sequence[UnitFaces], min_calibration: int = None, min_gate: int = None,
                    gate_share: float = None) -> Optional[Tuple[List[UnitFaces], List[UnitFaces]]]:
    """Split whole source units into a calibration part and a gate part.

    Units are visited in the order of their content sha256 (stable, unrelated to names or sizes);
    a unit goes to the gate while the gate holds fewer than ``target = max(min_gate, gate_share *
    total)`` crops, the calibration part keeps at least ``min_calibration`` and the gate stays within
    twice the target (a second pass lifts that cap when the gate is still short of ``min_gate``).
    A unit is never divided.

    Parameters
    ----------
    units : sequence of UnitFaces
    min_calibration, min_gate : int
        Smallest crop counts of each part (default ``MIN_CALIBRATION``, ``MIN_GATE``).
    gate_share : float
        Share of all crops the gate aims at (default ``GATE_SHARE``).

    Returns
    -------
    (calibration units, gate units), or None when no split reaches both minimums.
    """
    min_calibration = MIN_CALIBRATION if min_calibration is None else min_calibration
    min_gate = MIN_GATE if min_gate is None else min_gate
    gate_share = GATE_SHARE if gate_share is None else gate_share
    order = sorted((u for u in units if len(u.crops)), key=lambda u: (u.sha256, u.name))
    total = sum(len(u.crops) for u in order)
    target = max(min_gate, int(round(gate_share * total)))
    gate, n_gate = [], 0
    for cap in (2 * target, total):
        for u in order:
            if n_gate >= target:
                break
            if id(u) not in {id(v) for v in gate} and n_gate + len(u.crops) <= cap and total - n_gate - len(u.crops) >= min_calibration:
                gate.append(u)
                n_gate += len(u.crops)
        if n_gate >= min_gate:
            break
    if n_gate < min_gate or total - n_gate < min_calibration:
        return None
    names = {u.name for u in gate}
    return [u for u in units if u.name not in names and len(u.crops)], gate


def _set_info(units: Sequence[UnitFaces], samples: int) -> Dict:
    return {"sources": [{"name": u.name, "sha256": u.sha256, "faces": int(len(u.crops)), "frames": u.frames}
                        for u in units],
            "faces": int(sum(len(u.crops) for u in units)), "samples": int(samples)}


def _by_source(spec: ModelSpec, calib_units: Sequence[UnitFaces], gate_units: Sequence[UnitFaces], split: str,
               need_calibration: bool, det_path: Path) -> CalibrationData:
    size = spec.input_size

    def stack(units):
        arrs = [u.crops for u in units if len(u.crops)]
        return np.concatenate(arrs) if arrs else np.zeros((0, size, size, 3), np.uint8)
    calib, gate = stack(calib_units), stack(gate_units)
    if need_calibration and len(calib) < MIN_CALIBRATION:
        raise InputError(f"int8 calibration needs at least {MIN_CALIBRATION} real face crops; the calibration "
                         f"sources ({', '.join(u.name for u in calib_units) or 'none'}) gave {len(calib)}: pass "
                         f"more videos / images via --calib (repeatable, or a .txt list of paths)")
    if len(gate) < (MIN_GATE if need_calibration else 1):
        raise InputError(f"the int8 gate needs at least {MIN_GATE if need_calibration else 1} real face crops from "
                         f"sources not used for calibration; the gate sources "
                         f"({', '.join(u.name for u in gate_units) or 'none'}) gave {len(gate)}: pass more via "
                         f"--gate-data (or more sources via --calib to split)")
    ci = sample_evenly(len(calib), N_CALIBRATION) if need_calibration else np.zeros(0, np.int64)
    gi = sample_evenly(len(gate), N_GATE_CROPS)

    def norm(arr: np.ndarray) -> np.ndarray:
        return normalise(to_color(arr.astype(np.float32), "RGB", spec.color), spec.mean, spec.std)
    everything = list(calib_units) + list(gate_units)
    combined = hashlib.sha256("".join(sorted(u.sha256 for u in everything)).encode()).hexdigest()
    info = {"source": "; ".join(u.name for u in everything), "sha256": combined, "kind": "face_crops",
            "detector": det_path.name, "faces_found": int(len(calib) + len(gate)),
            "frames": int(sum(u.frames for u in everything)),
            "samples": int(len(ci)), "parity_samples": int(len(gi)), "parity_disjoint": True,
            "split": split, "split_rule": SPLIT_RULES[split],
            "sets": {"calibration": _set_info(calib_units, len(ci)), "gate": _set_info(gate_units, len(gi))},
            "preprocessing": "runtime.preprocess.crop_faces + registry mean/std"}
    return CalibrationData("face_crops", norm(calib[ci]), norm(gate[gi]),
                           gate[gi[:20]].astype(np.float32) / 255.0, info)


def _one_source(spec: ModelSpec, unit: UnitFaces, det_path: Path, need_calibration: bool) -> CalibrationData:
    """One source: its crops split into a calibration set and a disjoint parity set (the same people)."""
    crops, path = unit.crops, unit.name
    if not len(crops):
        raise InputError(f"no faces of at least 20 px were found in '{path}'")
    if need_calibration and len(crops) < MIN_CALIBRATION:
        raise InputError(f"int8 calibration needs at least {MIN_CALIBRATION} real face crops; '{path}' gave "
                         f"{len(crops)}: pass a longer video or a folder with more faces via --calib (repeatable; "
                         f"{MIN_CALIBRATION + MIN_GATE} crops from several sources also give a gate on other people)")
    ci, pi, disjoint = _split(len(crops), N_CALIBRATION, N_PARITY_CROPS)

    def norm(idx: np.ndarray) -> np.ndarray:
        return normalise(to_color(crops[idx].astype(np.float32), "RGB", spec.color), spec.mean, spec.std)
    n_calib = int(len(ci)) if need_calibration else 0
    info = {"source": path, "sha256": unit.sha256, "kind": "face_crops",
            "detector": det_path.name, "faces_found": int(len(crops)),
            "frames": unit.frames,
            "samples": n_calib, "parity_samples": int(len(pi)),
            "parity_disjoint": bool(disjoint), "split": "frames_of_one_source",
            "split_rule": SPLIT_RULES["frames_of_one_source"],
            "sets": {"calibration": _set_info([unit], n_calib), "gate": _set_info([unit], len(pi))},
            "preprocessing": "runtime.preprocess.crop_faces + registry mean/std"}
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
        Source missing, several sources (SCRFD takes one), or too few frames for int8 (fewer than
        ``MIN_CALIBRATION``).
    """
    paths = expand_sources(source)
    if len(paths) > 1:
        raise InputError(f"SCRFD calibration takes one --calib source (a video, image or folder); {len(paths)} "
                         f"were given: put the images in one folder")
    path = paths[0]
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
