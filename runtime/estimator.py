"""The embeddable API: frames in, tracked faces with head pose out.

Example
-------
::

    import cv2
    from headpose.runtime.estimator import EstimatorOptions, HeadPoseEstimator

    opts = EstimatorOptions(threads=4, detect_every=3)
    with HeadPoseEstimator.from_artifacts("weights/exports/scrfd_500m-640-tflite-int8",
                                          "weights/exports/mobilenetv3_small-224-tflite-int8", opts) as hpe:
        for face in hpe.estimate(cv2.imread("group.jpg")):
            print(face.track_id, face.yaw, face.pitch, face.roll)

One :meth:`HeadPoseEstimator.estimate` call: (every ``detect_every``-th frame) SCRFD detection and
IoU tracking, else the tracks' boxes carried from the last detection; then the pose of ALL faces in
one batched interpreter call; then (optionally) a One-Euro filter per track on the rotation.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple, Union

import numpy as np

from .detector import FaceDetector
from .draw import DRAW_MODES, annotate
from .errors import HeadposeError, InputError
from .pose import PoseEstimator
from .preprocess import as_three_channels
from .rotation import euler_from_rotation
from .smoothing import RotationSmoother
from .tracking import IoUTracker

log = logging.getLogger(__name__)

STAGES = ("detector_preprocess", "detector", "decode", "crop", "pose", "smoothing")


@dataclass
class EstimatorOptions:
    """Options of :class:`HeadPoseEstimator`; each maps 1:1 to a ``headpose run`` flag.

    Attributes
    ----------
    threads : int
        Interpreter CPU threads for both models (``--threads``), >= 1.
    xnnpack : bool
        Run the models with the XNNPACK delegate (``--no-xnnpack`` turns it off), default True.
    detect_every : int
        Run the detector on every N-th frame and carry the tracked boxes in between
        (``--detect-every``), >= 1; 1 detects on every frame.
    smooth : bool
        One-Euro filter each track's rotation over time (``--no-smooth`` turns it off).
    max_faces : int
        Keep at most this many faces per frame, highest detection score first; 0 = all (``--max-faces``).
    score_threshold : float or None
        Detection score threshold in 0..1; None uses the detector manifest's (``--score-threshold``).
    use_opencv : bool
        Use OpenCV for resizing when installed (faster; same geometry as the NumPy path, crops
        within 1 grey level) - ``--no-opencv`` forces the NumPy path. The maths never needs OpenCV.
    draw : str
        How :meth:`HeadPoseEstimator.annotate` draws a pose: ``axis``, ``cube`` or ``none`` (``--draw``).
    detector_threads, pose_threads : int or None
        Interpreter threads of the detector / the pose model when they differ from ``threads``
        (None = ``threads``); ``headpose run --pipelined`` splits ``--threads`` between them
        (:func:`headpose.runtime.pipelined.split_threads`).
    """

    threads: int = 1
    xnnpack: bool = True
    detect_every: int = 1
    smooth: bool = True
    max_faces: int = 0
    score_threshold: Optional[float] = None
    use_opencv: bool = True
    draw: str = "axis"
    detector_threads: Optional[int] = None
    pose_threads: Optional[int] = None

    def validate(self) -> "EstimatorOptions":
        """Raise :class:`InputError` for out-of-range values; returns self."""
        if int(self.threads) < 1:
            raise InputError(f"threads must be >= 1, found {self.threads}")
        for name in ("detector_threads", "pose_threads"):
            v = getattr(self, name)
            if v is not None and int(v) < 1:
                raise InputError(f"{name} must be >= 1 (or None = threads), found {v}")
        if int(self.detect_every) < 1:
            raise InputError(f"detect_every must be >= 1, found {self.detect_every}")
        if int(self.max_faces) < 0:
            raise InputError(f"max_faces must be >= 0 (0 = all), found {self.max_faces}")
        if self.score_threshold is not None and not 0.0 <= float(self.score_threshold) <= 1.0:
            raise InputError(f"score_threshold must be in 0..1, found {self.score_threshold}")
        if self.draw not in DRAW_MODES:
            raise InputError(f"draw must be one of {', '.join(DRAW_MODES)}, found {self.draw!r}")
        return self


@dataclass
class Face:
    """One face of one frame.

    Attributes
    ----------
    track_id : int
        Stable id across frames (1, 2, ...).
    box : ndarray, (4,), float32: x1, y1, x2, y2 in frame pixels
    score : float: detection score 0..1 (of the last detection when the box was carried)
    keypoints : ndarray, (5, 2), float32: eyes, nose, mouth corners in frame pixels
    yaw, pitch, roll : float, degrees (yaw about y, pitch about x, roll about z; R = Rz·Ry·Rx)
    rotation : ndarray, (3, 3), float64: the head rotation matrix the angles come from
    """

    track_id: int
    box: np.ndarray
    score: float
    keypoints: np.ndarray
    yaw: float
    pitch: float
    roll: float
    rotation: np.ndarray = field(repr=False)

    def to_dict(self) -> dict:
        """The JSONL face record: ``track_id, box, score, keypoints, yaw, pitch, roll`` (plain JSON types)."""
        return {
            "track_id": int(self.track_id),
            "box": [round(float(v), 2) for v in np.asarray(self.box).reshape(-1)[:4]],
            "score": round(float(self.score), 4),
            "keypoints": [[round(float(x), 2), round(float(y), 2)] for x, y in np.asarray(self.keypoints).reshape(5, 2)],
            "yaw": round(float(self.yaw), 4),
            "pitch": round(float(self.pitch), 4),
            "roll": round(float(self.roll), 4),
        }


class HeadPoseEstimator:
    """Detector + tracker + batched pose + smoothing over two TFLite artifacts.

    Parameters
    ----------
    detector : FaceDetector
    pose : PoseEstimator
    options : EstimatorOptions, optional

    Attributes
    ----------
    last_timings : dict
        ms of the last :meth:`estimate` per stage: ``detector_preprocess``, ``detector``, ``decode``,
        ``crop``, ``pose``, ``smoothing`` (0 for a stage that was skipped).
    frame_index : int
        Frames seen since construction / :meth:`reset`.
    """

    def __init__(self, detector: FaceDetector, pose: PoseEstimator, options: Optional[EstimatorOptions] = None):
        if options is not None and not isinstance(options, EstimatorOptions):
            raise InputError(f"options must be an EstimatorOptions (e.g. EstimatorOptions(threads=4)) or None, "
                             f"found {type(options).__name__} {options!r}")
        self.options = (options or EstimatorOptions()).validate()
        self.detector = detector
        self.pose = pose
        self.tracker = IoUTracker()
        self.smoothers: Dict[int, RotationSmoother] = {}
        self.last_timings: Dict[str, float] = {k: 0.0 for k in STAGES}
        self.frame_index = 0
        self._frame_shape = None

    @classmethod
    def from_artifacts(cls, detector: Union[str, os.PathLike, FaceDetector],
                       pose: Union[str, os.PathLike, PoseEstimator],
                       options: Optional[EstimatorOptions] = None) -> "HeadPoseEstimator":
        """Load both artifacts (directories holding ``manifest.json``).

        Raises
        ------
        ManifestError
            Missing or malformed manifest, or an artifact of the wrong task (a pose model as detector).
        """
        if options is not None and not isinstance(options, EstimatorOptions):
            raise InputError(f"options must be an EstimatorOptions (e.g. EstimatorOptions(threads=4)) or None, "
                             f"found {type(options).__name__} {options!r}")
        o = (options or EstimatorOptions()).validate()
        det = detector if isinstance(detector, FaceDetector) else FaceDetector(
            detector, o.detector_threads or o.threads, o.xnnpack, o.score_threshold, o.max_faces, o.use_opencv)
        pse = pose if isinstance(pose, PoseEstimator) else PoseEstimator(pose, o.pose_threads or o.threads, o.xnnpack,
                                                                         o.use_opencv)
        return cls(det, pse, o)

    # -- per frame ----------------------------------------------------------------------------
    def estimate(self, frame: np.ndarray, color: str = "BGR", timestamp: Optional[float] = None) -> List[Face]:
        """Faces and head poses of one frame (frames of a stream in order).

        Parameters
        ----------
        frame : ndarray, (H, W, 3) uint8 in ``color`` order; grey (H, W) / (H, W, 1) and 4-channel
            (alpha dropped) frames are accepted; float frames in 0..1 are scaled by 255, other
            float/integer frames must lie in 0..255 (a uint16 image raises :class:`InputError`)
        color : ``"BGR"`` (OpenCV) or ``"RGB"``
        timestamp : float, optional
            Seconds, for the smoothing filter; ``time.monotonic()`` when omitted.

        Returns
        -------
        list of Face, highest detection score first

        Raises
        ------
        InputError
            A frame that is not an image, or an unknown colour order.
        """
        frame, color = self.prepare(frame, color)
        found = self.detect_stage(frame, color) if self.frame_index % self.options.detect_every == 0 else None
        return self.track_and_pose(frame, color, found, timestamp)

    # -- the two halves of estimate(), for the pipelined runner (runtime/pipelined.py) -----------------
    def prepare(self, frame: np.ndarray, color: str = "BGR"):
        """Check a frame and its colour order: ``(frame as (H, W, 3) uint8, "BGR" | "RGB")``.

        Raises
        ------
        InputError
            A frame that is not an image, or an unknown colour order.
        """
        self._check_open()
        if not isinstance(color, str) or color.upper() not in ("BGR", "RGB"):
            raise InputError(f"color must be 'BGR' or 'RGB', found {color!r}")
        return as_three_channels(frame), color.upper()

    def detect_stage(self, frame: np.ndarray, color: str = "BGR") -> Tuple[np.ndarray, np.ndarray, Dict[str, float]]:
        """The detector half of :meth:`estimate`: it touches no tracking state, so it may run on
        another thread, frames ahead of :meth:`track_and_pose`.

        Parameters
        ----------
        frame : ndarray, (H, W, 3) uint8 (from :meth:`prepare`)
        color : ``"BGR"`` or ``"RGB"``

        Returns
        -------
        dets : ndarray, (K, 5), float32: x1, y1, x2, y2, score in frame pixels
        kps : ndarray, (K, 5, 2), float32
        timings : dict, ms of ``detector_preprocess``, ``detector``, ``decode``
        """
        dets, kps = self.detector.detect(frame, color)
        return dets, kps, dict(self.detector.last_timings)

    def track_and_pose(self, frame: np.ndarray, color: str, found, timestamp: Optional[float] = None) -> List[Face]:
        """The in-order half of :meth:`estimate`: tracking, batched pose, smoothing, Euler angles.

        Parameters
        ----------
        frame : ndarray, (H, W, 3) uint8 (from :meth:`prepare`)
        color : ``"BGR"`` or ``"RGB"``
        found : ``(dets, kps, timings)`` of :meth:`detect_stage` for this frame, or None on a frame
            whose boxes are carried (``frame_index % detect_every != 0``)
        timestamp : float, optional, seconds (smoothing); ``time.monotonic()`` when omitted

        Frames must come in stream order, one call each (the tracker and the filters are state).
        """
        timings = {k: 0.0 for k in STAGES}
        if self._frame_shape is not None and frame.shape[:2] != self._frame_shape:
            log.info("frame size changed from %s to %s: tracks restart", self._frame_shape, frame.shape[:2])
            self._reset_tracks()
        self._frame_shape = frame.shape[:2]

        if found is not None:
            dets, kps, det_timings = found
            timings.update(det_timings)
            tracks = self.tracker.update(dets, kps)
            for tid in self.tracker.dropped:
                self.smoothers.pop(tid, None)
        else:
            tracks = self.tracker.carried()
        self.frame_index += 1

        faces: List[Face] = []
        if tracks:
            boxes = np.stack([t.box for t in tracks])
            rots, _, kept = self.pose.estimate(frame, boxes, color)
            timings.update(self.pose.last_timings)
            t0 = time.perf_counter()
            if self.options.smooth and len(kept):
                ts = time.monotonic() if timestamp is None else float(timestamp)
                rots = np.stack([self.smoothers.setdefault(tracks[i].track_id, RotationSmoother())(r, ts)
                                 for i, r in zip(kept, rots)])
                timings["smoothing"] = (time.perf_counter() - t0) * 1e3
            eul = euler_from_rotation(rots).reshape(-1, 3)
            for j, i in enumerate(kept):
                t = tracks[i]
                faces.append(Face(t.track_id, t.box.astype(np.float32).copy(), float(t.score),
                                  t.keypoints.astype(np.float32).copy(), yaw=float(eul[j, 1]),
                                  pitch=float(eul[j, 0]), roll=float(eul[j, 2]), rotation=rots[j].copy()))
        self.last_timings = timings
        return faces

    def annotate(self, frame: np.ndarray, faces: List[Face], color: str = "BGR") -> np.ndarray:
        """Draw the faces on ``frame`` in place (``options.draw``) and return it."""
        self._check_open()
        return annotate(frame, faces, self.options.draw, color, self.options.use_opencv, self.pose.margin)

    # -- state --------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.detector is None:
            raise HeadposeError("this HeadPoseEstimator was closed; create a new one with from_artifacts()")

    def _reset_tracks(self) -> None:
        self.tracker.reset()
        self.smoothers.clear()

    def reset(self) -> None:
        """Forget tracks, smoothing state and the frame count (start of a new stream)."""
        self._reset_tracks()
        self.frame_index = 0
        self._frame_shape = None
        self.last_timings = {k: 0.0 for k in STAGES}

    def close(self) -> None:
        """Release the interpreters; the estimator cannot be used afterwards."""
        for part in (self.detector, self.pose):
            if part is not None and getattr(part, "model", None) is not None:
                part.model.interpreter = None
                part.model = None
        self.detector = self.pose = None  # type: ignore[assignment]

    def __enter__(self) -> "HeadPoseEstimator":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False
