"""Drawing head poses on frames: the axis and the cube of yakhyo/head-pose-estimation.

The geometry is that of the upstream ``draw_axis`` / ``draw_cube``: angles in degrees, the yaw
negated, the centre at the middle of the (expanded) face box; the axis length is half the shorter
side of that box, the cube side is the detected box's width. Lines are drawn with OpenCV when it
is installed (and ``use_opencv``), else with a small NumPy rasteriser; both draw in place.
Colours are given in BGR (OpenCV's order); pass ``color="RGB"`` for RGB frames.
"""

from __future__ import annotations

from typing import Iterable, Sequence, Tuple

import numpy as np

from .errors import InputError
from .preprocess import expand_box
from .registry import POSE_CROP

try:
    import cv2 as _cv2
except Exception:  # pragma: no cover - depends on the install
    _cv2 = None

RED, GREEN, BLUE = (0, 0, 255), (0, 255, 0), (255, 0, 0)  # BGR
BOX_COLOUR = (0, 200, 255)
DRAW_MODES = ("axis", "cube", "none")

Point = Tuple[int, int]


def _colour(c: Sequence[int], color: str) -> Tuple[int, int, int]:
    return tuple(int(v) for v in (c[::-1] if color.upper() == "RGB" else c))  # type: ignore[return-value]


def _clip_segment(x0: float, y0: float, x1: float, y1: float, xmin: float, ymin: float, xmax: float,
                  ymax: float):
    """Liang-Barsky clipping of a segment to a rectangle; None when it lies outside."""
    dx, dy = x1 - x0, y1 - y0
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, x0 - xmin), (dx, xmax - x0), (-dy, y0 - ymin), (dy, ymax - y0)):
        if p == 0:
            if q < 0:
                return None
            continue
        r = q / p
        if p < 0:
            t0 = max(t0, r)
        else:
            t1 = min(t1, r)
        if t0 > t1:
            return None
    return x0 + t0 * dx, y0 + t0 * dy, x0 + t1 * dx, y0 + t1 * dy


