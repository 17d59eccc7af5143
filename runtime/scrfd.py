"""SCRFD decoding in vectorised NumPy: anchor centres, distance -> box / keypoints, threshold, NMS.

Reference behaviour: insightface's ``python-package/insightface/model_zoo/scrfd.py`` (anchor centres
per stride in row-major order, ``num_anchors`` consecutive copies per cell, distances multiplied by
the stride, NMS with the ``+1`` pixel area convention). Which tensor is score/bbox/kps at which
stride comes from the manifest, never from output order.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

from .errors import InputError


@lru_cache(maxsize=32)
def anchor_centres(height: int, width: int, stride: int, num_anchors: int) -> np.ndarray:
    """Anchor centres of one stride, (height//stride * width//stride * num_anchors, 2) float32 (x, y).

    Cached: computed once per input size and stride.
    """
    gh, gw = height // stride, width // stride
    ys, xs = np.mgrid[:gh, :gw]
    centres = (np.stack([xs, ys], axis=-1).astype(np.float32) * stride).reshape(-1, 2)
    if num_anchors > 1:
        centres = np.repeat(centres, num_anchors, axis=0)
    centres.setflags(write=False)
    return centres


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression (insightface convention: areas with +1).

    Parameters
    ----------
    boxes : ndarray, (N, 4), x1, y1, x2, y2
    scores : ndarray, (N,)
    threshold : float
        IoU above which the lower-scored box is dropped.

    Returns
    -------
    ndarray, (K,), int64: indices of kept boxes, highest score first
    """
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter)
        order = rest[iou <= threshold]
    return np.asarray(keep, dtype=np.int64)


def decode_scrfd(outputs: Mapping[Tuple[str, int], np.ndarray], input_size: Tuple[int, int],
                 strides: Sequence[int] = (8, 16, 32), num_anchors: int = 2,
                 score_threshold: float = 0.5, nms_threshold: float = 0.4,
                 scale: float = 1.0, max_faces: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Turn raw SCRFD outputs into faces.

    Parameters
    ----------
    outputs : mapping
        ``(role, stride) -> array`` with roles ``score`` (N, 1) or (1, N, 1), ``bbox`` (.., N, 4),
        ``kps`` (.., N, 10) (optional); float32 in detector-input pixels / stride units.
    input_size : (height, width)
        Detector input size in pixels.
    scale : float
        Letterbox scale (resized / original); coordinates are divided by it.
    max_faces : int
        Keep at most this many (largest-score first); 0 keeps all.

    Returns
    -------
    dets : ndarray, (K, 5), float32
        x1, y1, x2, y2, score in frame pixels, highest score first.
    kps : ndarray, (K, 5, 2), float32
        The five keypoints (eyes, nose, mouth corners) in frame pixels; zeros if absent.
    """
    h, w = input_size
    all_scores, all_boxes, all_kps = [], [], []
    for s in strides:
        scores = np.asarray(outputs[("score", s)], np.float32).reshape(-1)
        dist = np.asarray(outputs[("bbox", s)], np.float32).reshape(-1, 4)
        centres = anchor_centres(h, w, s, num_anchors)
        if centres.shape[0] != scores.shape[0]:
            raise InputError(f"SCRFD stride {s}: {scores.shape[0]} scores for {centres.shape[0]} anchors "
                             f"of a {w}x{h} input; the manifest's input size does not match the model")
        pos = np.nonzero(scores >= score_threshold)[0]
        if pos.size == 0:
            continue
        c = centres[pos]
        d = dist[pos] * s
        all_boxes.append(np.concatenate([c - d[:, :2], c + d[:, 2:]], axis=1))
        all_scores.append(scores[pos])
        if ("kps", s) in outputs:
            k = np.asarray(outputs[("kps", s)], np.float32).reshape(-1, 10)[pos] * s
            all_kps.append((k.reshape(-1, 5, 2) + c[:, None, :]))
        else:
            all_kps.append(np.zeros((pos.size, 5, 2), np.float32))
    if not all_scores:
        return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
    scores = np.concatenate(all_scores)
    boxes = np.concatenate(all_boxes) / scale
    kps = np.concatenate(all_kps) / scale
    keep = nms(boxes, scores, nms_threshold)
    if max_faces and keep.size > max_faces:
        keep = keep[:max_faces]
    dets = np.concatenate([boxes[keep], scores[keep, None]], axis=1).astype(np.float32)
    return dets, kps[keep].astype(np.float32)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of (N, >=4) and (M, >=4) x1, y1, x2, y2 boxes -> (N, M), plain areas (no +1)."""
    a = np.asarray(a, np.float64)[:, :4]
    b = np.asarray(b, np.float64)[:, :4]
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def outputs_by_role(named: Dict[str, np.ndarray], roles: Mapping[str, Tuple[str, int]]) -> Dict[Tuple[str, int], np.ndarray]:
    """Re-key ``tensor name -> array`` as ``(role, stride) -> array`` using the manifest's roles."""
    return {roles[name]: arr for name, arr in named.items() if name in roles}
