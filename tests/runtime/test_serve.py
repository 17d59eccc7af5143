"""The ``--serve`` live view: the server alone (fake faces, synthetic frames), then ``headpose run --serve``
as a real child process on the real video, read with an HTTP client.

Non-loopback binding is exercised on 127.0.0.2, an address of this machine's own loopback range
(Linux answers the whole 127.0.0.0/8 on ``lo``): never a LAN or public address.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from headpose.runtime.errors import InputError
from headpose.runtime.serve import BOUNDARY, LiveView, needs_token, parse_address
from headpose.runtime.sinks import SinkError
from tests.conftest import ROOT, VIDEO, need_shared

OTHER_LOOPBACK = "127.0.0.2"


class FakeFace:
    def __init__(self, track_id: int, yaw: float):
        self.track_id, self.yaw = track_id, yaw

    def to_dict(self) -> dict:
        return {"track_id": self.track_id, "box": [1.0, 2.0, 3.0, 4.0], "score": 0.9,
                "keypoints": [[0.0, 0.0]] * 5, "yaw": self.yaw, "pitch": 0.0, "roll": 0.0}


def _get(port: int, path: str, host: str = "127.0.0.1", headers=None):
    c = http.client.HTTPConnection(host, port, timeout=10)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


def _read_until(resp, marker: bytes, limit: int = 1 << 22) -> bytes:
    buf = b""
    while marker not in buf and len(buf) < limit:
        chunk = resp.read1(65536)
        if not chunk:
            break
        buf += chunk
    return buf


def _wait(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


@pytest.fixture
def view():
    v = LiveView("127.0.0.1:0", fps=1000.0, source="test frames")
    yield v
    v.close()


# ---- the address and the token -------------------------------------------------------------------
@pytest.mark.parametrize("spec, expected", [("8080", ("127.0.0.1", 8080)), ("0.0.0.0:80", ("0.0.0.0", 80)),
                                            ("[::1]:9000", ("::1", 9000)), ("localhost:0", ("localhost", 0))])
def test_parse_address(spec, expected):
    assert parse_address(spec) == expected


@pytest.mark.parametrize("spec", ["", "http", "host:", ":8080", "1.2.3.4:70000", "[::1]8080", "80a"])
def test_parse_address_refuses(spec):
    with pytest.raises(InputError, match=r"\[HOST:\]PORT"):
        parse_address(spec)


def test_only_the_loopback_names_go_without_a_token():
    assert not any(needs_token(h) for h in ("127.0.0.1", "::1", "localhost", "LOCALHOST"))
    assert all(needs_token(h) for h in (OTHER_LOOPBACK, "0.0.0.0", "::", "192.168.1.20", "raspberrypi"))


def test_a_port_in_use_says_so():
    with LiveView("127.0.0.1:0") as first:
        with pytest.raises(SinkError, match="cannot listen on 127.0.0.1:%d.*another port" % first.port):
            LiveView(f"127.0.0.1:{first.port}")


def test_token_is_required_off_loopback():
    with LiveView(f"{OTHER_LOOPBACK}:0") as v:
        assert v.token and len(v.token) >= 16 and v.url == f"http://{OTHER_LOOPBACK}:{v.port}/?token={v.token}"
        for path in ("/", "/healthz", "/events", "/stream.mjpg", "/nothing"):
            r, body = _get(v.port, path, OTHER_LOOPBACK)
            assert r.status == 401, path
            assert b"token" in body and r.getheader("WWW-Authenticate", "").startswith("Bearer")
        assert _get(v.port, "/healthz?token=wrong", OTHER_LOOPBACK)[0].status == 401
        assert _get(v.port, f"/healthz?token={v.token}", OTHER_LOOPBACK)[0].status == 200
        assert _get(v.port, "/healthz", OTHER_LOOPBACK, {"Authorization": f"Bearer {v.token}"})[0].status == 200
        assert _get(v.port, "/", OTHER_LOOPBACK, {"X-Headpose-Token": v.token})[0].status == 200


def test_a_given_token_is_required_on_loopback_too():
    with LiveView("127.0.0.1:0", token="s3cret") as v:
        assert _get(v.port, "/healthz")[0].status == 401
        assert _get(v.port, "/healthz?token=s3cret")[0].status == 200


def test_without_a_token_only_loopback_host_names_are_answered(view):
    assert _get(view.port, "/healthz", headers={"Host": f"localhost:{view.port}"})[0].status == 200
    r, body = _get(view.port, "/healthz", headers={"Host": f"attacker.example:{view.port}"})  # DNS rebinding
    assert r.status == 403 and b"loopback" in body


def test_only_its_own_endpoints_and_no_framing(view):
    for path in ("/static/index.html", "/viewer.js", "/../serve.py", "/%2e%2e/serve.py", "/index.html"):
        assert _get(view.port, path)[0].status == 404, path
    r, page = _get(view.port, "/")
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/html")
    assert r.getheader("X-Frame-Options") == "DENY" and "frame-ancestors 'none'" in r.getheader("Content-Security-Policy")
    assert r.getheader("X-Content-Type-Options") == "nosniff"
    assert b"new EventSource" in page and b"<!-- viewer.js -->" not in page  # the script is inlined
    assert b"http://" not in page.replace(b"http://www.w3.org", b"") and b"https://" not in page  # no CDN
    health = json.loads(_get(view.port, "/healthz")[1])
    assert health["source"] == "test frames" and health["source_state"] == "starting" and health["frames"] == 0


# ---- the pipeline's side never waits for viewers ----------------------------------------------------
def test_no_image_is_wanted_without_a_video_viewer(view):
    for i in range(5):
        assert not view.wants_image()
        view.write(i, 1.0, [FakeFace(1, 0.0)], np.zeros((8, 8, 3), np.uint8))
    assert view._jpeg_seq == 0 and view._pending is None  # nothing encoded for nobody


def test_images_are_capped_at_serve_fps():
    with LiveView("127.0.0.1:0", fps=2.0) as v:
        c = http.client.HTTPConnection("127.0.0.1", v.port, timeout=10)
        c.request("GET", "/stream.mjpg")
        r = c.getresponse()
        assert r.status == 200 and r.getheader("Content-Type") == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
        assert _wait(lambda: v.wants_image())
        image = np.full((48, 64, 3), 200, np.uint8)
        taken = 0
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.2:
            taken += v.wants_image()
            v.write(0, 1.0, [], image)
            time.sleep(0.01)
        assert 1 <= taken <= 3  # 2 per second, not one per frame (about 100 here)
        c.close()


def test_mjpeg_frames_decode_and_a_viewer_that_leaves_is_freed(view):
    cv2 = pytest.importorskip("cv2", reason="encodes the JPEG")
    c = http.client.HTTPConnection("127.0.0.1", view.port, timeout=10)
    c.request("GET", "/stream.mjpg")
    r = c.getresponse()
    assert _wait(lambda: view.health()["viewers"]["video"] == 1)
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, :32] = (0, 0, 255)
    part = b""
    for i in range(200):
        view.write(i, 1.0, [], image if view.wants_image() else None)
        time.sleep(0.005)
        if view._jpeg_seq >= 2:
            break
    part = _read_until(r, b"\xff\xd9")
    head, _, rest = part.partition(b"\r\n\r\n")
    assert head.startswith(f"--{BOUNDARY}".encode()) and b"Content-Type: image/jpeg" in head
    n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(rest) < n:
        rest += r.read1(65536)
    decoded = cv2.imdecode(np.frombuffer(rest[:n], np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == image.shape and decoded[10, 5, 2] > 200 and decoded[10, 50, 2] < 50
    r.close()
    c.close()  # the viewer leaves: its thread ends at the next frame it cannot send
    for i in range(200):
        view.write(i, 1.0, [], image if view.wants_image() else None)
        time.sleep(0.01)
        if view.health()["viewers"]["video"] == 0 and not view._connections:
            break
    assert view.health()["viewers"]["video"] == 0 and not view._connections
    assert not view.wants_image()


def test_many_viewers_get_the_same_frames(view):
    pytest.importorskip("cv2", reason="encodes the JPEG")
    conns = [http.client.HTTPConnection("127.0.0.1", view.port, timeout=10) for _ in range(5)]
    resps = []
    for c in conns:
        c.request("GET", "/stream.mjpg")
        resps.append(c.getresponse())
    assert _wait(lambda: view.health()["viewers"]["video"] == 5)
    image = np.full((32, 32, 3), 90, np.uint8)
    for i in range(100):
        view.write(i, 1.0, [], image if view.wants_image() else None)
        time.sleep(0.005)
        if view._jpeg_seq >= 3:
            break
    jpegs = {_read_until(r, b"\xff\xd9").partition(b"\r\n\r\n")[2] for r in resps}
    assert all(j.startswith(b"\xff\xd8") for j in jpegs)  # every viewer got a JPEG of the frame
    for r, c in zip(resps, conns):
        r.close()
        c.close()


def test_a_slow_event_viewer_loses_its_oldest_records_not_the_pipeline():
    from headpose.runtime import serve
    with LiveView("127.0.0.1:0") as v:
        s = socket.create_connection(("127.0.0.1", v.port))
        s.sendall(b"GET /events HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")  # ... and never reads
        assert _wait(lambda: len(v._event_clients) == 1)
        for i in range(20000):  # ~4 MB of records: far more than the socket buffers hold
            v.write(i, 1.0, [FakeFace(1, float(i % 90))], None)
        client = v._event_clients[0]  # write() returned every time; the queue stayed bounded
        assert len(client.queue) <= serve.EVENT_QUEUE and client.dropped > 0
    assert not v._event_clients and not v._connections  # the stuck viewer is freed at close
    s.close()


def test_events_carry_the_records_then_end_at_close():
    v = LiveView("127.0.0.1:0")
    c = http.client.HTTPConnection("127.0.0.1", v.port, timeout=10)
    c.request("GET", "/events")
    r = c.getresponse()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/event-stream")
    assert _wait(lambda: len(v._event_clients) == 1)
    for i in range(30):
        v.write(i, 2.5, [FakeFace(7, 10.0), FakeFace(8, -5.0)], None)
    v.close()
    text = r.read().decode()
    records = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {\"frame\"")]
    assert [rec["frame"] for rec in records] == list(range(30))
    assert records[3] == {"frame": 3, "time_ms": 2.5, "faces": [FakeFace(7, 10.0).to_dict(), FakeFace(8, -5.0).to_dict()]}
    c.close()


# ---- headpose run --serve, a real child process on the real video ---------------------------------------
def start_run(det_dir, pose_dir, *extra) -> tuple:
    """``headpose run --serve ...`` in a child process; returns (process, url) once it prints the URL."""
    need_shared(VIDEO)
    p = subprocess.Popen([sys.executable, "-m", "headpose.cli", "run", "--detector", str(det_dir), "--pose",
                          str(pose_dir), "--source", str(VIDEO), *extra], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=ROOT)
    for line in p.stdout:
        m = re.search(r"live view at (http://\S+)", line)
        if m:
            return p, m.group(1)
    p.wait(timeout=30)
    pytest.fail(f"headpose run --serve printed no URL; rc {p.returncode}: {p.stderr.read()[-3000:]}")


def test_run_serve_streams_the_jsonl_records_and_jpeg(det_dir, pose_dir, tmp_path):
    cv2 = pytest.importorskip("cv2", reason="reads the video")
    jsonl = tmp_path / "run.jsonl"
    p, url = start_run(det_dir, pose_dir, "--serve", "127.0.0.1:0", "--max-frames", "40", "--jsonl", str(jsonl))
    m = re.match(r"http://127\.0\.0\.1:(\d+)/$", url)
    assert m, url
    port = int(m.group(1))
    got = {}

    def events():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", "/events")
        got["events"] = c.getresponse().read().decode()  # until the run ends and closes the stream

    def video():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("GET", "/stream.mjpg")
        got["video"] = c.getresponse().read()

    threads = [threading.Thread(target=f) for f in (events, video)]
    for t in threads:
        t.start()
    health = json.loads(_get(port, "/healthz")[1])
    assert health["source"] == f"video {VIDEO}" and health["source_state"] in ("starting", "running")
    out, err = p.communicate(timeout=300)
    for t in threads:
        t.join(timeout=30)
    assert p.returncode == 0, err[-3000:]
    assert "headpose run: 40 frames" in out

    expected = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(expected) == 40
    received = [json.loads(line[6:]) for line in got["events"].splitlines() if line.startswith('data: {"frame"')]
    assert len(received) >= 10, f"only {len(received)} records reached the viewer"
    first = received[0]["frame"]
    assert received == expected[first:], "the /events records differ from the --jsonl records of the same run"

    parts = got["video"].split(f"--{BOUNDARY}\r\n".encode())[1:]
    assert len(parts) >= 3, f"only {len(parts)} JPEG frames reached the viewer"
    for part in parts:
        head, _, body = part.partition(b"\r\n\r\n")
        n = int(re.search(rb"Content-Length: (\d+)", head).group(1))
        img = cv2.imdecode(np.frombuffer(body[:n], np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape == (720, 1280, 3)


def test_run_serve_off_loopback_prints_a_token_and_refuses_without_it(det_dir, pose_dir):
    p, url = start_run(det_dir, pose_dir, "--serve", f"{OTHER_LOOPBACK}:0", "--max-frames", "25")
    try:
        m = re.match(r"http://127\.0\.0\.2:(\d+)/\?token=(\S+)$", url)
        assert m, url
        port, token = int(m.group(1)), m.group(2)
        r, body = _get(port, "/healthz", OTHER_LOOPBACK)
        assert r.status == 401 and b"token" in body
        assert _get(port, "/stream.mjpg", OTHER_LOOPBACK)[0].status == 401
        r, body = _get(port, f"/healthz?token={token}", OTHER_LOOPBACK)
        assert r.status == 200 and json.loads(body)["source"] == f"video {VIDEO}"
    finally:
        out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]


@pytest.mark.parametrize("flags, says", [(["--serve", "localhost:http"], r"\[HOST:\]PORT"),
                                         (["--serve", "8080", "--serve-fps", "0"], "--serve-fps must be"),
                                         (["--serve", "8080", "--serve-token", " "], "--serve-token is empty")])
def test_bad_serve_flags_fail_before_any_model_loads(flags, says, tmp_path, capsys):
    from headpose.cli import main
    missing = str(tmp_path / "no-such-artifact")
    assert main(["run", "--detector", missing, "--pose", missing, "--source", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err
    assert re.search(says, err) and "no-such-artifact" not in err


def test_serve_with_jsonl_on_stdout_keeps_stdout_for_the_records(det_dir, pose_dir, capsys):
    from headpose.cli import main
    need_shared(VIDEO)
    assert main(["run", "--detector", str(det_dir), "--pose", str(pose_dir), "--source", str(VIDEO),
                 "--max-frames", "3", "--jsonl", "-", "--serve", "127.0.0.1:0"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["frame"] for line in out.splitlines()] == [0, 1, 2]
    assert "live view at http://127.0.0.1:" in err
