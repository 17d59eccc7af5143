"""Does ``headpose run --serve`` slow the pipeline? FPS with no viewer, a fast, a slow and a stalled viewer.

Each configuration is a real ``headpose run`` child process over the same first ``--frames`` frames of
the video; its own summary line gives the end-to-end FPS (model loading excluded). The viewers are
threads of this process (like a browser on another machine: they cost the pipeline's process
nothing but the serving itself):

``no-serve``        no ``--serve`` at all (the reference)
``serve-idle``      ``--serve``, nobody connected (no JPEG is encoded)
``fast-viewer``     one viewer reading ``/stream.mjpg`` and ``/events`` as fast as they come
``slow-viewer``     one viewer reading both at ``--slow-kbps`` through a small receive buffer
``stalled-viewer``  one viewer that connects to both and never reads

Configurations are interleaved ``--repeats`` times (A B C D E A B C D E ...) so that a change in the
machine's load hits all of them; the median FPS of each is compared with ``no-serve``::

    python -m headpose.benchmarks.serve_load --detector DIR --pose DIR --video ../shared/data/in_video.mp4

writes ``benchmarks/results/serve-load/serve-load-<device>-<UTC time>.json`` (not a bench result: kept out of the report's folder) (``--out``) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional

CONFIGS = ("no-serve", "serve-idle", "fast-viewer", "slow-viewer", "stalled-viewer")
RESULTS = Path(__file__).resolve().parent / "results" / "serve-load"
SUMMARY = re.compile(r"headpose run: (\d+) frames, \d+ faces, ([\d.]+) FPS end-to-end \(([\d.]+) s\)")


def parse_summary(stdout: str) -> Optional[tuple]:
    """``(frames, fps)`` from ``headpose run``'s summary line (fps as frames / wall time), or None."""
    m = SUMMARY.search(stdout)
    if not m:
        return None
    frames, fps, wall = int(m.group(1)), float(m.group(2)), float(m.group(3))
    return frames, round(frames / wall, 3) if wall > 0 else fps


def _viewer(port: int, path: str, stop: threading.Event, kbps: Optional[float], read: bool = True) -> None:
    """Read ``path`` until ``stop``: at full speed (kbps None), throttled, or not at all (read False)."""
    s = socket.socket()
    if kbps:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        s.connect(("127.0.0.1", port))
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        s.settimeout(0.5)
        while not stop.is_set():
            if not read:
                stop.wait(0.1)
                continue
            try:
                data = s.recv(4096 if kbps else 1 << 20)
            except socket.timeout:
                continue
            if not data:
                return
            if kbps:
                time.sleep(len(data) / (kbps * 1000 / 8))
    except OSError:
        pass
    finally:
        s.close()


def run_once(config: str, cmd: List[str], slow_kbps: float) -> dict:
    """One ``headpose run`` under ``config``: ``{"frames", "fps", "cpu_s", "load"}``.

    ``cpu_s`` is the child's user + system CPU time (model loading included, the same in every
    configuration); ``load`` the 1-minute load average after it.
    """
    serve = config != "no-serve"
    p = subprocess.Popen(cmd + (["--serve", "127.0.0.1:0"] if serve else []), stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    stop = threading.Event()
    threads = []
    lines = []
    for line in p.stdout:
        lines.append(line)
        m = re.search(r"live view at http://127\.0\.0\.1:(\d+)/", line)
        if m:
            port = int(m.group(1))
            if config in ("fast-viewer", "slow-viewer", "stalled-viewer"):
                kbps = slow_kbps if config == "slow-viewer" else None
                for path in ("/stream.mjpg", "/events"):
                    threads.append(threading.Thread(target=_viewer, daemon=True,
                                                    args=(port, path, stop, kbps, config != "stalled-viewer")))
            for t in threads:
                t.start()
            break
    out = "".join(lines) + p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)  # the child's CPU time: what serving costs, whatever the load
    p.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    for t in threads:
        t.join(timeout=5)
    got = parse_summary(out)
    if p.returncode != 0 or got is None:
        raise RuntimeError(f"headpose run ({config}) failed with exit code {p.returncode}: {out[-2000:]}")
    return {"frames": got[0], "fps": got[1], "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
            "load": round(os.getloadavg()[0], 2)}


class _Face:
    """A face record of the video's size (7 of them per frame, as in_video.mp4 has)."""

    def __init__(self, track_id: int):
        self.track_id = track_id

    def to_dict(self) -> dict:
        return {"track_id": self.track_id, "box": [474.83, 193.97, 528.74, 265.07], "score": 0.8693,
                "keypoints": [[486.43, 220.1]] * 5, "yaw": -12.3456, "pitch": 4.5678, "roll": 1.2345}


