"""``headpose run --serve [HOST:]PORT``: a live view in the browser for a headless device.

A :class:`LiveView` is a sink (see :mod:`.sinks`) that runs a standard-library
``ThreadingHTTPServer`` in background threads:

``GET /``
    One page (``static/index.html`` + ``static/viewer.js``, shipped with the package, no CDN): the
    annotated video, yaw/pitch/roll over the last 10 s per track, FPS, per-stage ms, faces.
``GET /stream.mjpg``
    The annotated video alone, MJPEG (``multipart/x-mixed-replace``).
``GET /events``
    Server-Sent Events: one ``message`` per frame whose data is the ``--jsonl`` record
    ``{"frame", "time_ms", "faces"}``; about once a second a ``stats`` event (FPS, stage ms).
``GET /healthz``
    JSON: frames processed, FPS, source and its state, viewers connected.

Serving never slows the pipeline: JPEG is encoded only while a video viewer is connected, at most
``fps`` times a second, in a thread of its own; a video viewer always gets the newest frame (frames
it was too slow for are skipped, never queued); an event viewer has a bounded queue whose oldest
records are dropped when it falls behind; a viewer that disconnects (or stalls for
:data:`CLIENT_TIMEOUT_S`) frees its thread and queue.

Safe by default: bound to 127.0.0.1 unless a host is given; bound to any other address (anything but
``127.0.0.1``, ``::1``, ``localhost``) every endpoint requires a token (generated at start or given),
passed as ``?token=...``, ``Authorization: Bearer ...`` or ``X-Headpose-Token``; without it 401.
Without a token the ``Host`` header must name the loopback (no DNS rebinding). Only the fixed
endpoints exist (no files, no listing); responses forbid framing and sniffing.

Example
-------
The same from the Python API::

    with HeadPoseEstimator.from_artifacts(det_dir, pose_dir) as hpe, \\
            LiveView("0.0.0.0:8080", timings=lambda: hpe.last_timings) as view:
        print("open", view.url)                   # with the token it generated
        for i, frame in enumerate(frames):        # BGR frames
            t0 = time.perf_counter()
            faces = hpe.estimate(frame)
            ms = (time.perf_counter() - t0) * 1e3
            image = hpe.annotate(frame, faces) if view.wants_image() else None   # only when it is sent
            view.write(i, ms, faces, image)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import secrets
import socket
import socketserver
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from .errors import InputError
from .sinks import Sink, SinkError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")
DEFAULT_FPS = 15.0
CLIENT_TIMEOUT_S = 30.0       # a viewer that takes no data for this long is dropped
EVENT_QUEUE = 256             # records an event viewer may fall behind before the oldest are dropped
MAX_STREAMS = 32              # concurrent /stream.mjpg + /events connections
KEEPALIVE_S = 15.0
STATIC = Path(__file__).resolve().with_name("static")
BOUNDARY = "headposeframe"


def parse_address(spec) -> Tuple[str, int]:
    """``"8080"``, ``"0.0.0.0:8080"``, ``"[::1]:8080"`` -> ``(host, port)``; the host defaults to 127.0.0.1.

    Raises
    ------
    InputError
        Anything else, or a port outside 0..65535 (0 = any free port).
    """
    s = str(spec).strip()
    host, port = DEFAULT_HOST, s
    if s.startswith("["):
        end = s.find("]")
        host, port = (s[1:end], s[end + 2:]) if end > 0 and s[end + 1:end + 2] == ":" else ("", "")
    elif ":" in s:
        host, _, port = s.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise InputError(f"--serve expects [HOST:]PORT such as 8080, 0.0.0.0:8080 or [::1]:8080 "
                         f"(port 0..65535, 0 = any free port), found {spec!r}")
    return host, int(port)


def check_options(address, fps: float = DEFAULT_FPS, token: Optional[str] = None) -> Tuple[str, int]:
    """Check ``--serve``, ``--serve-fps`` and ``--serve-token`` (before any model loads); returns (host, port).

    Raises
    ------
    InputError
        A malformed address, an fps that is not a positive number, or an empty token.
    """
    host, port = parse_address(address)
    try:
        ok = math.isfinite(float(fps)) and float(fps) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InputError(f"--serve-fps must be a number > 0 (most video frames per second sent to the browser), "
                         f"found {fps!r}")
    if token is not None and not str(token).strip():
        raise InputError("--serve-token is empty: give a non-empty token, or leave the option out to get one "
                         "generated")
    return host, port


def needs_token(host: str) -> bool:
    """True for every bind address but the loopback names 127.0.0.1, ::1 and localhost."""
    return host.lower() not in LOOPBACK_NAMES


def _jpeg_encoder(quality: int) -> Optional[Callable]:
    """``image (BGR ndarray) -> JPEG bytes`` with OpenCV, else Pillow; None when neither is installed."""
    try:
        import cv2
        params = [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)]

        def encode(image) -> bytes:
            ok, buf = cv2.imencode(".jpg", image, params)
            if not ok:
                raise SinkError(f"OpenCV could not encode a frame of shape {image.shape} as JPEG")
            return buf.tobytes()
        return encode
    except ImportError:
        pass
    try:
        import io
        from PIL import Image

        def encode(image) -> bytes:
            out = io.BytesIO()
            Image.fromarray(image[..., ::-1]).save(out, "JPEG", quality=int(quality))
            return out.getvalue()
        return encode
    except ImportError:
        return None


def _page() -> Tuple[bytes, str]:
    """The page with ``viewer.js`` inlined, and the CSP hash that allows exactly that script."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    js = (STATIC / "viewer.js").read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(js.encode("utf-8")).digest()).decode("ascii")
    return html.replace("<!-- viewer.js -->", f"<script>{js}</script>").encode("utf-8"), f"'sha256-{digest}'"


