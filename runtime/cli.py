"""``headpose run``: head pose on a camera, stream, video, image or folder.

This module is imported by ``headpose --help``: at import time it needs only the standard library;
NumPy, the interpreter and OpenCV are imported inside :func:`run`.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import List, Optional, Tuple

from .paths import PROJECT_ROOT  # read at call time: tests point it elsewhere

log = logging.getLogger(__name__)


def _export_dirs() -> List[Path]:
    """Folders searched for default artifacts, in order: ``$HEADPOSE_WEIGHTS_DIR/exports`` alone when
    that variable is set (it is also where they are built), else ``./weights/exports`` and then the
    checkout's ``weights/exports``."""
    env = os.environ.get("HEADPOSE_WEIGHTS_DIR")
    if env:
        return [Path(env) / "exports"]
    dirs = [Path.cwd() / "weights" / "exports", PROJECT_ROOT / "weights" / "exports"]
    out = []
    for d in dirs:
        if d.resolve() not in [o.resolve() for o in out]:
            out.append(d)
    return out


def _fast_dirs() -> List[Path]:
    """Where the fast defaults are looked for: the export folders (:func:`_export_dirs`), the int8
    artifacts the project ships (the checkout's ``weights/int8/``, also when ``$HEADPOSE_WEIGHTS_DIR`` is
    set), then the bench cache ``weights/cache/bench/*/`` of the export folders' weights folders (newest first)."""
    out = list(_export_dirs())
    roots = [d.parent for d in out]
    shipped = [w / "int8" for w in roots + [PROJECT_ROOT / "weights"]]  # the checkout's own, even with
    out += [d for i, d in enumerate(shipped) if d.is_dir() and d not in shipped[:i]]  # HEADPOSE_WEIGHTS_DIR
    for w in roots:
        cache = w / "cache" / "bench"
        if cache.is_dir():
            out += sorted((t for t in cache.iterdir() if t.is_dir() and t.name != "seeded"),
                          key=lambda t: t.stat().st_mtime, reverse=True)
    return out


def default_source() -> str:
    """The source of ``headpose run`` without ``--source``: the camera when one is present, else the
    sample photo (29 real faces) that ``./install.sh`` unpacks into ``weights/cache/``.

    Raises
    ------
    InputError
        When there is neither.
    """
    from .errors import InputError
    from .registry import DEFAULT_SAMPLE
    if Path("/dev/video0").exists():
        return "0"
    weights = [Path(os.environ["HEADPOSE_WEIGHTS_DIR"])] if os.environ.get("HEADPOSE_WEIGHTS_DIR") else []
    for w in weights + [Path.cwd() / "weights", PROJECT_ROOT / "weights"]:
        if (w / DEFAULT_SAMPLE).is_file():
            return str(w / DEFAULT_SAMPLE)
    raise InputError("no --source given, no camera at /dev/video0 and no sample image in weights/cache/ "
                     "(./install.sh puts one there): pass --source VIDEO|IMAGE|FOLDER|CAMERA_INDEX|picamera")


