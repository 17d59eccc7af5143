"""The ``--serve`` page in a real browser: headless Chromium (Debian's ``chromium`` + ``chromium-driver``)
loads it from ``headpose run --serve`` on the real video; the video updates, the plot has points for
every track, and a screenshot is saved (``HEADPOSE_SCREENSHOT=PATH`` chooses where and uses the
trained student; the README's is ``benchmarks/results/live_view.png``). Skipped, saying why, where Chromium is not installed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.browser.webdriver import WebDriver, find_chromium
from tests.conftest import ROOT, VIDEO, need_shared, trained_student

VIDEO_DIGEST = """
const img = document.getElementById("stream");
if (!img.complete || !img.naturalWidth) return null;
const c = document.createElement("canvas"); c.width = 160; c.height = 90;
const g = c.getContext("2d"); g.drawImage(img, 0, 0, 160, 90);
const d = g.getImageData(0, 0, 160, 90).data; let h = 0;
for (let i = 0; i < d.length; i += 7) h = (h * 31 + d[i]) >>> 0;
return [img.naturalWidth, img.naturalHeight, h];
"""

PLOT_STATE = """
const v = window.headposeView; v.draw();
const c = document.getElementById("plot"), d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
let coloured = 0;
for (let i = 0; i < d.length; i += 4) if (Math.max(d[i], d[i+1], d[i+2]) - Math.min(d[i], d[i+1], d[i+2]) > 60) coloured++;
return {records: v.records, last: v.last, drawn: v.drawn, tracks: [...v.series.keys()], coloured: coloured,
        fps: document.getElementById("fps").textContent, stages: document.getElementById("stages").textContent,
        legend: document.getElementById("legend").textContent};
"""


def _wait(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def test_live_view_in_headless_chromium(artifact, tmp_path):
    browser, driver = find_chromium()
    if browser is None:
        pytest.skip(driver)
    need_shared(VIDEO)
    det = artifact("scrfd_500m", "fp32")
    # the screenshot for a reader shows the trained student's angles (one more conversion); the check
    # itself holds for any weights, and the seeded artifact is the one other tests build anyway
    student = trained_student("mobilenetv3_small") if os.environ.get("HEADPOSE_SCREENSHOT") else None
    pose = artifact("mobilenetv3_small", "fp32", weights=student) if student else artifact("mobilenetv3_small", "fp32")
    jsonl, log = tmp_path / "run.jsonl", open(tmp_path / "run.log", "w")
    p = subprocess.Popen([sys.executable, "-m", "headpose.cli", "run", "--detector", str(det), "--pose", str(pose),
                          "--source", str(VIDEO), "--serve", "127.0.0.1:0", "--jsonl", str(jsonl)],
                         stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT,  # (a file: never fills)
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        url = None
        for line in p.stdout:
            m = re.search(r"live view at (http://\S+)", line)
            if m:
                url = m.group(1)
                break
        assert url, f"no URL printed: {(tmp_path / 'run.log').read_text()[-3000:]}"
        with WebDriver(browser, driver) as wd:
            wd.get(url)
            first = _wait(lambda: wd.run(VIDEO_DIGEST), 60, "the first video frame")
            assert first[:2] == [1280, 720]
            later = _wait(lambda: (lambda d: d if d and d[2] != first[2] else None)(wd.run(VIDEO_DIGEST)), 30,
                          "the video element to show another frame")
            assert later[2] != first[2]
            state = _wait(lambda: (lambda s: s if s["records"] >= 40 and s["fps"] not in ("", "–") else None)(
                wd.run(PLOT_STATE)), 120, "40 records and the stats on the page")
            shot = wd.screenshot(Path(os.environ.get("HEADPOSE_SCREENSHOT") or tmp_path / "live_view.png"))
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)  # the first Ctrl-C finishes the frame and closes the outputs
        p.communicate(timeout=120)
        log.close()
    assert p.returncode in (0, 130), (tmp_path / "run.log").read_text()[-3000:]

    last = state["last"]
    assert last["faces"], "the page's last record has no face"
    ids = {f["track_id"] for f in last["faces"]}
    drawn = {int(k): n for k, n in state["drawn"].items()}
    assert ids <= set(drawn), f"tracks {sorted(ids - set(drawn))} of the last record are not plotted"
    assert all(drawn[i] >= 3 for i in ids)  # a point in each of the yaw, pitch and roll panels
    assert set(drawn) == set(state["tracks"])  # every track of the last 10 s is plotted
    assert state["coloured"] > 500, "the plot canvas is (nearly) blank"
    assert float(state["fps"]) > 0 and "detector" in state["stages"] and "pose" in state["stages"]
    assert all(f"#{i} yaw" in state["legend"] for i in ids)
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert records[last["frame"]] == last, "the page shows another record than --jsonl wrote for that frame"
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(png[16:20], "big") == 1400


def test_the_page_passes_its_token_on_off_loopback(tmp_path):
    """Bound beyond 127.0.0.1 (here 127.0.0.2, this machine's own loopback range) the page opened with
    ``?token=`` gets its video and events with the token; without it the browser gets the 401 text."""
    import threading

    import numpy as np
    from headpose.runtime.serve import LiveView
    browser, driver = find_chromium()
    if browser is None:
        pytest.skip(driver)
    pytest.importorskip("cv2", reason="encodes the JPEG")

    class Face:
        track_id, yaw, pitch, roll = 4, 10.0, -5.0, 2.0

        def to_dict(self):
            return {"track_id": 4, "box": [1, 2, 3, 4], "score": 0.9, "keypoints": [[0, 0]] * 5,
                    "yaw": self.yaw, "pitch": self.pitch, "roll": self.roll}

    stop = threading.Event()
    with LiveView("127.0.0.2:0") as view, WebDriver(browser, driver) as wd:
        def frames():
            i = 0
            while not stop.is_set():
                image = np.full((90, 160, 3), (i * 5) % 255, np.uint8)
                view.write(i, 5.0, [Face()], image if view.wants_image() else None)
                i += 1
                time.sleep(0.04)
        t = threading.Thread(target=frames, daemon=True)
        t.start()
        try:
            wd.get(view.url.replace("?token=", "?token=wrong"))
            assert "token" in wd.run("return document.body.innerText")
            wd.get(view.url)
            state = _wait(lambda: (lambda s: s if s["records"] >= 5 else None)(wd.run(PLOT_STATE)), 60,
                          "records on the page opened with the token")
            size = _wait(lambda: wd.run(VIDEO_DIGEST), 30, "the video with the token")
        finally:
            stop.set()
            t.join(timeout=5)
    assert size[:2] == [160, 90] and state["drawn"].get("4", 0) >= 3
