"""Face tracking by box overlap: stable ids across frames, boxes carried between detections.

:class:`IoUTracker` associates each frame's detections with the live tracks greedily by IoU
(highest overlap first, at least ``iou_threshold``); an unmatched detection starts a new track with
the next id, a track unmatched for more than ``max_missed`` detection rounds is dropped. Between
detections (``--detect-every N``), :meth:`IoUTracker.carried` returns the tracks seen at the last
detection with their last boxes, so the pose model still sees every face on every frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

import numpy as np

from .errors import InputError
from .scrfd import box_iou


@dataclass
class Track:
    """One tracked face.

    Attributes
    ----------
    track_id : int
        Stable id, 1, 2, 3... in order of appearance (never reused within a run).
    box : ndarray, (4,), float32
        Last detected x1, y1, x2, y2 in frame pixels.
    score : float
        Last detection score.
    keypoints : ndarray, (5, 2), float32
        Last detected keypoints in frame pixels.
    hits : int
        Number of detections matched to this track.
    missed : int
        Consecutive detection rounds without a match (0 = seen at the last detection).
    """

    track_id: int
    box: np.ndarray
    score: float
    keypoints: np.ndarray
    hits: int = 1
    missed: int = 0
    extra: dict = field(default_factory=dict)


class IoUTracker:
    """Greedy IoU association of detections to tracks.

    Parameters
    ----------
    iou_threshold : float
        Minimum IoU for a detection to continue a track (0..1).
    max_missed : int
        A track survives this many consecutive detection rounds without a match (so a face missed
        by the detector once keeps its id); it is not reported while unmatched.
    """

    def __init__(self, iou_threshold: float = 0.3, max_missed: int = 2):
        if not 0.0 <= iou_threshold <= 1.0 or max_missed < 0:
            raise InputError(f"tracker expects 0 <= iou_threshold <= 1 and max_missed >= 0, found "
                             f"{iou_threshold}, {max_missed}")
        self.iou_threshold = float(iou_threshold)
        self.max_missed = int(max_missed)
        self.reset()

    def reset(self) -> None:
        """Drop every track and restart ids at 1."""
        self.tracks: List[Track] = []
        self.next_id = 1
        self.dropped: List[int] = []
        self.last_detected: List[Track] = []

    def update(self, dets: np.ndarray, keypoints: np.ndarray) -> List[Track]:
        """Associate one frame's detections.

        Parameters
        ----------
        dets : ndarray, (K, 5): x1, y1, x2, y2, score (frame pixels)
        keypoints : ndarray, (K, 5, 2)

        Returns
        -------
        list of Track, length K: the track of each detection, in detection order. Ids of tracks
        dropped by this call are in ``self.dropped`` until the next call.
        """
        dets = np.asarray(dets, np.float32).reshape(-1, 5)
        keypoints = np.asarray(keypoints, np.float32).reshape(-1, 5, 2)
        assigned: List[Track] = [None] * len(dets)  # type: ignore[list-item]
        matched_tracks = set()
        if self.tracks and len(dets):
            iou = box_iou(dets[:, :4], np.stack([t.box for t in self.tracks]))
            pairs = np.argwhere(iou >= self.iou_threshold)
            order = np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")
            for d, t in pairs[order]:
                if assigned[d] is not None or t in matched_tracks:
                    continue
                tr = self.tracks[t]
                tr.box, tr.score, tr.keypoints = dets[d, :4].copy(), float(dets[d, 4]), keypoints[d].copy()
                tr.hits += 1
                tr.missed = 0
                assigned[d] = tr
                matched_tracks.add(int(t))
        survivors, self.dropped = [], []
        for i, tr in enumerate(self.tracks):
            if i not in matched_tracks:
                tr.missed += 1
                if tr.missed > self.max_missed:
                    self.dropped.append(tr.track_id)
                    continue
            survivors.append(tr)
        for d in range(len(dets)):
            if assigned[d] is None:
                tr = Track(self.next_id, dets[d, :4].copy(), float(dets[d, 4]), keypoints[d].copy())
                self.next_id += 1
                survivors.append(tr)
                assigned[d] = tr
        self.tracks = survivors
        self.last_detected = list(assigned)
        return assigned

    def carried(self) -> List[Track]:
        """Tracks matched at the last detection, in that detection's order (highest score first), with
        their last boxes (for frames without detection)."""
        return [t for t in self.last_detected if t.missed == 0]