def default_artifacts(threads: int = 1) -> Tuple[Path, Path]:
    """The detector and pose artifact directories ``headpose run`` uses without ``--detector/--pose``.

    Per model, the fastest on this machine (at ``threads`` threads, timed once and remembered in
    ``<weights>/cache/fast_defaults.json``) of the registry's ``FAST_DETECTORS`` / ``FAST_POSES``
    present in :func:`_fast_dirs` whose gates passed (:func:`~headpose.runtime.resolve.fast_default`:
    e.g. SCRFD-500M int8/fp32 and the shipped student's int8/fp32 artifacts, built by ``headpose
    convert`` or ``headpose bench`` on this install, or shipped); else the fresh-machine defaults (``scrfd_2.5g-640-tflite-fp32``,
    ``mobilenetv3_small-224-tflite-fp32``) in ``$HEADPOSE_WEIGHTS_DIR/exports`` only when that is set,
    else in ``./weights/exports`` and then the checkout's ``weights/exports`` (see :func:`_export_dirs`).

    Returns
    -------
    (detector_dir, pose_dir) : Path

    Raises
    ------
    ManifestError
        Naming the missing artifact(s) and the exact ``headpose convert`` commands that build them.
    """
    from .errors import ManifestError
    from .manifest import MANIFEST_NAME, artifact_id
    from .registry import DEFAULT_DETECTOR, DEFAULT_POSE

    det_id, pose_id = artifact_id(*DEFAULT_DETECTOR), artifact_id(*DEFAULT_POSE)
    dirs = _export_dirs()

    def find(name: str) -> Optional[Path]:
        for d in dirs:
            if (d / name / MANIFEST_NAME).exists():
                return d / name
        return None

    from .resolve import fast_default
    fast = _fast_dirs()
    env = os.environ.get("HEADPOSE_WEIGHTS_DIR")  # the candidates' speed on this machine, kept beside them
    ranking = (Path(env) if env else PROJECT_ROOT / "weights") / "cache" / "fast_defaults.json"
    det = fast_default("face_detection", fast, root=PROJECT_ROOT, threads=threads, cache=ranking) or find(det_id)
    pose = fast_default("head_pose", fast, root=PROJECT_ROOT, threads=threads, cache=ranking) or find(pose_id)
    if det and pose:
        return det, pose
    commands = []
    if det is None:
        commands.append("headpose convert scrfd_2.5g --weights weights/cache/scrfd-0.3.0/models/scrfd.onnx "
                        "--format tflite --precision fp32 --calib weights/cache/scrfd-0.3.0/images "
                        "--out weights/exports")
    if pose is None:
        commands.append("headpose convert mobilenetv3_small --weights weights/mobilenetv3_small_fsanet.pt "
                        "--format tflite --precision fp32 --calib weights/cache/scrfd-0.3.0/images "
                        "--out weights/exports")
    missing = " and ".join(n for n, p in ((det_id, det), (pose_id, pose)) if p is None)
    raise ManifestError(f"default artifact(s) {missing} not found in {', '.join(str(d) for d in dirs)}; "
                        f"`headpose run` builds them itself where the convert extra is installed; elsewhere build them "
                        f"from the checkout's root with: {'  ;  '.join(commands)}  (or pass --detector DIR --pose DIR)")


class _FrameBoundaryInterrupt:
    """Ctrl-C (SIGINT), SIGTERM (``systemctl stop``, ``kill``) or SIGHUP (a closed SSH session): finish
    the current frame (all sinks written), then stop; the exit code is 128 + the signal's number
    (130, 143, 129). A second signal stops at once (the outputs are still closed and published).

    Installed only in the main thread and only for signals that are not ignored (a background job
    keeps ignoring SIGINT, ``nohup`` SIGHUP); :meth:`restore` puts the previous handlers back.
    """

    NAMES = {"SIGINT": "Ctrl-C", "SIGTERM": "SIGTERM", "SIGHUP": "SIGHUP"}

    def __init__(self) -> None:
        import signal
        import threading
        self.requested = False
        self.signum = signal.SIGINT
        self._old = {}
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.NAMES:
            sig = getattr(signal, name, None)  # no SIGHUP on Windows
            if sig is not None and signal.getsignal(sig) is not signal.SIG_IGN:
                self._old[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        import signal
        self.requested, self.signum = True, signum
        log.info("%s: finishing this frame, then closing the outputs (again to stop at once)",
                 self.NAMES.get(signal.Signals(signum).name, signum))

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)

    def restore(self) -> None:
        import signal
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


