"""Where results go: annotated video, JSON lines, CSV, a window.

File sinks write under a temporary name beside the target (``.out.mp4.partial.mp4``) and rename it
into place on :meth:`Sink.close`; the CLI closes them in a ``finally`` block, so a run ended by
Ctrl-C, SIGTERM or SIGHUP still leaves complete files with every frame processed so far. JSONL and
CSV lines are flushed per frame. What is published:

- only a complete file: a sink that could not write (disk full, I/O error) or a video that cannot be
  read back with as many frames as were written removes its temporary file and raises
  :class:`SinkError`; the previous file at the target, if any, is left as it was;
- nothing from a run that wrote no frame (it failed before its first one): the previous file stays;
- a symlink target is written through (the file it points to is replaced, the link stays); ``-``
  (``--jsonl -``/``--csv -``) and special files (``/dev/stdout``, a FIFO) are written directly.

Targets are checked when the sink is created, before the first frame: the folder must exist and be
writable, the target must not be a folder; :func:`check_outputs` refuses outputs that overlap each
other or the source.

JSONL: one record per frame ``{"frame": i, "time_ms": ms, "faces": [face.to_dict(), ...]}``.
CSV: one row per face (``frame, time_ms, track_id, x1, y1, x2, y2, score, yaw, pitch, roll,
kp0_x, kp0_y ... kp4_y``); a frame without faces gives no row.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import logging
import os
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

CSV_COLUMNS = (["frame", "time_ms", "track_id", "x1", "y1", "x2", "y2", "score", "yaw", "pitch", "roll"]
               + [f"kp{i}_{a}" for i in range(5) for a in "xy"])


class SinkError(InputError):
    """An output that cannot be written (folder missing or read-only, disk full, no display, codec unavailable)."""


STDOUT = "-"


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial{path.suffix}")


def _is_special(path: Path) -> bool:
    """A character device, FIFO or socket (a named pipe), or anything under ``/dev/`` or ``/proc/``
    (``/dev/stdout`` may lead to a file the shell redirected to): written in place, never renamed."""
    if str(path).startswith(("/dev/", "/proc/")):
        return True
    try:
        return path.exists() and not path.is_file() and not path.is_dir()
    except OSError:
        return False


def _target(path, flag: str) -> Path:
    """The file a sink writes, checked before the first frame: symlinks resolved, folder writable.

    Raises
    ------
    SinkError
        The target is a folder, its folder does not exist or cannot be written.
    """
    path = Path(path)
    if _is_special(path):  # before resolving: /dev/stdout is a link to /proc/self/fd/1
        return path
    if path.is_symlink():
        path = path.resolve()  # write through the link: the file it points to is replaced
    if path.is_dir():
        raise SinkError(f"{flag} '{path}' is a folder: expected a file name, e.g. {path / ('out' + path.suffix)}")
    if not path.parent.is_dir():
        raise SinkError(f"cannot write '{path}': folder '{path.parent}' does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise SinkError(f"cannot write '{path}': folder '{path.parent}' is not writable (read-only or no "
                        f"permission); choose another folder for {flag}")
    return path


def _write_error(path: Path, e: OSError) -> SinkError:
    """One clear line for a failed write; the disk-full case says so and how much space is left."""
    if e.errno == errno.ENOSPC:
        try:
            st = os.statvfs(path.parent)
            free = st.f_bavail * st.f_frsize
        except OSError:
            free = 0
        return SinkError(f"cannot write '{path}': the disk is full ({free} bytes free in '{path.parent}'); "
                         f"free some space or write elsewhere; nothing was published there")
    return SinkError(f"cannot write '{path}': {e.strerror or e}; nothing was published there")


def check_outputs(outputs: Dict[str, Optional[str]], source: Optional[str] = None) -> None:
    """Refuse output paths that name the same file, or the source (``--output`` = ``--source``).

    Parameters
    ----------
    outputs : dict
        Flag -> path (None when the flag is not given); ``-`` is stdout.
    source : str, optional
        The ``--source`` (compared when it is an existing file).

    Raises
    ------
    SinkError
        Naming the two flags that collide.
    """
    def key(p: str):
        if p == STDOUT:
            return STDOUT
        q = Path(p)
        return q.resolve() if not q.exists() else (q.stat().st_dev, q.stat().st_ino)

    seen = {}
    if source is not None and Path(str(source)).is_file():
        seen[key(str(source))] = "--source"
    for flag, p in outputs.items():
        if not p:
            continue
        k = key(str(p))
        if k in seen:
            raise SinkError(f"{flag} '{p}' is the same file as {seen[k]}: give every output its own file "
                            f"(and never the source)")
        seen[k] = flag


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


class _FileSink(Sink):
    """A file written under a temporary name and published by :meth:`_publish` (see the module docstring)."""

    flag = "output"

    def _setup(self, path) -> None:
        self.stdout = str(path) == STDOUT
        self.path = Path("<stdout>") if self.stdout else _target(path, self.flag)
        self.direct = self.stdout or _is_special(self.path)
        self.tmp = self.path if self.direct else _partial(self.path)
        self.frames = 0
        self.failed = False

    def _discard(self) -> None:
        if not self.direct:
            try:
                os.unlink(self.tmp)
            except FileNotFoundError:
                pass

    def _publish(self) -> bool:
        """Rename the finished temporary file into place; False (file removed) when no frame was written."""
        if self.direct:
            return True
        if self.frames == 0:
            self._discard()
            log.info("no frame was written: %s left as it was", self.path)
            return False
        try:
            os.replace(self.tmp, self.path)
        except OSError as e:
            self._discard()
            raise _write_error(self.path, e) from None
        return True


class _TextSink(_FileSink):
    def __init__(self, path):
        self._setup(path)
        if self.stdout:
            self.f = sys.stdout
        else:
            try:
                # in place: append, so that a shell redirect behind /dev/stdout is neither truncated nor overwritten
                self.f = open(self.tmp, "a" if self.direct else "w", newline="")
            except OSError as e:
                raise _write_error(self.path, e) from None

    def _emit(self, text: str) -> None:
        try:
            self.f.write(text)
            self.f.flush()
        except OSError as e:
            self.failed = True
            raise _write_error(self.path, e) from None

    def close(self) -> None:
        if self.f is None:
            return
        f, self.f = self.f, None
        error = None
        try:
            f.flush()
            if not self.direct:
                os.fsync(f.fileno())  # the data is on disk before the name is
        except OSError as e:
            error = e
        if not self.stdout:
            try:
                f.close()
            except OSError as e:
                error = error or e
        if self.failed or error is not None:
            self._discard()
            if not self.failed:  # a failed write has raised already
                self.failed = True
                raise _write_error(self.path, error) from None
            return
        if self._publish():
            log.info("wrote %s", self.path)


class JsonlSink(_TextSink):
    """JSON lines, one record per frame; ``-`` writes them to stdout."""

    flag = "--jsonl"

    def write(self, index, time_ms, faces, image=None) -> bool:
        rec = {"frame": int(index), "time_ms": round(float(time_ms), 3), "faces": [f.to_dict() for f in faces]}
        self._emit(json.dumps(rec) + "\n")
        self.frames += 1
        return True


class CsvSink(_TextSink):
    """CSV, one row per face (see the module docstring for the columns); ``-`` writes to stdout."""

    flag = "--csv"

    def __init__(self, path):
        super().__init__(path)
        self.buf = io.StringIO()
        self.w = csv.writer(self.buf)
        self.w.writerow(CSV_COLUMNS)

    def write(self, index, time_ms, faces, image=None) -> bool:
        for f in faces:
            d = f.to_dict()
            self.w.writerow([int(index), round(float(time_ms), 3), d["track_id"], *d["box"], d["score"], d["yaw"],
                             d["pitch"], d["roll"], *np.asarray(d["keypoints"]).reshape(-1).tolist()])
        text = self.buf.getvalue()
        self.buf.seek(0)
        self.buf.truncate()
        self._emit(text)
        self.frames += 1
        return True


class VideoSink(_FileSink):
    """Annotated video through OpenCV's ``VideoWriter`` (``mp4v`` for .mp4/.mov, ``MJPG`` for .avi).

    The writer opens at the first frame (its size fixes the video's size); frames of another size
    are resized to it. On :meth:`close` the video is read back (frame count, first and last frame)
    before it is published: OpenCV's writer reports no write error, so a disk that filled up would
    otherwise publish a video that does not play.
    """

    flag = "--output"

    def __init__(self, path, fps: float = 25.0):
        try:
            import cv2
        except ImportError:
            raise SinkError("--output needs OpenCV: pip install 'headpose-edge[video]'") from None
        self.cv2 = cv2
        if str(path) == STDOUT or _is_special(Path(path)):
            raise SinkError(f"--output '{path}' is not a regular file: a video is written to a file (.mp4 or .avi)")
        self._setup(path)
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self.writer = None
        self.size = None
        self.closed = False

    def write(self, index, time_ms, faces, image) -> bool:
        if self.writer is None:
            h, w = image.shape[:2]
            fourcc = self.cv2.VideoWriter_fourcc(*("MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"))
            self.writer = self.cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (w, h))
            if not self.writer.isOpened():
                self.failed = True
                raise SinkError(f"cannot write video '{self.path}': OpenCV has no encoder for "
                                f"'{self.path.suffix}'; use .mp4 or .avi")
            self.size = (w, h)
        if (image.shape[1], image.shape[0]) != self.size:
            image = self.cv2.resize(image, self.size)
        self.writer.write(np.ascontiguousarray(image))
        self.frames += 1
        return True

    def _readable_frames(self) -> int:
        """Frames the finished file holds by its index, 0 unless its first and last frame decode."""
        cap = self.cv2.VideoCapture(str(self.tmp))
        try:
            n = int(cap.get(self.cv2.CAP_PROP_FRAME_COUNT) or 0) if cap.isOpened() else 0
            if n <= 0 or not cap.read()[0]:
                return 0
            cap.set(self.cv2.CAP_PROP_POS_FRAMES, n - 1)
            return n if cap.read()[0] else 0
        finally:
            cap.release()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.writer is not None:
            self.writer.release()
        if self.failed or self.frames == 0:
            self._discard()
            return
        n = self._readable_frames()
        if n != self.frames:
            try:
                st = os.statvfs(self.path.parent)
                free = st.f_bavail * st.f_frsize
            except OSError:
                free = None
            self._discard()
            why = f" (the disk is full: {free} bytes free in '{self.path.parent}')" if free is not None and \
                free < (1 << 20) else ""
            raise SinkError(f"cannot write video '{self.path}': {self.frames} frames were written but the file "
                            f"reads back {n}{why}; nothing was published there")
        self._publish()
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