class _EventClient:
    """One /events connection: a bounded queue of SSE messages (oldest dropped when full)."""

    def __init__(self) -> None:
        self.queue: deque = deque(maxlen=EVENT_QUEUE)
        self.dropped = 0

    def put(self, message: str) -> None:
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
        self.queue.append(message)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    view: "LiveView"

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the fully qualified name of the host, which can hang for
        # seconds on a device without DNS; the name is not needed.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


class _Server6(_Server):
    address_family = socket.AF_INET6


class LiveView(Sink):
    """A sink serving the live view over HTTP (see the module docstring for the endpoints).

    Parameters
    ----------
    address : str
        ``[HOST:]PORT``; the host defaults to 127.0.0.1, port 0 takes any free port (see :attr:`port`).
    token : str, optional
        The token every request must carry. Generated when the host is not a loopback name and none
        is given; when given, required on loopback too.
    fps : float
        Most JPEG frames encoded per second (all video viewers share them), > 0.
    timings : callable, optional
        Returns the last frame's ms per stage (``HeadPoseEstimator.last_timings``) for the page.
    source : str
        What the pipeline reads (for ``/healthz``).
    quality : int
        JPEG quality 1..100.

    Raises
    ------
    InputError
        A malformed address, fps or quality.
    SinkError
        The address cannot be bound (in use, not an address of this machine).
    """

    def __init__(self, address="127.0.0.1:8080", token: Optional[str] = None, fps: float = DEFAULT_FPS,
                 timings: Optional[Callable[[], Dict[str, float]]] = None, source: str = "", quality: int = 80):
        host, port = check_options(address, fps, token)
        if not 1 <= int(quality) <= 100:
            raise InputError(f"JPEG quality must be in 1..100, found {quality}")
        self.host = host
        self.token = str(token) if token is not None else (secrets.token_urlsafe(16) if needs_token(host) else None)
        self.interval = 1.0 / float(fps)
        self.timings = timings
        self.source = source
        self.state = "starting"
        self.frames = 0
        self.started = time.monotonic()
        self._encode = _jpeg_encoder(quality)
        self._page, self._script_hash = _page()
        self._cond = threading.Condition()
        self._closed = False
        self._video_viewers = 0
        self._event_clients: List[_EventClient] = []
        self._connections: set = set()
        self._pending = None           # newest annotated frame waiting for the encoder
        self._jpeg: Optional[bytes] = None
        self._jpeg_seq = 0
        self._next_image = 0.0
        self._times: deque = deque(maxlen=60)
        self._stage_sum: Dict[str, float] = {}
        self._stage_n = 0
        self._faces_sum = 0
        self._last_stats_t = time.monotonic()
        self.stats: dict = {"fps": 0.0, "stages_ms": {}, "faces": 0.0}
        cls = _Server6 if ":" in host else _Server
        try:
            self._httpd = cls((host, port), _Handler)
        except OSError as e:
            raise SinkError(f"--serve cannot listen on {host}:{port}: {e.strerror or e}; choose another port "
                            f"(port 0 takes any free one) or a host that is an address of this machine "
                            f"(127.0.0.1, 0.0.0.0 for every interface)") from None
        self._httpd.view = self
        self.port = int(self._httpd.server_address[1])
        self._threads = [threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                          name="headpose-serve", daemon=True)]
        if self._encode is not None:
            self._threads.append(threading.Thread(target=self._encode_loop, name="headpose-jpeg", daemon=True))
        else:
            log.warning("--serve: neither OpenCV nor Pillow is installed, so the page shows no video (the plots "
                        "and /events work); pip install 'headpose-edge[video]' for it")
        for t in self._threads:
            t.start()
        log.info("live view on %s", self.url)

    # -- addresses -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The page's URL, with the token when one is required."""
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    # -- the pipeline's side ---------------------------------------------------------------------
    def wants_image(self) -> bool:
        """True when a video viewer is connected and the next JPEG is due (``fps`` cap): annotate then."""
        return self._encode is not None and self._video_viewers > 0 and time.monotonic() >= self._next_image

    def write(self, index, time_ms, faces, image=None) -> bool:
        """Publish one frame's record (and ``image``, BGR, when :meth:`wants_image`); never blocks on viewers.

        The image is kept by reference until it is encoded: do not draw on it afterwards.
        """
        now = time.monotonic()
        stages = self.timings() if self.timings is not None else {}
        record = None
        if self._event_clients:  # the --jsonl record (JsonlSink's), made outside the lock
            record = json.dumps({"frame": int(index), "time_ms": round(float(time_ms), 3),
                                 "faces": [f.to_dict() for f in faces]})
        with self._cond:
            self.state = "running"
            self.frames += 1
            self._times.append(now)
            for k, v in stages.items():
                self._stage_sum[k] = self._stage_sum.get(k, 0.0) + float(v)
            self._stage_sum["total"] = self._stage_sum.get("total", 0.0) + float(time_ms)
            self._stage_n += 1
            self._faces_sum += len(faces)
            messages = [f"data: {record}\n\n"] if record is not None else []
            if now - self._last_stats_t >= 1.0:
                messages.append(f"event: stats\ndata: {json.dumps(self._roll_stats(now))}\n\n")
            for c in self._event_clients:
                for m in messages:
                    c.put(m)
            if image is not None and self._video_viewers and now >= self._next_image and self._encode is not None:
                self._pending = image
                self._next_image = now + self.interval
            self._cond.notify_all()
        return True

    def _roll_stats(self, now: float) -> dict:
        """Means since the last stats event (lock held)."""
        n = max(self._stage_n, 1)
        t = self._times
        fps = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0
        self.stats = {"fps": round(fps, 2), "frames": self.frames, "faces": round(self._faces_sum / n, 2),
                      "stages_ms": {k: round(v / n, 2) for k, v in self._stage_sum.items()}}
        self._stage_sum, self._stage_n, self._faces_sum, self._last_stats_t = {}, 0, 0, now
        return self.stats

    def _encode_loop(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                image, self._pending = self._pending, None
            try:
                jpeg = self._encode(image)
            except Exception as e:  # a frame that cannot be encoded must not stop the pipeline
                log.warning("--serve: JPEG encoding failed: %s", e)
                continue
            with self._cond:
                self._jpeg, self._jpeg_seq = jpeg, self._jpeg_seq + 1
                self._cond.notify_all()

    def health(self) -> dict:
        """The ``/healthz`` record."""
        with self._cond:
            t = self._times
            fps = (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0
            if t and time.monotonic() - t[-1] > 5.0:
                fps = 0.0
            return {"status": "ok", "source": self.source, "source_state": self.state, "frames": self.frames,
                    "fps": round(fps, 2), "uptime_s": round(time.monotonic() - self.started, 1),
                    "video": self._encode is not None,
                    "viewers": {"video": self._video_viewers, "events": len(self._event_clients)}}

    # -- the viewers' side (handler threads) ------------------------------------------------------
    def _open_stream(self, conn) -> bool:
        with self._cond:
            if len(self._connections) >= MAX_STREAMS or self._closed:
                return False
            self._connections.add(conn)
            return True

    def _close_stream(self, conn) -> None:
        with self._cond:
            self._connections.discard(conn)
            self._cond.notify_all()

    def _next_jpeg(self, seen: int) -> Tuple[Optional[bytes], int]:
        """Wait for a JPEG newer than ``seen``: ``(jpeg, seq)``, ``(None, seen)`` after a quiet while or at close."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._jpeg_seq > seen, timeout=KEEPALIVE_S)
            if self._closed or self._jpeg_seq <= seen:
                return None, seen
            return self._jpeg, self._jpeg_seq

    def _take_events(self, client: _EventClient) -> Optional[List[str]]:
        """Queued messages (``[]`` after a quiet while); None once closed and drained."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or client.queue, timeout=KEEPALIVE_S)
            if not client.queue:
                return None if self._closed else []
            out = list(client.queue)
            client.queue.clear()
            return out

    def check_request(self, path: str, query: dict, headers) -> Optional[Tuple[int, str]]:
        """None when the request may be served, else ``(status, message)``."""
        if self.token is not None:
            given = (query.get("token") or [""])[0] or headers.get("X-Headpose-Token", "")
            auth = headers.get("Authorization", "")
            if not given and auth.lower().startswith("bearer "):
                given = auth[7:].strip()
            if not hmac.compare_digest(given.encode("utf-8"), self.token.encode("utf-8")):
                return 401, (f"{'wrong' if given else 'no'} token: this live view is bound to {self.host} and needs "
                             f"the token `headpose run` printed at start; open {path}?token=TOKEN or send "
                             f"'Authorization: Bearer TOKEN'")
            return None
        name = headers.get("Host", "")
        name = name[1:name.find("]")] if name.startswith("[") else name.rsplit(":", 1)[0]
        if name.lower() not in LOOPBACK_NAMES:
            return 403, (f"Host '{headers.get('Host', '')}' is not a loopback name: without a token this live view "
                         f"answers only http://127.0.0.1:{self.port}/ or http://localhost:{self.port}/")
        return None

    # -- the end --------------------------------------------------------------------------------
    def close(self, drain_s: float = 2.0) -> None:
        """Stop serving: event viewers get their queued records (up to ``drain_s``), then every connection closes."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self.state = "finished"
            self._cond.notify_all()
            self._cond.wait_for(lambda: not self._connections, timeout=drain_s)
            stuck = list(self._connections)
        for conn in stuck:  # stalled viewers: unblock their threads, which then free their queues
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if stuck:
            with self._cond:
                self._cond.wait_for(lambda: not self._connections, timeout=1.0)
        self._httpd.shutdown()
        self._httpd.server_close()
        for t in self._threads:
            t.join(timeout=2.0)
        log.info("live view closed after %d frames", self.frames)


class _Handler(BaseHTTPRequestHandler):
    """The fixed endpoints of :class:`LiveView`; nothing else is served."""

    server_version = "headpose"
    sys_version = ""
    timeout = CLIENT_TIMEOUT_S
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, fmt, *args) -> None:
        log.debug("%s %s", self.address_string(), fmt % args)

    def _headers(self, status: int, ctype: str, length: Optional[int] = None,
                 extra: Optional[Dict[str, str]] = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if length is not None:
            self.send_header("Content-Length", str(length))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Content-Security-Policy",
                         f"default-src 'none'; script-src {self.server.view._script_hash}; "
                         f"style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
                         f"frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
        self.end_headers()

    def _send(self, status: int, ctype: str, body: bytes, extra: Optional[Dict[str, str]] = None) -> None:
        self._headers(status, ctype, len(body), extra)
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        view = self.server.view
        url = urlsplit(self.path)
        refused = view.check_request(url.path, parse_qs(url.query), self.headers)
        if refused is not None:
            status, msg = refused
            extra = {"WWW-Authenticate": 'Bearer realm="headpose"'} if status == 401 else None
            self._send(status, "text/plain; charset=utf-8", (msg + "\n").encode("utf-8"), extra)
            return
        if url.path == "/":
            self._send(200, "text/html; charset=utf-8", view._page)
        elif url.path == "/healthz":
            self._send(200, "application/json", (json.dumps(view.health()) + "\n").encode("utf-8"))
        elif url.path in ("/stream.mjpg", "/events"):
            if url.path == "/stream.mjpg" and view._encode is None:
                self._send(503, "text/plain; charset=utf-8", b"no video: encoding JPEG needs OpenCV or Pillow "
                           b"(pip install 'headpose-edge[video]'); /events works without it\n")
            elif not view._open_stream(self.connection):
                self._send(503, "text/plain; charset=utf-8",
                           f"too many viewers ({MAX_STREAMS} streams at most) or the run has ended\n".encode())
            else:
                try:
                    (self._mjpeg if url.path == "/stream.mjpg" else self._events)(view)
                except (OSError, ValueError):  # the viewer went away (reset, broken pipe, timeout)
                    pass
                finally:
                    view._close_stream(self.connection)
        else:
            self._send(404, "text/plain; charset=utf-8",
                       b"not found: this server has /, /stream.mjpg, /events and /healthz\n")

    def _mjpeg(self, view: LiveView) -> None:
        self._headers(200, f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        with view._cond:
            view._video_viewers += 1
        try:
            seen = 0
            while True:
                jpeg, seen_now = view._next_jpeg(seen)
                if jpeg is None:
                    if view._closed:
                        return
                    continue
                seen = seen_now
                self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                                 .encode("ascii") + jpeg + b"\r\n")
        finally:
            with view._cond:
                view._video_viewers -= 1

    def _events(self, view: LiveView) -> None:
        self._headers(200, "text/event-stream; charset=utf-8")
        client = _EventClient()
        with view._cond:
            view._event_clients.append(client)
            if view.stats.get("frames"):
                client.put(f"event: stats\ndata: {json.dumps(view.stats)}\n\n")
        try:
            self.wfile.write(b"retry: 2000\n\n")
            while True:
                messages = view._take_events(client)
                if messages is None:
                    return
                self.wfile.write(("".join(messages) if messages else ": keep-alive\n\n").encode("utf-8"))
        finally:
            with view._cond:
                view._event_clients.remove(client)
            if client.dropped:
                log.info("an event viewer fell behind: %d records dropped", client.dropped)