def add_parser(sub) -> None:
    """Register ``headpose run``."""
    p = sub.add_parser(
        "run", help="estimate head poses on a camera, stream, video, image or folder",
        description="Detect faces (SCRFD), track them and estimate each head's yaw/pitch/roll with TFLite "
                    "artifacts; draw them and/or write JSON lines / CSV.")
    p.add_argument("--source", default=None,
                   help="picamera | camera index (0) | rtsp://... or http://... URL | video file | image | folder "
                        "(default: camera 0 when present, else the sample photo in weights/cache/)")
    p.add_argument("--detector", metavar="DIR|ID", help="SCRFD TFLite artifact: a directory, an artifact id "
                   "(scrfd_500m-640-tflite-int8) or a model id (its fp32 artifact), ids looked up in weights/exports "
                   "and the bench cache (default: weights/exports/scrfd_2.5g-640-tflite-fp32, built on first use)")
    p.add_argument("--pose", metavar="DIR|ID", help="pose TFLite artifact: a directory, an artifact id "
                   "(mobilenetv3_small-224-tflite-int8) or a model id, as --detector (default: "
                   "weights/exports/mobilenetv3_small-224-tflite-fp32, built on first use)")
    p.add_argument("--output", metavar="VIDEO", help="write the annotated video (.mp4 or .avi)")
    p.add_argument("--jsonl", metavar="FILE", help="write one JSON record per frame")
    p.add_argument("--csv", metavar="FILE", help="write one CSV row per face")
    p.add_argument("--show", action="store_true", help="show the annotated frames in a window (q/Esc quits)")
    p.add_argument("--threads", type=int, default=None,
                   help="interpreter CPU threads (default: this machine's cores); with --pipelined the detector "
                        "gets half (rounded down, >= 1) and the pose model all of them")
    p.add_argument("--pipelined", action="store_true",
                   help="overlap the stages: capture, detection and pose each on their own thread (frames still "
                        "come out in order, same faces and angles); faster on 2+ cores; the JSONL/CSV time_ms "
                        "is then the capture -> result latency")
    p.add_argument("--no-xnnpack", dest="xnnpack", action="store_false", help="run without the XNNPACK delegate")
    p.add_argument("--detect-every", type=int, default=1, metavar="N",
                   help="run the detector every N frames, carrying tracked boxes in between (default 1)")
    p.add_argument("--no-smooth", dest="smooth", action="store_false",
                   help="turn off the One-Euro smoothing of each track's rotation")
    p.add_argument("--max-faces", type=int, default=0, metavar="K", help="at most K faces per frame (0 = all)")
    p.add_argument("--score-threshold", type=float, default=None,
                   help="detection score threshold (default: the detector manifest's)")
    p.add_argument("--no-opencv", dest="use_opencv", action="store_false",
                   help="resize with NumPy even when OpenCV is installed")
    p.add_argument("--draw", choices=("axis", "cube", "none"), default="axis", help="pose drawing (default axis)")
    p.add_argument("--max-frames", type=int, default=0, metavar="N", help="stop after N frames (0 = all)")
    p.add_argument("--retries", type=int, default=5, help="retries of a live source that stops delivering frames")
    p.add_argument("--serve", metavar="[HOST:]PORT",
                   help="live view in a browser: annotated video, yaw/pitch/roll plots, FPS (GET /, /stream.mjpg, "
                        "/events, /healthz); binds 127.0.0.1 unless HOST is given (0.0.0.0: every interface, "
                        "then a token is required); port 0 takes a free one")
    p.add_argument("--serve-fps", type=float, default=15.0, metavar="FPS",
                   help="most video frames per second sent to the browser (default 15)")
    p.add_argument("--serve-token", metavar="TOKEN",
                   help="the token the live view requires (default: generated and printed when not on loopback)")
    p.set_defaults(func=run)


def _live_view(args: argparse.Namespace, src, est):
    """The ``--serve`` sink; prints its URL (with the token) at once, for people and for scripts."""
    import socket
    import sys
    from .serve import LiveView
    from .sinks import STDOUT
    live = LiveView(args.serve, token=args.serve_token, fps=args.serve_fps, timings=lambda: est.last_timings,
                    source=src.description)
    out = sys.stderr if STDOUT in (args.jsonl, args.csv) else sys.stdout  # stdout may carry the records
    print(f"headpose run: live view at {live.url}", file=out, flush=True)
    if live.host in ("0.0.0.0", "::"):
        shown = "[::]" if live.host == "::" else live.host
        print(f"headpose run: from another machine open it with this one's name or address, e.g. "
              f"{live.url.replace(shown, socket.gethostname(), 1)}", file=out, flush=True)
    return live