def sink_cost(frames: int = 300, size=(720, 1280)) -> Dict[str, float]:
    """Microseconds ``LiveView.write`` (plus ``wants_image``) takes on the pipeline's thread, per frame.

    In-process and independent of the models: no viewer, a fast viewer of both streams, a stalled one.
    The JPEG encoding runs in the view's own thread and is not in these figures (it is in the FPS runs).
    """
    import numpy as np
    from headpose.runtime.serve import LiveView
    image = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    faces = [_Face(i) for i in range(1, 8)]
    out = {}
    for config in ("serve-idle", "fast-viewer", "stalled-viewer"):
        with LiveView("127.0.0.1:0", fps=15.0) as view:
            stop = threading.Event()
            threads = [threading.Thread(target=_viewer, daemon=True,
                                        args=(view.port, path, stop, None, config == "fast-viewer"))
                       for path in ("/stream.mjpg", "/events")] if config != "serve-idle" else []
            for t in threads:
                t.start()
            deadline = time.monotonic() + 5
            while threads and view.health()["viewers"]["events"] < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            spent = 0.0
            for i in range(frames):
                t0 = time.perf_counter()
                view.write(i, 150.0, faces, image if view.wants_image() else None)
                spent += time.perf_counter() - t0
                time.sleep(1 / 30)  # a 30 FPS pipeline
            stop.set()
        out[config] = round(spent / frames * 1e6, 1)
    return out


def summarise(runs: Dict[str, List[float]], cpu: Optional[Dict[str, List[float]]] = None,
              frames: int = 0) -> Dict[str, dict]:
    """Median FPS per configuration and its change against ``no-serve`` (percent); with ``cpu`` (seconds
    per run) and ``frames``, the median extra CPU ms per frame against ``no-serve`` too."""
    ref = statistics.median(runs["no-serve"]) if runs.get("no-serve") else None
    cpu_ref = statistics.median(cpu["no-serve"]) if cpu and cpu.get("no-serve") else None
    out = {}
    for config, fps in runs.items():
        med = statistics.median(fps)
        out[config] = {"fps_median": round(med, 2), "fps_runs": fps,
                       "change_pct": round(100.0 * (med - ref) / ref, 1) if ref else None}
        if cpu_ref is not None and frames and cpu.get(config):
            out[config]["cpu_s_runs"] = cpu[config]
            out[config]["extra_cpu_ms_per_frame"] = round((statistics.median(cpu[config]) - cpu_ref) / frames * 1e3, 2)
    return out


def table(summary: Dict[str, dict]) -> str:
    rows = [f"| {'configuration':<15} | {'FPS (median)':>12} | {'vs no-serve':>11} | extra CPU ms/frame | runs (FPS) |",
            "|---|---:|---:|---:|---|"]
    for config, s in summary.items():
        change = "-" if s["change_pct"] is None or config == "no-serve" else f"{s['change_pct']:+.1f} %"
        cpu = s.get("extra_cpu_ms_per_frame")
        cpu = "-" if cpu is None or config == "no-serve" else f"{cpu:+.1f}"
        rows.append(f"| {config:<15} | {s['fps_median']:>12.2f} | {change:>11} | {cpu:>18} | "
                    f"{', '.join(f'{v:.2f}' for v in s['fps_runs'])} |")
    return "\n".join(rows)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m headpose.benchmarks.serve_load", description=__doc__.split("\n")[0])
    ap.add_argument("--detector", required=True, metavar="DIR")
    ap.add_argument("--pose", required=True, metavar="DIR")
    ap.add_argument("--video", required=True)
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--slow-kbps", type=float, default=400.0, help="the slow viewer's reading rate (kbit/s)")
    ap.add_argument("--device-name", default=socket.gethostname())
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    cmd = [sys.executable, "-m", "headpose.cli", "run", "--detector", args.detector, "--pose", args.pose,
           "--source", args.video, "--max-frames", str(args.frames), "--threads", str(args.threads)]
    runs: Dict[str, List[float]] = {c: [] for c in CONFIGS}
    loads: List[float] = []
    cpu: Dict[str, List[float]] = {c: [] for c in CONFIGS}
    for r in range(args.repeats):
        for config in CONFIGS:
            res = run_once(config, cmd, args.slow_kbps)
            runs[config].append(res["fps"])
            loads.append(res["load"])
            cpu[config].append(res["cpu_s"])
            print(f"repeat {r + 1}/{args.repeats} {config:<15} {res['fps']:.2f} FPS, {res['cpu_s']:.1f} s CPU "
                  f"(load {res['load']})", flush=True)
    summary = summarise(runs, cpu, args.frames)
    cost = sink_cost()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    record = {"kind": "serve-load", "device": args.device_name, "time_utc": stamp, "frames": args.frames,
              "threads": args.threads, "repeats": args.repeats, "slow_kbps": args.slow_kbps,
              "detector": Path(args.detector).name, "pose": Path(args.pose).name, "serve_fps": 15,
              "cpus": os.cpu_count(), "load_avg_1min": loads, "results": summary,
              "write_us_per_frame": cost}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"serve-load-{args.device_name}-{stamp}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(table(summary))
    print("LiveView.write on the pipeline's thread, us per frame: "
          + ", ".join(f"{k} {v}" for k, v in cost.items()))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
