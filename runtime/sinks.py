"""Where results go: annotated video, JSON lines, CSV, a window.

File sinks write under a temporary name beside the target (``.out.mp4.partial.mp4``) and rename it
into place on :meth:`Sink.close`; the CLI closes them in a ``finally`` block, so a run ended by
Ctrl-C still leaves complete files with every frame processed so far. JSONL and CSV lines are
flushed per frame.

JSONL: one record per frame ``{"frame": i, "time_ms": ms, "faces": [face.to_dict(), ...]}``.
CSV: one row per face (``frame, time_ms, track_id, x1, y1, x2, y2, score, yaw, pitch, roll,
kp0_x, kp0_y ... kp4_y``); a frame without faces gives no row.
"""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

CSV_COLUMNS = (["frame", "time_ms", "track_id", "x1", "y1", "x2", "y2", "score", "yaw", "pitch", "roll"]
               + [f"kp{i}_{a}" for i in range(5) for a in "xy"])


class SinkError(InputError):
    """An output that cannot be written (folder missing, no display, codec unavailable)."""


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial{path.suffix}")


def _check_parent(path: Path) -> None:
    if not path.parent.exists():
        raise SinkError(f"cannot write '{path}': folder '{path.parent}' does not exist")


class Sink:
    """Base class. ``write`` returns False when the user asked to stop (window closed)."""

    def write(self, index: int, time_ms: float, faces: Sequence, image: Optional[np.ndarray]) -> bool:
        raise NotImplementedError  # pragma: no cover

    def close(self) -> None:
        """Finish the output (rename the temporary file into place); safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class _TextSink(Sink):
    def __init__(self, path):
        self.path = Path(path)
        _check_parent(self.path)
        self.tmp = _partial(self.path)
        self.f = open(self.tmp, "w", newline="")

    def close(self) -> None:
        if self.f is None:
            return
        self.f.close()
        self.f = None
        os.replace(self.tmp, self.path)
        log.info("wrote %s", self.path)


class JsonlSink(_TextSink):
    """JSON lines, one record per frame."""

    def write(self, index, time_ms, faces, image=None) -> bool:
        rec = {"frame": int(index), "time_ms": round(float(time_ms), 3), "faces": [f.to_dict() for f in faces]}
        self.f.write(json.dumps(rec) + "\n")
        self.f.flush()
        return True


class CsvSink(_TextSink):
    """CSV, one row per face (see the module docstring for the columns)."""

    def __init__(self, path):
        super().__init__(path)
        self.w = csv.writer(self.f)
        self.w.writerow(CSV_COLUMNS)

    def write(self, index, time_ms, faces, image=None) -> bool:
        for f in faces:
            d = f.to_dict()
            self.w.writerow([int(index), round(float(time_ms), 3), d["track_id"], *d["box"], d["score"], d["yaw"],
                             d["pitch"], d["roll"], *np.asarray(d["keypoints"]).reshape(-1).tolist()])
        self.f.flush()
        return True


class VideoSink(Sink):
    """Annotated video through OpenCV's ``VideoWriter`` (``mp4v`` for .mp4/.mov, ``MJPG`` for .avi).

    The writer opens at the first frame (its size fixes the video's size); frames of another size
    are resized to it.
    """

    def __init__(self, path, fps: float = 25.0):
        try:
            import cv2
        except ImportError:
            raise SinkError("--output needs OpenCV: pip install 'headpose-edge[video]'") from None
        self.cv2 = cv2
        self.path = Path(path)
        _check_parent(self.path)
        self.tmp = _partial(self.path)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.writer = None
        self.size = None
        self.frames = 0
        self.closed = False

    def write(self, index, time_ms, faces, image) -> bool:
        if self.writer is None:
            h, w = image.shape[:2]
            fourcc = self.cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
            self.writer = self.cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (w, h))
            if not self.writer.isOpened():
                raise SinkError(f"cannot write video '{self.path}': OpenCV has no encoder for "
                                f"'{self.path.suffix}'; use .mp4 or .avi")
            self.size = (w, h)
        if (image.shape[1], image.shape[0]) != self.size:
            image = self.cv2.resize(image, self.size)
        self.writer.write(np.ascontiguousarray(image))
        self.frames += 1
        return True

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.writer is not None:
            self.writer.release()
            os.replace(self.tmp, self.path)
            log.info("wrote %s (%d frames)", self.path, self.frames)


class WindowSink(Sink):
    """A window (``cv2.imshow``); ``q`` or Esc stops the run."""

    def __init__(self, title: str = "headpose"):
        try:
            import cv2
        except ImportError:
            raise SinkError("--show needs OpenCV with GUI support: pip install opencv-python") from None
        self.cv2 = cv2
        self.title = title
        self.opened = False

    def write(self, index, time_ms, faces, image) -> bool:
        try:
            self.cv2.imshow(self.title, image)
            self.opened = True
            key = self.cv2.waitKey(1) & 0xFF
        except self.cv2.error as e:
            raise SinkError(f"--show cannot open a window ({str(e).strip().splitlines()[-1]}): is there a "
                            f"display, and OpenCV with GUI support (opencv-python, not -headless)?") from None
        return key not in (ord("q"), 27)

    def close(self) -> None:
        if self.opened:
            try:
                self.cv2.destroyWindow(self.title)
            except self.cv2.error:
                pass
            self.opened = False
