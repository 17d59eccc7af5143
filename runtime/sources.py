"""Frame sources: Raspberry Pi camera, OpenCV camera, video file, network stream, image, folder.

:func:`open_source` turns the ``--source`` string into a :class:`FrameSource`:

=========================  =====================================================================
``picamera``               Raspberry Pi camera via picamera2 (``apt install python3-picamera2``)
``0``, ``1`` ...           OpenCV camera index (USB webcam)
``rtsp://``, ``http(s)://``  network stream (OpenCV/FFmpeg)
an image file              one frame (``.jpg .jpeg .png .bmp .webp``)
a folder                   every image in it, sorted by name
any other file             a video file (OpenCV/FFmpeg)
=========================  =====================================================================

Iterating a source yields :class:`Frame` objects (index, BGR ``uint8`` image, timestamp in
seconds). Live sources (cameras, streams) that fail to deliver a frame, or deliver an empty one,
are retried ``retries`` times (re-opened after a pause); then a :class:`SourceError` ends the run
with a clear message. A video file simply ends at its last readable frame.
OpenCV is needed for everything except picamera2.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np

from .errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
URL_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
DEFAULT_RETRIES = 5
DEFAULT_RETRY_DELAY = 0.5  # seconds, doubled after each failed retry (capped at 4 s)


class SourceError(InputError):
    """A source that cannot be opened, or a live source that stopped delivering frames."""


@dataclass
class Frame:
    """One frame of a source.

    Attributes
    ----------
    index : int
        0-based position in the source.
    image : ndarray, (H, W, 3), uint8, BGR
    timestamp : float
        Seconds: ``index / fps`` for files (deterministic), ``time.monotonic()`` for live sources.
    name : str
        File name for images, ``""`` otherwise.
    """

    index: int
    image: np.ndarray
    timestamp: float
    name: str = ""


def _cv2():
    try:
        import cv2
        return cv2
    except ImportError:
        raise SourceError("reading video, camera or image sources needs OpenCV: pip install "
                          "'headpose-edge[video]' (opencv-python-headless), or use --source picamera on a Pi") from None


def _valid(img) -> bool:
    return isinstance(img, np.ndarray) and img.ndim in (2, 3) and img.size > 0


class FrameSource:
    """Base class: an iterable of :class:`Frame`, usable as a context manager.

    Attributes
    ----------
    description : str
        What it reads (for messages).
    live : bool
        Camera or stream (retried on failure, timestamps from the clock).
    fps : float
        Frames per second the source claims (25.0 when unknown).
    length : int or None
        Number of frames when known (files), else None.
    independent : bool
        Frames are unrelated pictures (a folder of images): no tracking or smoothing across them.
    """

    description = ""
    live = False
    independent = False
    fps = 25.0
    length: Optional[int] = None

    def __iter__(self) -> Iterator[Frame]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        """Release the device or file; safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class CaptureSource(FrameSource):
    """An OpenCV ``VideoCapture``: video file, camera index or network stream.

    Parameters
    ----------
    target : str or int
        File path, URL or camera index.
    live : bool
        Retry failed reads (re-opening the capture) instead of ending at the first failure.
    retries : int
        Consecutive failed reads tolerated on a live source before :class:`SourceError`.
    retry_delay : float
        Seconds before the first retry; doubled after each (capped at 4 s).
    """

    def __init__(self, target: Union[str, int], live: bool, retries: int = DEFAULT_RETRIES,
                 retry_delay: float = DEFAULT_RETRY_DELAY):
        self.cv2 = _cv2()
        self.target = target
        self.live = live
        self.retries = int(retries)
        self.retry_delay = float(retry_delay)
        kind = "camera" if isinstance(target, int) else ("stream" if live else "video")
        self.description = f"{kind} {target}"
        self.cap = None
        self._open()
        fps = float(self.cap.get(self.cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if 0.0 < fps < 1000.0 else 25.0
        n = int(self.cap.get(self.cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.length = n if (not live and n > 0) else None

    def _open(self) -> None:
        self.cap = self.cv2.VideoCapture(self.target)
        if not self.cap.isOpened():
            self.cap.release()
            self.cap = None
            if isinstance(self.target, int):
                raise SourceError(f"camera {self.target} could not be opened: is it connected and free "
                                  f"(not used by another program)? Try another index, or --source picamera on a Pi")
            raise SourceError(f"{self.description} could not be opened: expected a video OpenCV/FFmpeg can "
                              f"decode{' or a reachable stream URL' if self.live else ''}")

    def _read(self) -> Optional[np.ndarray]:
        if self.cap is None:
            return None
        ok, img = self.cap.read()
        return img if ok and _valid(img) else None

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while True:
            img = self._read()
            if img is None:
                if not self.live:
                    if index == 0:
                        raise SourceError(f"{self.description}: no frame could be decoded; expected a video "
                                          f"OpenCV/FFmpeg can read (is the file complete?)")
                    if self.length is not None and index < self.length:
                        log.warning("%s ended after %d of %d frames (unreadable or truncated)",
                                    self.description, index, self.length)
                    return
                img = self._recover(index)
            ts = time.monotonic() if self.live else index / self.fps
            yield Frame(index, img, ts)
            index += 1

    def _recover(self, index: int) -> np.ndarray:
        delay = self.retry_delay
        for attempt in range(1, self.retries + 1):
            log.warning("%s delivered no frame (after frame %d); retry %d/%d in %.1f s",
                        self.description, index, attempt, self.retries, delay)
            time.sleep(delay)
            delay = min(delay * 2, 4.0)
            if self.cap is not None:
                self.cap.release()
            self.cap = None
            try:
                self._open()
            except SourceError:
                continue
            img = self._read()
            if img is not None:
                log.info("%s is back", self.description)
                return img
        raise SourceError(f"{self.description} stopped delivering frames: {self.retries} retries failed "
                          f"after frame {index}; check the cable/network and that no other program uses it")

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class ImagesSource(FrameSource):
    """One image file or every image of a folder (sorted by name); unreadable images are skipped."""

    independent = True

    def __init__(self, paths: List[Path], description: str):
        self.cv2 = _cv2()
        self.paths = paths
        self.description = description
        self.length = len(paths)

    def __iter__(self) -> Iterator[Frame]:
        read = 0
        for i, p in enumerate(self.paths):
            img = self.cv2.imread(str(p), self.cv2.IMREAD_COLOR)
            if not _valid(img):
                if len(self.paths) == 1:
                    raise SourceError(f"image '{p}' could not be read: expected a {'/'.join(IMAGE_SUFFIXES)} "
                                      f"file OpenCV can decode")
                log.warning("skipping unreadable image %s", p)
                continue
            yield Frame(i, img, i / self.fps, name=str(p))
            read += 1
        if read == 0 and self.paths:
            raise SourceError(f"{self.description}: none of its {len(self.paths)} images could be read")


class PiCameraSource(FrameSource):
    """The Raspberry Pi camera through picamera2 (libcamera), BGR frames.

    Parameters
    ----------
    size : (width, height)
        Capture size; 1280x720 by default.
    """

    live = True

    def __init__(self, size: Tuple[int, int] = (1280, 720), retries: int = DEFAULT_RETRIES,
                 retry_delay: float = DEFAULT_RETRY_DELAY):
        try:
            from picamera2 import Picamera2  # type: ignore
        except ImportError:
            raise SourceError("--source picamera needs picamera2: on Raspberry Pi OS `sudo apt install "
                              "python3-picamera2`, and create the venv with `python3 -m venv --system-site-packages`"
                              ) from None
        self._cls = Picamera2
        self.size = tuple(size)
        self.retries, self.retry_delay = int(retries), float(retry_delay)
        self.description = "picamera"
        self.cam = None
        self._open()

    def _open(self) -> None:
        try:
            self.cam = self._cls()
            # "RGB888" in libcamera's naming is B, G, R byte order in memory: what OpenCV calls BGR.
            cfg = self.cam.create_video_configuration(main={"size": self.size, "format": "RGB888"})
            self.cam.configure(cfg)
            self.cam.start()
            self.fps = 30.0
        except Exception as e:  # picamera2 raises many kinds (RuntimeError, IndexError when no camera)
            self.close()
            raise SourceError(f"the Raspberry Pi camera could not be started ({e}): is it connected and "
                              f"enabled, and not used by another program?") from None

    def _read(self) -> Optional[np.ndarray]:
        try:
            img = self.cam.capture_array("main") if self.cam is not None else None
        except Exception as e:
            log.warning("picamera capture failed: %s", e)
            return None
        return np.ascontiguousarray(img[:, :, :3]) if _valid(img) else None

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while True:
            img = self._read()
            delay = self.retry_delay
            attempt = 0
            while img is None:
                attempt += 1
                if attempt > self.retries:
                    raise SourceError(f"picamera stopped delivering frames: {self.retries} retries failed after "
                                      f"frame {index}; check the ribbon cable")
                log.warning("picamera delivered no frame; retry %d/%d in %.1f s", attempt, self.retries, delay)
                time.sleep(delay)
                delay = min(delay * 2, 4.0)
                self.close()
                try:
                    self._open()
                except SourceError:
                    continue
                img = self._read()
            yield Frame(index, img, time.monotonic())
            index += 1

    def close(self) -> None:
        if self.cam is not None:
            try:
                self.cam.stop()
                self.cam.close()
            except Exception:  # closing a half-started camera
                pass
            self.cam = None


def open_source(spec: Union[str, int, Path], retries: int = DEFAULT_RETRIES,
                retry_delay: float = DEFAULT_RETRY_DELAY) -> FrameSource:
    """Open the source named by ``spec`` (see the module docstring for the forms).

    Raises
    ------
    SourceError
        A path that does not exist, a folder without images, a file or device that cannot be opened,
        or a missing OpenCV / picamera2.
    """
    if isinstance(spec, int):
        return CaptureSource(spec, live=True, retries=retries, retry_delay=retry_delay)
    s = str(spec).strip()
    if not s:
        raise SourceError("empty --source: expected picamera, a camera index, a URL, a video, an image or a folder")
    if s.lower() == "picamera":
        return PiCameraSource(retries=retries, retry_delay=retry_delay)
    if s.isdigit():
        return CaptureSource(int(s), live=True, retries=retries, retry_delay=retry_delay)
    if s.lower().startswith(URL_PREFIXES):
        return CaptureSource(s, live=True, retries=retries, retry_delay=retry_delay)
    path = Path(s)
    if not path.exists():
        raise SourceError(f"source '{s}' does not exist: expected picamera, a camera index (0, 1...), a URL "
                          f"(rtsp://, http://), a video file, an image or a folder of images")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"folder '{path}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return ImagesSource(files, f"folder {path}")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImagesSource([path], f"image {path}")
    return CaptureSource(str(path), live=False, retries=retries, retry_delay=retry_delay)
