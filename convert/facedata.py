"""Real frames and face crops for calibration, parity checks, distillation and evaluation.

Frames come from a video file, an image file or a folder of images (read with OpenCV, which the
``convert`` extra installs). Faces are found by an SCRFD ONNX model run in ONNX Runtime and decoded by
the runtime's own NumPy code; crops are made by the runtime's own crop code, so that every figure
measured on them describes what the device sees.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np

from ..runtime.errors import InputError
from ..runtime.preprocess import crop_faces, letterbox, normalise, to_color
from ..runtime.registry import SCRFD_DECODE, get_spec
from ..runtime.scrfd import decode_scrfd
from ..runtime.sources import IMAGE_SUFFIXES  # the one list of image suffixes

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def list_sources(path: Union[str, Path]) -> List[Path]:
    """Every video and image under ``path`` (a file or a folder, searched recursively), sorted."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"data source '{path}' does not exist: expected a video, an image or a folder of them")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
    if not files:
        raise InputError(f"folder '{path}' holds no images ({', '.join(IMAGE_SUFFIXES)}) or videos")
    return files


def iter_frames(source: Union[str, Path], every: int = 1, start: int = 0, stop: Optional[int] = None
                ) -> Iterator[Tuple[str, np.ndarray]]:
    """Yield ``(frame_id, frame)`` from a video, an image or a folder (recursively).

    Parameters
    ----------
    every : int
        Keep one video frame in ``every``.
    start, stop : int
        Video frame range ``[start, stop)`` (images are always yielded).

    Yields
    ------
    frame_id : str
        ``"<file>#<index>"`` for video frames, the file path for images.
    frame : ndarray, (H, W, 3), uint8, BGR
    """
    from ..runtime.sources import CaptureSource, ImagesSource, SourceError  # the one frame reader
    for f in list_sources(source):
        if f.suffix.lower() in IMAGE_SUFFIXES:
            try:
                frames = list(ImagesSource([f], f"image {f}"))
            except SourceError:
                log.warning("skipping unreadable image %s", f)
                continue
            yield str(f), frames[0].image
            continue
        with CaptureSource(str(f), live=False) as video:
            for frame in video:
                i = frame.index
                if stop is not None and i >= stop:
                    break
                if i >= start and (i - start) % every == 0:
                    yield f"{f}#{i}", frame.image


class OnnxFaceDetector:
    """SCRFD ONNX model in ONNX Runtime + the runtime's NumPy decoding.

    The ONNX outputs are assigned to (role, stride) by their shapes: anchors per stride fix N, the
    last dimension (1/4/10) fixes the role. This is the reference the TFLite detector is compared to.

    Parameters
    ----------
    onnx_path : path
        SCRFD with keypoints (e.g. ``scrfd_500m_bnkps.onnx``).
    input_size : int
        Square detector input side (640 or 320...).
    """

    def __init__(self, onnx_path: Union[str, Path], input_size: int = 640, score_threshold: float = 0.5,
                 nms_threshold: float = 0.4, model_id: str = "scrfd_500m"):
        import onnxruntime as ort
        self.spec = get_spec(model_id)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.size = int(input_size)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.roles = self._roles()

    def _roles(self) -> List[Tuple[str, int]]:
        x = np.zeros((1, 3, self.size, self.size), np.float32)
        outs = self.session.run(None, {self.input_name: x})
        na = SCRFD_DECODE["anchors_per_cell"]
        by_n = {(self.size // s) ** 2 * na: s for s in SCRFD_DECODE["strides"]}
        kinds = {1: "score", 4: "bbox", 10: "kps"}
        roles = []
        for o in outs:
            n, c = int(np.prod(o.shape[:-1])), int(o.shape[-1])
            if n not in by_n or c not in kinds:
                raise InputError(f"SCRFD output of shape {o.shape} does not fit strides 8/16/32 with 2 anchors "
                                 f"at input {self.size}: is this an SCRFD model with keypoints?")
            roles.append((kinds[c], by_n[n]))
        return roles

    def blob(self, frame: np.ndarray) -> Tuple[np.ndarray, float]:
        """Letterboxed, normalised detector input (1, 3, S, S) float32 and its scale."""
        canvas, scale = letterbox(frame, (self.size, self.size))
        x = normalise(to_color(canvas, "BGR", self.spec.color), self.spec.mean, self.spec.std)
        return x.transpose(2, 0, 1)[None], scale

    def raw(self, blob: np.ndarray) -> dict:
        """``(role, stride) -> array`` for a (1, 3, S, S) blob."""
        return dict(zip(self.roles, self.session.run(None, {self.input_name: blob})))

    def detect(self, frame: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Faces of one BGR frame: dets (K, 5) x1, y1, x2, y2, score and kps (K, 5, 2), frame pixels."""
        blob, scale = self.blob(frame)
        return decode_scrfd(self.raw(blob), (self.size, self.size), SCRFD_DECODE["strides"],
                            SCRFD_DECODE["anchors_per_cell"], self.score_threshold, self.nms_threshold, scale)


def face_crops(source: Union[str, Path], detector: OnnxFaceDetector, size: int = 224, margin: float = 0.2,
               every: int = 1, start: int = 0, stop: Optional[int] = None, min_face: int = 20,
               limit: Optional[int] = None) -> Tuple[np.ndarray, List[dict]]:
    """Real face crops (as the runtime makes them) from a video, image or folder.

    Parameters
    ----------
    min_face : int
        Drop faces whose box is smaller than this many pixels on its shorter side.
    limit : int, optional
        Stop after this many crops.

    Returns
    -------
    crops : ndarray, (N, size, size, 3), uint8, RGB (un-normalised: normalise with the registry's
        mean/std for the pose model)
    meta : list of dict
        ``{"frame": frame_id, "box": [x1, y1, x2, y2], "score": float}`` per crop.
    """
    crops, meta = [], []
    for frame_id, frame in iter_frames(source, every, start, stop):
        dets, _ = detector.detect(frame)
        sides = np.minimum(dets[:, 2] - dets[:, 0], dets[:, 3] - dets[:, 1]) if len(dets) else np.zeros(0)
        dets = dets[sides >= min_face]
        if not len(dets):
            continue
        batch, kept = crop_faces(frame, dets, size, (0, 0, 0), (1, 1, 1), "BGR", "RGB", margin)
        for b, k in zip(batch, kept):
            crops.append(np.clip(np.round(b), 0, 255).astype(np.uint8))
            meta.append({"frame": frame_id, "box": [float(v) for v in dets[k, :4]], "score": float(dets[k, 4])})
            if limit and len(crops) >= limit:
                return np.stack(crops), meta
    if not crops:
        raise InputError(f"no faces of at least {min_face} px were found in '{source}'")
    return np.stack(crops), meta


def sample_evenly(n_total: int, n: int) -> np.ndarray:
    """``n`` indices spread evenly over ``range(n_total)`` (all of them when ``n >= n_total``)."""
    if n >= n_total:
        return np.arange(n_total)
    return np.linspace(0, n_total - 1, n).round().astype(np.int64)


def normalised_nchw(crops: np.ndarray, spec) -> np.ndarray:
    """uint8 RGB (N, H, W, 3) -> (N, 3, H, W) float32 in the registry's colour order and normalisation."""
    x = normalise(to_color(crops.astype(np.float32), "RGB", spec.color), spec.mean, spec.std)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
