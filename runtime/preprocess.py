"""Image preprocessing in NumPy: bilinear resize, SCRFD letterbox, pose face crops, normalisation.

Frames are ``uint8`` arrays of shape (H, W, 3) in ``BGR`` (OpenCV's order, the default) or ``RGB``
order; grey (H, W) / (H, W, 1) and RGBA/BGRA (H, W, 4) frames are converted with
:func:`as_three_channels`. The bilinear resize follows OpenCV's ``INTER_LINEAR`` geometry
(half-pixel centres, edge clamp, no antialiasing), so the NumPy path and the optional OpenCV path
give the same pixels up to OpenCV's fixed-point rounding (<= 1 grey level).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

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
    new_h, new_w, scale = letterbox_size(frame.shape[:2], size)
    canvas = np.zeros((size[0], size[1], 3), np.float32)
    canvas[:new_h, :new_w] = resize_bilinear(frame, new_w, new_h, use_opencv)
    return canvas, scale


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
    regions, kept = crop_boxes(frame.shape[:2], boxes, margin)
    if not regions:
        return np.zeros((0, size, size, 3), np.float32), np.zeros((0,), np.int64)
    crops = [resize_bilinear(frame[y1:y2, x1:x2], size, size, use_opencv) for x1, y1, x2, y2 in regions]
    batch = to_color(np.stack(crops), frame_color, model_color)
    return normalise(batch, mean, std), kept


# -- the hot path: uint8 pixels straight into a model's input buffer ------------------------------
# OpenCV path: cv2.resize writes the uint8 pixels into a preallocated canvas / crop batch, the colour
# order is swapped in place, and ONE per-channel 256-entry table (:func:`pixel_lut`) maps every pixel
# into the interpreter's input buffer in the tensor's dtype. The NumPy path keeps today's float32
# arithmetic (resize, normalise, quantise) and writes the same buffer; both give the values the simple
# path (:func:`letterbox` / :func:`crop_faces`, then ``TFLiteModel(x)``) gives.

def pixel_lut(mean: Sequence[float], std: Sequence[float], dtype=np.float32,
              quantization: Optional[Tuple[float, int]] = None) -> np.ndarray:
    """The model input value of every pixel value, per channel: a (256, 3) table.

    ``lut[p, c]`` is ``(p - mean[c]) / std[c]`` in float32, the very arithmetic of :func:`normalise`
    (bit-identical), or for a quantised input tensor that value quantised by
    :func:`~headpose.runtime.interpreter.quantize_input` (``clip(round_half_even(x / scale + zero_point))``),
    the very integers ``TFLiteModel(x)`` would feed the model for the float ``x``.

    Parameters
    ----------
    mean, std : 3 floats, pixel units, in the model's channel order
    dtype : the input tensor's dtype (float32, int8, uint8, int16)
    quantization : (scale, zero_point) of a quantised input tensor; required unless dtype is float32

    Returns
    -------
    ndarray, (256, 3), ``dtype``
    """
    p = np.arange(256, dtype=np.float32)[:, None]
    x = (p - np.asarray(mean, np.float32)[None, :]) / np.asarray(std, np.float32)[None, :]
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return np.ascontiguousarray(x, np.float32)
    if quantization is None:
        raise InputError(f"a {dtype.name} input tensor needs its (scale, zero_point) for the pixel table")
    from .interpreter import quantize_input
    return quantize_input(x, quantization[0], quantization[1], dtype)


def apply_lut(src: np.ndarray, lut: np.ndarray, dst: np.ndarray, use_opencv: bool = True) -> None:
    """``dst[..., c] = lut[src[..., c], c]`` for a uint8 (..., 3) ``src``, written into ``dst`` (same shape).

    OpenCV's ``cv2.LUT`` when installed (the table as (256, 1, 3); ``dst`` must be C-contiguous rows
    or a row-strided region of an image), else ``np.take`` per channel.
    """
    if use_opencv and _cv2 is not None and src.ndim == 3:
        got = _cv2.LUT(src, lut.reshape(256, 1, 3), dst=dst)
        if got is not dst and not np.shares_memory(got, dst):  # pragma: no cover - OpenCV made a new array
            np.copyto(dst, got)
        return
    for c in range(3):
        np.take(lut[:, c], src[..., c], out=dst[..., c])


def letterbox_size(frame_hw: Tuple[int, int], size: Tuple[int, int]) -> Tuple[int, int, float]:
    """``(new_h, new_w, scale)`` of :func:`letterbox`: the resized frame's size and ``resized / original``."""
    ih, iw = size
    h, w = frame_hw
    if h / w > ih / iw:
        new_h = ih
        new_w = int(new_h / (h / w))
    else:
        new_w = iw
        new_h = int(new_w * (h / w))
    new_w, new_h = max(new_w, 1), max(new_h, 1)
    return new_h, new_w, new_h / h


