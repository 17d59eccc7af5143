"""Image preprocessing in NumPy: bilinear resize, SCRFD letterbox, pose face crops, normalisation.

Frames are ``uint8`` arrays of shape (H, W, 3) in ``BGR`` (OpenCV's order, the default) or ``RGB``
order; grey (H, W) / (H, W, 1) and RGBA/BGRA (H, W, 4) frames are converted with
:func:`as_three_channels`. The bilinear resize follows OpenCV's ``INTER_LINEAR`` geometry
(half-pixel centres, edge clamp, no antialiasing), so the NumPy path and the optional OpenCV path
give the same pixels up to OpenCV's fixed-point rounding (<= 1 grey level).
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

from .errors import InputError

try:  # optional speed-up only; the NumPy path is the reference
    import cv2 as _cv2
except Exception:  # pragma: no cover - depends on the install
    _cv2 = None


def _to_uint8(frame: np.ndarray) -> np.ndarray:
    """A float/integer frame as uint8 (see :func:`as_three_channels` for the rules)."""
    if frame.dtype == np.bool_ or not np.issubdtype(frame.dtype, np.number) or np.iscomplexobj(frame):
        raise InputError(f"expected a uint8 frame, found dtype {frame.dtype}")
    lo, hi = float(frame.min()), float(frame.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError(f"expected a uint8 frame, found a {frame.dtype} frame holding NaN or infinity")
    if np.issubdtype(frame.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        return np.round(frame * 255.0).astype(np.uint8)  # 0..1 images (scikit-image, PIL -> float)
    if lo < 0.0 or hi > 255.0:
        hint = (" (16-bit image? convert it first, e.g. (img >> 8).astype(np.uint8))"
                if frame.dtype == np.uint16 else "")
        raise InputError(f"expected a uint8 frame (0..255), found dtype {frame.dtype} with values {lo:g}..{hi:g}"
                         f"{hint}; float frames may be 0..1 or 0..255")
    return np.round(frame).astype(np.uint8)


def as_three_channels(frame: np.ndarray) -> np.ndarray:
    """Validate a frame and bring it to (H, W, 3) ``uint8``.

    Parameters
    ----------
    frame : ndarray
        (H, W) or (H, W, 1) grey, (H, W, 3) colour or (H, W, 4) with alpha; ``uint8``. Other dtypes
        are converted only where the meaning is unambiguous: float in 0..1 (its maximum <= 1) is scaled
        by 255, other float or integer arrays must lie within 0..255 and are rounded to uint8.

    Raises
    ------
    InputError
        For anything that is not an image of those shapes, an empty one, or values outside 0..255
        (uint16 images: convert them first, e.g. ``(img >> 8).astype(np.uint8)`` for 16-bit data).
    """
    if not isinstance(frame, np.ndarray):
        raise InputError(f"expected a frame as a NumPy array (H, W, 3) uint8, found {type(frame).__name__}")
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.ndim != 3 or frame.shape[2] not in (1, 3, 4) or frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(f"expected a frame of shape (H, W, 3) (grey (H, W) and 4-channel are accepted), "
                         f"found shape {frame.shape}")
    if frame.dtype != np.uint8:
        frame = _to_uint8(frame)
    if frame.shape[2] == 1:
        frame = np.repeat(frame, 3, axis=2)
    elif frame.shape[2] == 4:
        frame = frame[:, :, :3]
    return frame


def _axis_taps(src: int, dst: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    scale = src / dst
    f = (np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5
    i0 = np.floor(f).astype(np.int64)
    w = (f - i0).astype(np.float32)
    under = i0 < 0
    w[under], i0[under] = 0.0, 0
    over = i0 >= src - 1
    w[over], i0[over] = 0.0, src - 1
    return i0, np.minimum(i0 + 1, src - 1), w


def resize_bilinear(img: np.ndarray, width: int, height: int, use_opencv: bool = False) -> np.ndarray:
    """Resize (H, W, C) to (height, width, C) with OpenCV ``INTER_LINEAR`` geometry.

    Parameters
    ----------
    img : ndarray, (H, W, C), uint8 or float32
    width, height : int
        Output size in pixels (> 0).
    use_opencv : bool
        Use ``cv2.resize`` when OpenCV is installed (faster; same geometry).

    Returns
    -------
    ndarray, (height, width, C), float32, same value range as the input
    """
    if width <= 0 or height <= 0:
        raise InputError(f"resize target must be positive, found {width}x{height}")
    if use_opencv and _cv2 is not None:
        return _cv2.resize(img, (width, height), interpolation=_cv2.INTER_LINEAR).astype(np.float32, copy=False)
    h, w = img.shape[:2]
    y0, y1, wy = _axis_taps(h, height)
    x0, x1, wx = _axis_taps(w, width)
    # gather the needed rows first, then convert: same values, far less work when downscaling
    top, bot = img[y0].astype(np.float32, copy=False), img[y1].astype(np.float32, copy=False)
    rows = top + (bot - top) * wy[:, None, None]
    left, right = rows[:, x0], rows[:, x1]
    return left + (right - left) * wx[None, :, None]


def normalise(img: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(img - mean) / std`` per channel; img (..., 3) in pixel units 0..255 -> float32 (a new, C-contiguous array).

    Computed in place on one contiguous float32 copy, row by row against the per-channel values
    tiled along the row: the same float32 arithmetic (bit-identical) as the plain broadcast
    expression, ~3x faster (NumPy's inner loop over a length-3 last axis is slow).
    """
    out = np.array(img, dtype=np.float32, copy=True, order="C")
    mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
    if out.ndim < 2 or out.shape[-1] != mean.size:
        out -= mean
        out /= std
        return out
    rows = out.reshape(-1, out.shape[-2] * out.shape[-1])
    rows -= np.tile(mean, out.shape[-2])
    rows /= np.tile(std, out.shape[-2])
    return out


