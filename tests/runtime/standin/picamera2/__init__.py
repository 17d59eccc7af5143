"""A stand-in for the ``picamera2`` package, for tests on machines without a Raspberry Pi camera.

It behaves as the picamera2 manual documents the calls :class:`headpose.runtime.sources.PiCameraSource`
makes: ``Picamera2()`` acquires the camera (``RuntimeError`` "Device or resource busy" when another
program holds it, ``IndexError`` when no camera is attached), ``create_video_configuration(main=
{"size": (w, h), "format": "RGB888"})`` returns a configuration, ``configure``, ``start``,
``capture_array("main")`` returns an (h, w, 3) uint8 array whose bytes are B, G, R (libcamera's
"RGB888"), ``stop`` and ``close``. Capturing before ``start`` or after ``close`` raises, as does a
capture once the camera is unplugged.

Driven by ``$PICAMERA2_STANDIN``, a JSON object:

``image``
    a BGR image file (read with OpenCV, resized to the configured size) delivered as every frame;
``busy``
    true: every ``Picamera2()`` raises the "busy" error;
``fail_at``
    list of capture numbers (0-based, counted over the whole process) that raise once (a glitch);
``unplug_after``
    after this many captures the camera is gone: captures raise and ``Picamera2()`` raises IndexError;
``log``
    a file that receives one JSON line per event (``open``, ``start``, ``capture``, ``close``).
"""

from __future__ import annotations

import json
import os

import numpy as np

_CONFIG = json.loads(os.environ.get("PICAMERA2_STANDIN", "{}"))
_captures = 0


def _log(event: str, **kw) -> None:
    if _CONFIG.get("log"):
        with open(_CONFIG["log"], "a") as f:
            f.write(json.dumps({"event": event, **kw}) + "\n")


def _unplugged() -> bool:
    return _CONFIG.get("unplug_after") is not None and _captures >= _CONFIG["unplug_after"]


class Picamera2:
    """One camera (the first)."""

    def __init__(self, camera_num: int = 0):
        if _CONFIG.get("busy"):
            raise RuntimeError("Failed to acquire camera: Device or resource busy")
        if _unplugged():
            raise IndexError("list index out of range")  # what picamera2 raises with no camera attached
        self.config = None
        self.started = False
        self.closed = False
        self.id = id(self)
        _log("open", cam=self.id)

    def create_video_configuration(self, main=None, **kw):
        main = dict(main or {})
        main.setdefault("size", (1280, 720))
        main.setdefault("format", "XBGR8888")
        return {"use_case": "video", "main": main, **kw}

    def configure(self, config) -> None:
        if self.closed:
            raise RuntimeError("Camera is closed")
        if config["main"]["format"] not in ("RGB888", "BGR888", "XRGB8888", "XBGR8888"):
            raise RuntimeError(f"unsupported format {config['main']['format']}")
        self.config = config

    def start(self) -> None:
        if self.config is None:
            raise RuntimeError("Camera has not been configured")
        self.started = True
        _log("start", cam=self.id)

    def capture_array(self, name: str = "main") -> np.ndarray:
        global _captures
        if not self.started or self.closed:
            raise RuntimeError("Camera is not running")
        n = _captures
        _captures += 1
        if _unplugged() and n >= _CONFIG["unplug_after"]:
            raise RuntimeError("Camera frontend has timed out!")
        if n in _CONFIG.get("fail_at", []):
            raise RuntimeError("Camera frontend has timed out!")
        import cv2
        w, h = self.config["main"]["size"]
        img = cv2.resize(cv2.imread(_CONFIG["image"], cv2.IMREAD_COLOR), (w, h))  # B, G, R bytes: "RGB888"
        _log("capture", cam=self.id, n=n)
        return img

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            _log("close", cam=self.id)