def draw_line(image: np.ndarray, p0: Point, p1: Point, colour: Sequence[int], thickness: int = 2,
              use_opencv: bool = True) -> None:
    """Draw a line segment in place.

    Parameters
    ----------
    image : ndarray, (H, W, 3), uint8
    p0, p1 : (x, y) integer pixel coordinates (may lie outside the image; the line is clipped)
    colour : 3 ints in the image's channel order
    thickness : int, pixels
    use_opencv : bool
        ``cv2.line`` when OpenCV is installed; otherwise (or when False) the NumPy rasteriser, which
        samples the segment once per pixel step and stamps a ``thickness``-wide square at each sample.
    """
    if use_opencv and _cv2 is not None:
        _cv2.line(image, (int(p0[0]), int(p0[1])), (int(p1[0]), int(p1[1])), tuple(int(c) for c in colour),
                  int(thickness))
        return
    h, w = image.shape[:2]
    seg = _clip_segment(float(p0[0]), float(p0[1]), float(p1[0]), float(p1[1]), -thickness, -thickness,
                        w - 1 + thickness, h - 1 + thickness)
    if seg is None:
        return
    x0, y0, x1, y1 = seg
    n = int(np.ceil(max(abs(x1 - x0), abs(y1 - y0)))) + 1
    xs = np.rint(np.linspace(x0, x1, n)).astype(np.int64)
    ys = np.rint(np.linspace(y0, y1, n)).astype(np.int64)
    lo, hi = -((thickness - 1) // 2), thickness // 2 + 1
    offs = np.arange(lo, hi)
    px = (xs[:, None, None] + offs[None, :, None]).repeat(len(offs), axis=2).reshape(-1)
    py = (ys[:, None, None] + offs[None, None, :]).repeat(len(offs), axis=1).reshape(-1)
    ok = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    image[py[ok], px[ok]] = np.asarray(colour, dtype=image.dtype)


def axis_points(yaw: float, pitch: float, roll: float, bbox: Sequence[float],
                size_ratio: float = 0.5) -> Tuple[Point, Point, Point, Point]:
    """Centre and the ends of the x (red), y (green), z (blue) axes, as upstream ``draw_axis``.

    Parameters
    ----------
    yaw, pitch, roll : float, degrees
    bbox : x1, y1, x2, y2 of the (expanded) face box, pixels
    size_ratio : float, axis length as a fraction of the box's shorter side

    Returns
    -------
    centre, x_end, y_end, z_end : (x, y) int pixel coordinates
    """
    y, p, r = np.radians([-float(yaw), float(pitch), float(roll)])
    x_min, y_min, x_max, y_max = bbox[:4]
    tdx, tdy = int(x_min + (x_max - x_min) * 0.5), int(y_min + (y_max - y_min) * 0.5)
    size = min(x_max - x_min, y_max - y_min) * size_ratio
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    x_end = (int(size * (cy * cr) + tdx), int(size * (cp * sr + cr * sp * sy) + tdy))
    y_end = (int(size * (-cy * sr) + tdx), int(size * (cp * cr - sp * sy * sr) + tdy))
    z_end = (int(size * sy + tdx), int(size * (-cy * sp) + tdy))
    return (tdx, tdy), x_end, y_end, z_end


def draw_axis(image: np.ndarray, yaw: float, pitch: float, roll: float, bbox: Sequence[float],
              size_ratio: float = 0.5, color: str = "BGR", use_opencv: bool = True) -> None:
    """Draw the head's x (red), y (green) and z (blue) axes at the box centre, in place."""
    c, xe, ye, ze = axis_points(yaw, pitch, roll, bbox, size_ratio)
    draw_line(image, c, xe, _colour(RED, color), 2, use_opencv)
    draw_line(image, c, ye, _colour(GREEN, color), 2, use_opencv)
    draw_line(image, c, ze, _colour(BLUE, color), 2, use_opencv)


def cube_edges(yaw: float, pitch: float, roll: float, bbox: Sequence[float], size: float
               ) -> Iterable[Tuple[Point, Point, Tuple[int, int, int]]]:
    """The 12 edges of the upstream ``draw_cube`` as ``(p0, p1, BGR colour)``.

    The cube's front corner sits half a side up-left of the box centre; its three edge vectors are
    the rotated x, y, z axes scaled by ``size`` (red: the face plane, blue: depth, green: the back).
    """
    y, p, r = np.radians([-float(yaw), float(pitch), float(roll)])
    x_min, y_min, x_max, y_max = bbox[:4]
    tdx, tdy = int(x_min + (x_max - x_min) * 0.5), int(y_min + (y_max - y_min) * 0.5)
    fx, fy = tdx - 0.5 * size, tdy - 0.5 * size
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    x1, y1 = int(size * (cy * cr) + fx), int(size * (cp * sr + cr * sp * sy) + fy)
    x2, y2 = int(size * (-cy * sr) + fx), int(size * (cp * cr - sp * sy * sr) + fy)
    x3, y3 = int(size * sy + fx), int(size * (-cy * sp) + fy)
    fx, fy = int(fx), int(fy)
    a, b, c, o = (x1, y1), (x2, y2), (x3, y3), (fx, fy)

    def add(*pts):  # sum of corners minus (len-1) origins
        return (sum(q[0] for q in pts) - (len(pts) - 1) * fx, sum(q[1] for q in pts) - (len(pts) - 1) * fy)

    return [
        (o, a, RED), (o, b, RED), (b, add(a, b), RED), (a, add(a, b), RED),
        (o, c, BLUE), (a, add(a, c), BLUE), (b, add(b, c), BLUE), (add(a, b), add(a, b, c), BLUE),
        (add(a, c), add(a, b, c), GREEN), (add(b, c), add(a, b, c), GREEN), (c, add(a, c), GREEN),
        (c, add(b, c), GREEN),
    ]


def draw_cube(image: np.ndarray, yaw: float, pitch: float, roll: float, bbox: Sequence[float],
              size: float = 150, color: str = "BGR", use_opencv: bool = True) -> None:
    """Draw the upstream pose cube (12 edges) in place; ``size`` is the cube side in pixels."""
    for p0, p1, col in cube_edges(yaw, pitch, roll, bbox, size):
        draw_line(image, p0, p1, _colour(col, color), 2, use_opencv)


def draw_box(image: np.ndarray, box: Sequence[float], colour: Sequence[int] = BOX_COLOUR, thickness: int = 1,
             use_opencv: bool = True) -> None:
    """Draw a rectangle x1, y1, x2, y2 in place."""
    x1, y1, x2, y2 = (int(v) for v in box[:4])
    for p0, p1 in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        draw_line(image, p0, p1, colour, thickness, use_opencv)


def annotate(image: np.ndarray, faces, mode: str = "axis", color: str = "BGR", use_opencv: bool = True,
             margin: float = POSE_CROP["margin"], labels: bool = True) -> np.ndarray:
    """Draw every face's box and pose on ``image`` in place and return it.

    Parameters
    ----------
    image : ndarray, (H, W, 3), uint8, ``color`` order
    faces : iterable of objects with ``box`` (4,), ``yaw``, ``pitch``, ``roll`` (degrees), ``track_id``
    mode : ``"axis"``, ``"cube"`` or ``"none"`` (box only)
    margin : float
        The crop margin: the axis/cube is placed on the expanded box, as upstream draws it.
    labels : bool
        Write ``#id yaw/pitch/roll`` above each box (OpenCV only; skipped without it).
    """
    if mode not in DRAW_MODES:
        raise InputError(f"draw mode must be one of {', '.join(DRAW_MODES)}, found {mode!r}")
    for f in faces:
        box = np.asarray(f.box, dtype=np.float64)
        draw_box(image, box, _colour(BOX_COLOUR, color), 1, use_opencv)
        ex = expand_box(box, margin)
        if mode == "axis":
            draw_axis(image, f.yaw, f.pitch, f.roll, ex, 0.5, color, use_opencv)
        elif mode == "cube":
            draw_cube(image, f.yaw, f.pitch, f.roll, ex, size=float(int(box[2]) - int(box[0])), color=color,
                      use_opencv=use_opencv)
        if labels and use_opencv and _cv2 is not None:
            text = f"#{f.track_id} y{f.yaw:+.0f} p{f.pitch:+.0f} r{f.roll:+.0f}"
            _cv2.putText(image, text, (int(box[0]), max(int(box[1]) - 4, 10)), _cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                         _colour(BOX_COLOUR, color), 1, _cv2.LINE_AA)
    return image