def to_color(img: np.ndarray, src: str, dst: str) -> np.ndarray:
    """Reorder the last axis from ``src`` to ``dst`` colour order (``RGB``/``BGR``)."""
    if src.upper() == dst.upper():
        return img
    if {src.upper(), dst.upper()} != {"RGB", "BGR"}:
        raise InputError(f"colour order must be RGB or BGR, found {src!r} -> {dst!r}")
    return img[..., ::-1]


def letterbox(frame: np.ndarray, size: Tuple[int, int], use_opencv: bool = False) -> Tuple[np.ndarray, float]:
    """Fit a frame into a (height, width) canvas keeping its aspect ratio, top-left aligned.

    This is the SCRFD reference preprocessing (insightface): the resized frame fills the top-left
    corner of a zero canvas.

    Parameters
    ----------
    frame : ndarray, (H, W, 3), uint8
    size : (height, width) of the detector input

    Returns
    -------
    canvas : ndarray, (height, width, 3), float32, pixel units 0..255, zeros as padding
    scale : float
        ``resized / original``; divide detector coordinates by it to get frame coordinates.
    """
    ih, iw = size
    h, w = frame.shape[:2]
    if h / w > ih / iw:
        new_h = ih
        new_w = int(new_h / (h / w))
    else:
        new_w = iw
        new_h = int(new_w * (h / w))
    new_w, new_h = max(new_w, 1), max(new_h, 1)
    canvas = np.zeros((ih, iw, 3), np.float32)
    canvas[:new_h, :new_w] = resize_bilinear(frame, new_w, new_h, use_opencv)
    return canvas, new_h / h


def expand_box(box: Sequence[float], margin: float = 0.2) -> Tuple[int, int, int, int]:
    """The yakhyo/head-pose-estimation face crop box.

    ``x`` grows by ``int(margin * height)`` and ``y`` by ``int(margin * width)`` on each side of the
    integer box (truncated towards zero, as ``map(int, box)``); the top-left is clipped at 0 (the
    caller clips the bottom-right at the frame).

    Returns
    -------
    (x1, y1, x2, y2) : int
    """
    x1, y1, x2, y2 = (int(v) for v in box[:4])
    w, h = x2 - x1, y2 - y1
    return (max(0, x1 - int(margin * h)), max(0, y1 - int(margin * w)),
            x2 + int(margin * h), y2 + int(margin * w))


def crop_faces(frame: np.ndarray, boxes: np.ndarray, size: int, mean: Sequence[float], std: Sequence[float],
               frame_color: str = "BGR", model_color: str = "RGB", margin: float = 0.2,
               use_opencv: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Cut, resize and normalise the face crops of one frame into one batch.

    Parameters
    ----------
    frame : ndarray, (H, W, 3), uint8, ``frame_color`` order
    boxes : ndarray, (N, >=4), float; x1, y1, x2, y2 in frame pixels
    size : int
        Side of the square model input (224).
    mean, std : 3 floats, pixel units
    margin : float
        Box expansion (see :func:`expand_box`).

    Returns
    -------
    batch : ndarray, (M, size, size, 3), float32, normalised, ``model_color`` order (NHWC)
    kept : ndarray, (M,), int
        Indices into ``boxes`` of the faces that gave a non-empty crop (a box entirely outside the
        frame gives none).
    """
    h, w = frame.shape[:2]
    crops, kept = [], []
    for i, b in enumerate(np.asarray(boxes, dtype=np.float64).reshape(-1, np.shape(boxes)[-1] if len(boxes) else 4)):
        x1, y1, x2, y2 = expand_box(b, margin)
        x2, y2 = min(x2, w), min(y2, h)
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        crops.append(resize_bilinear(frame[y1:y2, x1:x2], size, size, use_opencv))
        kept.append(i)
    if not crops:
        return np.zeros((0, size, size, 3), np.float32), np.zeros((0,), np.int64)
    batch = to_color(np.stack(crops), frame_color, model_color)
    return normalise(batch, mean, std), np.asarray(kept, np.int64)