def _first_minute_sinks(src) -> list:
    """No output flag: annotated images and a face table for still images; a hint for other sources."""
    import sys
    from .stills import DEFAULT_DIR, AnnotatedImagesSink, FaceTableSink
    if src.independent:
        names = getattr(src, "paths", None)
        return [AnnotatedImagesSink(Path.cwd() / DEFAULT_DIR, names), FaceTableSink(sys.stdout, names)]
    print("headpose run: no output flag, so nothing is shown or written: --serve 8080 shows it in a browser "
          "(http://127.0.0.1:8080/)" + (", --show in a window" if os.environ.get("DISPLAY") else "")
          + ", --jsonl FILE / --csv FILE / --output VIDEO write it", flush=True)
    return []


def _sequential(est, src):
    """The sequential loop: ``(frame, faces, ms of the estimator call, stage timings)`` per frame."""
    for fr in src:
        if src.independent:  # unrelated images: no tracking or smoothing across them
            est.reset()
        t0 = time.perf_counter()
        faces = est.estimate(fr.image, "BGR", fr.timestamp)
        yield fr, faces, (time.perf_counter() - t0) * 1e3, est.last_timings


def run(args: argparse.Namespace) -> int:
    """Run the pipeline over ``args.source``; returns the exit code (130/143/129 after SIGINT/SIGTERM/SIGHUP).

    Raises
    ------
    SinkError
        An output that overlaps another or the source, cannot be written, or could not be published.
    """
    import sys
    from .estimator import EstimatorOptions, HeadPoseEstimator, STAGES
    from .sinks import STDOUT, CsvSink, JsonlSink, SinkError, VideoSink, WindowSink, check_outputs
    from .sources import open_source

    from .pipelined import machine_cores, split_threads
    threads = machine_cores() if getattr(args, "threads", None) is None else args.threads
    pipelined = bool(getattr(args, "pipelined", False))
    det_threads, pose_threads = split_threads(threads) if pipelined else (None, None)
    options = EstimatorOptions(threads=threads, xnnpack=args.xnnpack, detect_every=args.detect_every,
                               smooth=args.smooth, max_faces=args.max_faces, score_threshold=args.score_threshold,
                               use_opencv=args.use_opencv, draw=args.draw, detector_threads=det_threads,
                               pose_threads=pose_threads).validate()
    if args.serve:  # a bad --serve/--serve-fps/--serve-token fails before any model loads
        from .serve import check_options
        check_options(args.serve, args.serve_fps, args.serve_token)
    check_outputs({"--output": args.output, "--jsonl": args.jsonl, "--csv": args.csv}, args.source)
    from .resolve import resolve_artifact  # directory, artifact id or model id: the one resolver
    if args.detector and args.pose:
        det_dir, pose_dir = (resolve_artifact(args.detector, "face_detection"),
                             resolve_artifact(args.pose, "head_pose"))
    else:
        d_det, d_pose = default_artifacts(threads)
        det_dir = resolve_artifact(args.detector, "face_detection") if args.detector else d_det
        pose_dir = resolve_artifact(args.pose, "head_pose") if args.pose else d_pose

    est = src = bar = runner = None
    sinks = []
    latencies: List[float] = []  # capture -> result, ms per frame
    live, stills = None, []  # --serve; the annotated images of a run without output flags
    frames = faces_total = 0
    stage_sum = {k: 0.0 for k in STAGES}
    interrupted = False
    t_start = time.perf_counter()
    if args.source is None:
        args.source = default_source()
    stop = _FrameBoundaryInterrupt()
    try:
        est = HeadPoseEstimator.from_artifacts(det_dir, pose_dir, options)
        src = open_source(args.source, retries=args.retries)
        if args.output:
            sinks.append(VideoSink(args.output, fps=src.fps))
        if args.jsonl:
            sinks.append(JsonlSink(args.jsonl))
        if args.csv:
            sinks.append(CsvSink(args.csv))
        if args.show:
            sinks.append(WindowSink())
        live = _live_view(args, src, est) if args.serve else None
        stills = _first_minute_sinks(src) if not sinks and not live else []
        sinks += [live] if live else stills
        need_image = bool(args.output or args.show or stills)
        if not src.live and not stills:  # (the face table of stills is the progress)
            try:
                from tqdm import tqdm
                total = src.length if not args.max_frames else min(src.length or args.max_frames, args.max_frames)
                bar = tqdm(total=total, unit="frame", desc=Path(str(args.source)).name, leave=False)
            except ImportError:
                bar = None
        log.info("detector %s, pose %s, source %s, %s", est.detector.manifest.id, est.pose.manifest.id,
                 src.description, f"pipelined, threads {det_threads} detector + {pose_threads} pose" if pipelined
                 else f"sequential, {threads} thread(s)")
        t_start = time.perf_counter()
        if pipelined:
            from .pipelined import PipelinedRunner
            runner = PipelinedRunner(est, src, max_frames=args.max_frames)
            results = ((r.frame, r.faces, r.latency_ms, r.timings) for r in runner)
        else:
            results = _sequential(est, src)
        for fr, faces, ms, timings in results:
            if stop.requested:  # a signal while loading or reading: no frame after it
                break
            frames += 1
            faces_total += len(faces)
            latencies.append(ms)
            for k in STAGES:
                stage_sum[k] += timings.get(k, 0.0)
            image = est.annotate(fr.image, faces) if need_image or (live is not None and live.wants_image()) else None
            keep_going = True
            for s in sinks:
                keep_going = s.write(fr.index, ms, faces, image) and keep_going
            if bar is not None:
                bar.update(1)
            if stop.requested:
                interrupted = True
                break
            if not keep_going or (args.max_frames and frames >= args.max_frames):
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        stop.restore()
        interrupted = interrupted or stop.requested
        wall = time.perf_counter() - t_start
        if bar is not None:
            bar.close()
        threads_stopped = runner.close() if runner is not None else True  # before the source closes under it
        close_errors, failing = [], sys.exc_info()[0] is not None
        for s in sinks:  # renames the finished files into place, also after a signal
            try:
                s.close()
            except Exception as e:  # keep closing the others
                close_errors.append(str(e))
                if failing:  # another error ends the run: say this one here
                    log.error("closing %s failed: %s", type(s).__name__, e)
        if src is not None and threads_stopped:
            src.close()
        if est is not None:
            est.close()
    fps = frames / wall if wall > 0 and frames else 0.0
    per = ", ".join(f"{k} {stage_sum[k] / frames:.1f}" for k in STAGES) if frames else "-"
    if latencies:
        import statistics
        q = sorted(latencies)
        p99 = q[min(len(q) - 1, int(round(0.99 * (len(q) - 1))))]
        per += f"; latency capture->result p50 {statistics.median(q):.1f} p99 {p99:.1f} ms"
    per += " (pipelined)" if pipelined else ""
    to_stdout = {STDOUT, "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"}
    summary = sys.stderr if to_stdout & {args.jsonl, args.csv} else sys.stdout  # stdout carries the records
    try:
        print(f"headpose run: {frames} frames, {faces_total} faces, {fps:.1f} FPS end-to-end ({wall:.1f} s); "
              f"mean ms per frame: {per}" + (" (interrupted)" if interrupted else ""), file=summary, flush=True)
    except OSError:  # the terminal is gone (SIGHUP) or the pipe closed
        pass
    if close_errors:
        raise SinkError("; ".join(close_errors))
    if stills and stills[0].written:
        print(f"headpose run: {len(stills[0].written)} annotated image(s) in {stills[0].folder}/ "
              f"(--jsonl FILE / --csv FILE write the records)")
    return stop.exit_code if interrupted else 0