def _swap_in_place(img: np.ndarray, use_opencv: bool) -> None:
    """Reverse the channel order of a uint8 (..., 3) array in place (RGB <-> BGR)."""
    if use_opencv and _cv2 is not None and img.ndim == 3 and img.flags.c_contiguous:
        _cv2.cvtColor(img, _cv2.COLOR_BGR2RGB, dst=img)
    else:
        img[..., [0, 2]] = img[..., [2, 0]]


def resize_u8_into(img: np.ndarray, dst: np.ndarray) -> None:
    """``cv2.resize`` (INTER_LINEAR) of a uint8 image into the uint8 ``dst`` (its size is the target), in place."""
    h, w = dst.shape[:2]
    got = _cv2.resize(img, (w, h), dst=dst, interpolation=_cv2.INTER_LINEAR)
    if got is not dst and not np.shares_memory(got, dst):  # pragma: no cover - OpenCV made a new array
        np.copyto(dst, got)


class InputWriter:
    """Writes letterboxed frames or face crops of uint8 frames into a model's NHWC input buffer.

    Made once per model (the tables and the uint8 scratch are preallocated); per call it allocates
    nothing on the OpenCV path but what OpenCV's own calls need.

    Parameters
    ----------
    mean, std : 3 floats, pixel units, in ``model_color`` order
    model_color : ``"RGB"`` / ``"BGR"``, the model's channel order
    dtype : the input tensor's dtype; quantization its (scale, zero_point) when quantised
    use_opencv : bool
        The uint8 + table path (needs OpenCV); else the NumPy float32 path.

    Attributes
    ----------
    lut : ndarray, (256, 3), ``dtype``: see :func:`pixel_lut`
    pad : ndarray, (3,), ``dtype``: the value of pixel 0 (letterbox padding)
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], model_color: str, dtype=np.float32,
                 quantization: Optional[Tuple[float, int]] = None, use_opencv: bool = True):
        self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        self.model_color = model_color.upper()
        self.dtype = np.dtype(dtype)
        self.quantization = quantization
        self.use_opencv = bool(use_opencv) and _cv2 is not None
        self.lut = pixel_lut(mean, std, self.dtype, quantization)
        self.pad = self.lut[0].copy()
        self._canvas = np.zeros((0, 0, 3), np.uint8)  # uint8 letterbox region (new_h, new_w, 3)
        self._batch = np.zeros((0, 0, 3), np.uint8)  # uint8 crops, (rows, S, 3) with rows >= N * S
        self._padded: Optional[Tuple[int, int, int]] = None  # (buffer id, new_h, new_w) whose padding is written

    def _crop_scratch(self, n: int, s: int) -> np.ndarray:
        """(n, s, s, 3) uint8, C-contiguous; grows (doubling) only when more faces than ever come."""
        if self._batch.shape[1] != s or self._batch.shape[0] < n * s:
            rows = max(n, 2 * (self._batch.shape[0] // s) if self._batch.shape[1] == s else n) * s
            self._batch = np.empty((rows, s, 3), np.uint8)
        return self._batch[:n * s].reshape(n, s, s, 3)

    def _to_dtype(self, x: np.ndarray) -> np.ndarray:
        """Normalised float32 -> the buffer's dtype (NumPy path)."""
        if self.dtype == np.float32:
            return x
        from .interpreter import quantize_input
        return quantize_input(x, self.quantization[0], self.quantization[1], self.dtype)

    def letterbox(self, frame: np.ndarray, dst: np.ndarray, frame_color: str = "BGR",
                  buffer_id: int = 0) -> float:
        """Letterbox one frame into ``dst`` (H, W, 3) of the buffer's dtype; return ``resized / original``.

        The padding (pixel 0, normalised / quantised) is written only when the letterbox geometry or
        the buffer (``buffer_id``) changed: a model's input buffer keeps it between invocations.
        """
        ih, iw = dst.shape[:2]
        new_h, new_w, scale = letterbox_size(frame.shape[:2], (ih, iw))
        key = (buffer_id, new_h, new_w)
        if self._padded != key:
            dst[new_h:, :] = self.pad
            dst[:new_h, new_w:] = self.pad
            self._padded = key
        region = dst[:new_h, :new_w]
        swap = frame_color.upper() != self.model_color
        if self.use_opencv:
            if self._canvas.shape[:2] != (new_h, new_w):
                self._canvas = np.empty((new_h, new_w, 3), np.uint8)
            canvas = self._canvas
            resize_u8_into(frame, canvas)
            if swap:
                _swap_in_place(canvas, True)
            apply_lut(canvas, self.lut, region, True)
            return scale
        x = resize_bilinear(frame, new_w, new_h)
        region[...] = self._to_dtype(normalise(to_color(x, frame_color, self.model_color), self.mean, self.std))
        return scale

    def crops(self, frame: np.ndarray, boxes: Sequence[Tuple[int, int, int, int]], dst: np.ndarray,
              frame_color: str = "BGR") -> None:
        """Write the crops ``boxes`` (x1, y1, x2, y2 integer, inside the frame, non-empty) of ``frame``,
        each resized to ``dst``'s (S, S), into ``dst`` (N, S, S, 3) of the buffer's dtype."""
        n, s = len(boxes), dst.shape[1]
        if n == 0:
            return
        swap = frame_color.upper() != self.model_color
        if self.use_opencv:
            u8 = self._crop_scratch(n, s)
            for j, (x1, y1, x2, y2) in enumerate(boxes):
                resize_u8_into(frame[y1:y2, x1:x2], u8[j])
            flat = u8.reshape(n * s, s, 3)
            if swap:
                _swap_in_place(flat, True)
            apply_lut(flat, self.lut, dst[:n].reshape(n * s, s, 3), True)
            return
        for j, (x1, y1, x2, y2) in enumerate(boxes):
            x = to_color(resize_bilinear(frame[y1:y2, x1:x2], s, s), frame_color, self.model_color)
            dst[j] = self._to_dtype(normalise(x, self.mean, self.std))


def crop_boxes(frame_hw: Tuple[int, int], boxes: np.ndarray, margin: float = 0.2
               ) -> Tuple[list, np.ndarray]:
    """The integer crop boxes of :func:`crop_faces` (expanded, clipped) and the indices of those that are non-empty.

    Returns
    -------
    crops : list of (x1, y1, x2, y2) int
    kept : ndarray, (M,), int64: indices into ``boxes``
    """
    h, w = frame_hw
    out, kept = [], []
    b = np.asarray(boxes, dtype=np.float64)
    for i, row in enumerate(b.reshape(-1, b.shape[-1] if b.size else 4)):
        x1, y1, x2, y2 = expand_box(row, margin)
        x2, y2 = min(x2, w), min(y2, h)
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        out.append((x1, y1, x2, y2))
        kept.append(i)
    return out, np.asarray(kept, np.int64)
