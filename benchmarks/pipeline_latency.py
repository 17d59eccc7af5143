"""End-to-end pipeline latency on a real video: per stage, per frame, FPS, faces per frame.

Two pipelines run over the same frames of the same video:

- ``litert``: our :class:`~headpose.runtime.estimator.HeadPoseEstimator` (TFLite artifacts in LiteRT,
  batched pose over all faces, IoU tracking with ``detect_every``, One-Euro smoothing).
- ``onnxruntime``: the upstream yakhyo/head-pose-estimation inference style on the same models'
  ONNX files: SCRFD in an ONNX Runtime session, then one ONNX Runtime pose call per face with the
  crop made by ``cv2.resize`` (:class:`OrtYakhyoPipeline`), no tracking or smoothing.

A frame's end-to-end latency is capture (decoding the next video frame) + the pipeline call +
drawing the result onto the frame; FPS is measured frames / the wall time of the measured loop.
A ``pipelined`` LiteRT spec runs the same estimator through
:class:`~headpose.runtime.pipelined.PipelinedRunner` (capture, detection and pose on their own
threads, ``threads`` split by :func:`~headpose.runtime.pipelined.split_threads`); its end-to-end
latency is capture -> result (queue waits included) + drawing, on the consuming thread.

:func:`add_bounds` gives every pipeline its **model-only bound** from the same run's model-only
timings: per frame, the measured capture (video decode) + the detector's model-only p50 on the
frames it ran + faces x the pose model's model-only p50 per face; ``efficiency`` = bound / the
pipeline's measured time per frame (1000 / FPS). :func:`gil_overlap` measures whether two
interpreters' ``invoke`` calls run at the same time on two threads.
"""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from ..runtime.draw import annotate
from ..runtime.errors import InputError
from ..runtime.manifest import load_manifest
from ..runtime.preprocess import expand_box
from ..runtime.rotation import euler_from_rotation, rotation_from_6d
from ..runtime.scrfd import decode_scrfd
from ..runtime.sources import open_source
from .stats import BUDGETS, fps, summarize, verdict

log = logging.getLogger(__name__)

# Stage names of a pipeline entry, in pipeline order.
STAGES = ("capture", "detector_preprocess", "detector", "decode", "crop", "pose", "smoothing", "draw")


# -- memory ------------------------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ``/proc/self/clear_refs``); False if not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (``VmHWM``, else ``ru_maxrss``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024.0, 1)
    except OSError:
        pass
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(ru / (1024.0 * 1024.0) if ru > 1 << 32 else ru / 1024.0, 1)  # bytes on macOS, KiB on Linux


# -- the upstream-style ONNX Runtime pipeline -----------------------------------------------------------
@dataclass
class SimpleFace:
    """A face of the baseline pipeline (what :func:`~headpose.runtime.draw.annotate` needs)."""

    track_id: int
    box: np.ndarray
    score: float
    yaw: float
    pitch: float
    roll: float


class OrtYakhyoPipeline:
    """SCRFD + pose in ONNX Runtime, one pose call per face, as the upstream inference script does.

    Parameters
    ----------
    detector_onnx, pose_onnx : path
        ONNX artifact directories (``manifest.json`` + ``model.onnx``) of the same models the LiteRT
        pipeline runs; tensors are found by their manifest names.
    threads : int
        ``intra_op_num_threads`` of both sessions.

    Attributes
    ----------
    last_timings : dict
        ms of the last call per stage (``detector_preprocess``, ``detector``, ``decode``, ``crop``
        = all per-face preprocessing, ``pose`` = all per-face session runs).
    """

    def __init__(self, detector_onnx, pose_onnx, threads: int = 1):
        import cv2
        from .model_latency import ort_session
        self.cv2 = cv2
        self.det_m = load_manifest(detector_onnx, expect_task="face_detection")
        self.pose_m = load_manifest(pose_onnx, expect_task="head_pose")
        for m in (self.det_m, self.pose_m):
            if m.format != "onnx":
                raise InputError(f"the ONNX Runtime baseline needs onnx artifacts; '{m.id}' is {m.format}")
        self.det = ort_session(self.det_m.model_path, threads)
        self.pose = ort_session(self.pose_m.model_path, threads)
        d = self.det_m.decode
        self.strides, self.anchors = list(d["strides"]), int(d["anchors_per_cell"])
        self.score_threshold, self.nms_threshold = float(d["score_threshold"]), float(d["nms_threshold"])
        self.det_roles = {o.name: (o.role, int(o.stride)) for o in self.det_m.outputs if o.stride is not None}
        self.det_names = list(self.det_roles)
        inp = self.det_m.input
        self.det_hw = (inp.shape[2], inp.shape[3]) if inp.layout == "NCHW" else (inp.shape[1], inp.shape[2])
        self.det_nchw = inp.layout == "NCHW"
        p = self.pose_m.input
        self.pose_hw = (p.shape[2], p.shape[3]) if p.layout == "NCHW" else (p.shape[1], p.shape[2])
        self.pose_nchw = p.layout == "NCHW"
        self.pose_out = self.pose_m.output("ortho6d").name
        self.margin = float(self.pose_m.decode.get("crop", {}).get("margin", 0.2))
        self.last_timings: Dict[str, float] = {}

    def _det_blob(self, frame: np.ndarray) -> Tuple[np.ndarray, float]:
        cv2 = self.cv2
        ih, iw = self.det_hw
        h, w = frame.shape[:2]
        if h / w > ih / iw:
            nh, nw = ih, int(ih / (h / w))
        else:
            nw, nh = iw, int(iw * (h / w))
        canvas = np.zeros((ih, iw, 3), np.uint8)
        canvas[:nh, :nw] = cv2.resize(frame, (nw, nh))
        inp = self.det_m.input
        rgb = inp.color == "RGB"
        x = cv2.dnn.blobFromImage(canvas, 1.0 / float(inp.std[0]), (iw, ih), tuple(float(v) for v in inp.mean),
                                  swapRB=rgb)
        return (x if self.det_nchw else x.transpose(0, 2, 3, 1)), nh / h

    def __call__(self, frame: np.ndarray) -> List[SimpleFace]:
        cv2 = self.cv2
        t0 = time.perf_counter()
        blob, scale = self._det_blob(frame)
        t1 = time.perf_counter()
        outs = self.det.run(self.det_names, {self.det_m.input.name: blob})
        t2 = time.perf_counter()
        raw = {self.det_roles[n]: o for n, o in zip(self.det_names, outs)}
        dets, _ = decode_scrfd(raw, self.det_hw, self.strides, self.anchors, self.score_threshold,
                               self.nms_threshold, scale)
        t3 = time.perf_counter()
        crop_ms = pose_ms = 0.0
        faces: List[SimpleFace] = []
        h, w = frame.shape[:2]
        p = self.pose_m.input
        mean, std = np.asarray(p.mean, np.float32), np.asarray(p.std, np.float32)
        for i, det in enumerate(dets):
            a = time.perf_counter()
            x1, y1, x2, y2 = expand_box(det[:4], self.margin)
            crop = frame[y1:min(y2, h), x1:min(x2, w)]
            if crop.size == 0:
                continue
            img = cv2.resize(crop, (self.pose_hw[1], self.pose_hw[0]))
            if p.color == "RGB":
                img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            x = (img.astype(np.float32) - mean) / std
            x = x.transpose(2, 0, 1)[None] if self.pose_nchw else x[None]
            b = time.perf_counter()
            v6 = self.pose.run([self.pose_out], {p.name: np.ascontiguousarray(x)})[0]
            c = time.perf_counter()
            eul = euler_from_rotation(rotation_from_6d(v6.reshape(-1, 6))).reshape(-1, 3)[0]
            faces.append(SimpleFace(i + 1, det[:4], float(det[4]), yaw=float(eul[1]), pitch=float(eul[0]),
                                    roll=float(eul[2])))
            crop_ms += (b - a) * 1e3
            pose_ms += (c - b) * 1e3 + (time.perf_counter() - c) * 1e3
        self.last_timings = {"detector_preprocess": (t1 - t0) * 1e3, "detector": (t2 - t1) * 1e3,
                             "decode": (t3 - t2) * 1e3, "crop": crop_ms, "pose": pose_ms, "smoothing": 0.0}
        return faces

    def reset(self) -> None:
        """Nothing to forget (no tracking); present for symmetry with the estimator."""


# -- the measured loop ----------------------------------------------------------------------------------
@dataclass
class PipelineSpec:
    """One pipeline configuration to measure.

    Attributes
    ----------
    backend : ``"litert"`` or ``"onnxruntime"``
    detector, pose : artifact directories (tflite for litert, onnx for onnxruntime)
    threads, xnnpack, detect_every : run settings (xnnpack and detect_every apply to litert)
    """

    backend: str
    detector: Path
    pose: Path
    threads: int = 1
    xnnpack: bool = True
    detect_every: int = 1
    smooth: bool = True
    draw: str = "axis"
    pipelined: bool = False

    @property
    def key(self) -> str:
        pm = load_manifest(self.pose)
        xnn = ("xnn" if self.xnnpack else "noxnn") if self.backend == "litert" else "-"
        return (f"{self.backend}|{pm.model}|{pm.precision}|t{self.threads}|de{self.detect_every}|{xnn}"
                + ("|pipe" if self.pipelined else ""))

    @property
    def stage_threads(self) -> Tuple[int, int]:
        """Interpreter threads ``(detector, pose)``: both ``threads``, or split when pipelined."""
        if self.pipelined:
            from ..runtime.pipelined import split_threads
            return split_threads(self.threads)
        return self.threads, self.threads


def litert_estimator(spec: PipelineSpec):
    """The :class:`HeadPoseEstimator` of a LiteRT spec (interpreter threads per :attr:`PipelineSpec.stage_threads`)."""
    from ..runtime.estimator import EstimatorOptions, HeadPoseEstimator
    det_t, pose_t = spec.stage_threads
    opts = EstimatorOptions(threads=spec.threads, xnnpack=spec.xnnpack, detect_every=spec.detect_every,
                            smooth=spec.smooth, draw=spec.draw, detector_threads=det_t, pose_threads=pose_t)
    return HeadPoseEstimator.from_artifacts(spec.detector, spec.pose, opts)


def build_pipeline(spec: PipelineSpec):
    """Load a pipeline: returns ``(process(frame) -> faces, timings(), reset(), draw(frame, faces))``."""
    if spec.pipelined and spec.backend != "litert":
        raise InputError("only the LiteRT pipeline has a pipelined mode (the ONNX Runtime baseline is the "
                         "upstream loop, one stage after another)")
    if spec.backend == "litert":
        est = litert_estimator(spec)
        return est.estimate, (lambda: est.last_timings), est.reset, est.annotate
    if spec.backend == "onnxruntime":
        if spec.detect_every != 1:
            raise InputError("the ONNX Runtime baseline detects on every frame (upstream has no tracking): "
                             "use detect_every 1 for it")
        pipe = OrtYakhyoPipeline(spec.detector, spec.pose, spec.threads)
        mode = spec.draw

        def draw(frame, faces):
            return annotate(frame, faces, mode, "BGR", True, pipe.margin)
        return pipe, (lambda: pipe.last_timings), pipe.reset, draw
    raise InputError(f"pipeline backend must be 'litert' or 'onnxruntime', found {spec.backend!r}")


class VideoFrames:
    """Frames of a video in order, read (and timed) on demand; ``loop=True`` restarts at the end.

    A thin pull-style wrapper over the runtime's own reader (:func:`~headpose.runtime.sources.open_source`),
    so the benchmark decodes frames exactly as ``headpose run`` does.
    """

    def __init__(self, video, limit: Optional[int] = None, loop: bool = False):
        self.video, self.limit, self.loop = video, limit, loop
        self._open()
        self.count = 0

    def _open(self) -> None:
        self.source = open_source(str(self.video))
        self._frames = iter(self.source)

    def read(self) -> Optional[np.ndarray]:
        """The next frame (BGR uint8) or None at the end / the limit."""
        if self.limit is not None and self.count >= self.limit:
            return None
        frame = next(self._frames, None)
        if frame is None and self.loop and self.count > 0:
            self.source.close()
            self._open()
            frame = next(self._frames, None)
        if frame is None:
            return None
        self.count += 1
        return frame.image

    def close(self) -> None:
        self.source.close()


def measure_pipeline(spec: PipelineSpec, video, frames: Optional[int] = 100, warmup: int = 3,
                     progress: Optional[Callable[[int], None]] = None, budgets: Dict[str, float] = BUDGETS,
                     duration_s: Optional[float] = None, on_frame: Optional[Callable[[float], None]] = None,
                     keep_samples: bool = True) -> Dict[str, object]:
    """Run one pipeline over the first ``frames`` frames of ``video`` and summarise it.

    Parameters
    ----------
    frames : int or None
        Measured frames (None: the whole video). Ignored when ``duration_s`` is given.
    warmup : int
        Untimed calls on the first frame before measuring (then the tracker state is reset, so the
        measured run starts from frame 0 like every other configuration).
    duration_s : float, optional
        Sustained mode: loop the video for this many seconds.
    on_frame : callable, optional
        Called with each frame's end-to-end ms (the sustained recorder).

    Returns
    -------
    dict
        A ``pipelines`` entry of the result schema.
    """
    reset_peak_rss()
    t0 = time.perf_counter()
    process, timings, reset, draw = build_pipeline(spec)
    load_ms = (time.perf_counter() - t0) * 1000.0
    src = VideoFrames(video, limit=None if duration_s else frames, loop=bool(duration_s))
    first = src.read()
    if first is None:
        raise InputError(f"video '{video}' yielded no frames")
    t0 = time.perf_counter()
    process(first)
    first_ms = (time.perf_counter() - t0) * 1000.0
    for _ in range(max(0, warmup - 1)):
        process(first)
    reset()
    src.close()
    src = VideoFrames(video, limit=None if duration_s else frames, loop=bool(duration_s))
    per_stage: Dict[str, List[float]] = {k: [] for k in STAGES}
    e2e: List[float] = []
    faces_n: List[int] = []
    t_end = time.perf_counter() + duration_s if duration_s else None
    loop = _pipelined_loop if spec.pipelined else _sequential_loop
    wall0 = time.perf_counter()
    try:
        loop(src, process, timings, draw, per_stage, e2e, faces_n, progress, on_frame, t_end)
    finally:
        src.close()
    wall = time.perf_counter() - wall0
    if not e2e:
        raise InputError(f"no frames were measured from '{video}'")
    dm, pm = load_manifest(spec.detector), load_manifest(spec.pose)
    e2e_stats = summarize(e2e)
    rate = fps(len(e2e), wall)
    entry: Dict[str, object] = {
        "key": spec.key, "backend": spec.backend,
        "style": "headpose" if spec.backend == "litert" else "yakhyo-onnxruntime",
        "detector": dm.id, "detector_sha256": dm.file_sha256, "pose": pm.id, "pose_sha256": pm.file_sha256,
        "model": pm.model, "precision": pm.precision, "detector_precision": dm.precision,
        "threads": spec.threads, "xnnpack": spec.xnnpack if spec.backend == "litert" else None,
        "pipelined": spec.pipelined, "detector_threads": spec.stage_threads[0], "pose_threads": spec.stage_threads[1],
        "detected_frames": int(sum(1 for v in per_stage["detector"] if v > 0)),
        "detect_every": spec.detect_every, "smooth": spec.smooth if spec.backend == "litert" else False,
        "draw": spec.draw, "frames": len(e2e), "faces_total": int(sum(faces_n)),
        "faces_per_frame": {"mean": round(float(np.mean(faces_n)), 3), "max": int(max(faces_n))},
        "load_ms": round(load_ms, 3), "first_frame_ms": round(first_ms, 3), "peak_rss_mb": peak_rss_mb(),
        "stages": {k: summarize(v) for k, v in per_stage.items() if v},
        "end_to_end": e2e_stats, "wall_s": round(wall, 3), "fps": rate,
        "verdict": verdict(rate, e2e_stats["p99"], budgets),
    }
    if keep_samples:
        entry["samples_ms"] = [round(v, 3) for v in e2e]
        entry["faces_per_frame_series"] = faces_n
    return entry


def _sequential_loop(src, process, timings, draw, per_stage, e2e, faces_n, progress, on_frame, t_end) -> None:
    """One frame after another: read, process, draw (the loop of ``headpose run``)."""
    while True:
        a = time.perf_counter()
        frame = src.read()
        if frame is None:
            break
        b = time.perf_counter()
        faces = process(frame)
        c = time.perf_counter()
        draw(frame, faces)
        d = time.perf_counter()
        _record(per_stage, e2e, faces_n, (b - a) * 1e3, timings(), (d - c) * 1e3, (d - a) * 1e3, len(faces))
        if progress:
            progress(1)
        if on_frame:
            on_frame(e2e[-1])
        if t_end is not None and d >= t_end:
            break


def _pipelined_loop(src, process, timings, draw, per_stage, e2e, faces_n, progress, on_frame, t_end) -> None:
    """The stages overlapped (:class:`~headpose.runtime.pipelined.PipelinedRunner`); drawing on this thread.
    ``process`` is the estimator's bound ``estimate`` (its owner runs the stages)."""
    from ..runtime.pipelined import PipelinedRunner
    from ..runtime.sources import Frame
    est = process.__self__

    def frames():
        i = 0
        while True:
            img = src.read()
            if img is None:
                return
            yield Frame(i, img, i / 25.0)
            i += 1

    with PipelinedRunner(est, frames()) as runner:
        for r in runner:
            c = time.perf_counter()
            draw(r.frame.image, r.faces)
            d = time.perf_counter()
            _record(per_stage, e2e, faces_n, r.capture_ms, r.timings, (d - c) * 1e3, r.latency_ms + (d - c) * 1e3,
                    len(r.faces))
            if progress:
                progress(1)
            if on_frame:
                on_frame(e2e[-1])
            if t_end is not None and d >= t_end:
                runner.stop()
                break


def _record(per_stage, e2e, faces_n, capture_ms, st, draw_ms, total_ms, n_faces) -> None:
    per_stage["capture"].append(capture_ms)
    for k in STAGES[1:-1]:
        per_stage[k].append(float(st.get(k, 0.0)))
    per_stage["draw"].append(draw_ms)
    e2e.append(total_ms)
    faces_n.append(n_faces)


# -- the model-only bound ---------------------------------------------------------------------------------
def _model_p50(model_latency, artifact: str, threads: int, xnnpack) -> Dict[int, float]:
    """batch -> model-only p50 ms of one artifact at ``threads`` (and XNNPACK setting, LiteRT)."""
    out: Dict[int, float] = {}
    for e in model_latency or []:
        if e.get("artifact") != artifact or e.get("threads") != threads:
            continue
        if xnnpack is not None and e.get("xnnpack") is not None and bool(e.get("xnnpack")) != bool(xnnpack):
            continue
        out[int(e.get("batch", 1))] = float(e["stats"]["p50"])
    return out


def pipeline_bound(p: Dict[str, object], model_latency) -> Optional[Dict[str, object]]:
    """The model-only bound of one ``pipelines`` entry from its run's ``model_latency`` entries.

    Per frame: ``capture_ms`` (the pipeline's own mean video decode) + ``detector_ms`` (the detector
    artifact's model-only p50 at the pipeline's detector threads, times the fraction of frames it ran
    on) + ``faces_per_frame`` x ``pose_ms_per_face`` (the pose artifact's model-only p50 at the pose
    threads, divided by its batch; the cheapest measured batch per face). None when the run holds no
    model-only timing of either artifact at those threads.

    Returns
    -------
    dict
        ``ms_per_frame``, ``capture_ms``, ``detector_ms``, ``detector_model_ms``, ``detected_fraction``,
        ``pose_ms_per_face``, ``pose_batch``, ``faces_per_frame``, ``detector_threads``, ``pose_threads``.
    """
    xnn = p.get("xnnpack")
    det_t = int(p.get("detector_threads") or p["threads"])
    pose_t = int(p.get("pose_threads") or p["threads"])
    det = _model_p50(model_latency, p.get("detector"), det_t, xnn).get(1)
    pose = _model_p50(model_latency, p.get("pose"), pose_t, xnn)
    if det is None or not pose:
        return None
    batch, per_face = min(((b, v / b) for b, v in pose.items()), key=lambda bv: bv[1])
    frames = int(p["frames"])
    de = int(p.get("detect_every", 1) or 1)
    detected = p.get("detected_frames")
    if detected is None:  # results written before detected_frames: the schedule, frame 0 first
        detected = -(-frames // de)
    frac = float(detected) / frames if frames else 0.0
    capture = float(((p.get("stages") or {}).get("capture") or {}).get("mean", 0.0))
    faces = float((p.get("faces_per_frame") or {}).get("mean", 0.0))
    total = capture + det * frac + faces * per_face
    return {"ms_per_frame": round(total, 3), "capture_ms": round(capture, 3), "detector_ms": round(det * frac, 3),
            "detector_model_ms": round(det, 3), "detected_fraction": round(frac, 4),
            "pose_ms_per_face": round(per_face, 3), "pose_batch": batch, "faces_per_frame": round(faces, 3),
            "detector_threads": det_t, "pose_threads": pose_t}


def add_bounds(pipelines, model_latency) -> int:
    """Set ``bound`` and ``efficiency`` (= bound ms per frame / (1000 / FPS)) on every pipeline entry whose
    model-only timings the run holds; returns how many got one."""
    n = 0
    for p in pipelines:
        b = pipeline_bound(p, model_latency)
        if b is None or not p.get("fps"):
            continue
        p["bound"] = b
        p["efficiency"] = round(b["ms_per_frame"] * float(p["fps"]) / 1000.0, 3)
        n += 1
    return n


def gil_overlap(detector_dir, pose_dir, video=None, runs: int = 20, threads: int = 1) -> Dict[str, object]:
    """Do two LiteRT interpreters run at the same time on two Python threads (``invoke`` releasing the GIL)?

    The detector and the pose artifact (batch 1, real inputs when ``video`` is given) are each called
    ``runs`` times: one after the other on one thread, then each on its own thread at once.

    Returns
    -------
    dict
        ``sequential_ms``, ``threaded_ms``, ``overlap`` = sequential / threaded (about 1 when the
        calls take turns, as a held GIL forces; up to 2 with two free cores), ``runs``, ``threads``.
    """
    import threading
    from .model_latency import first_frame, litert_runner
    frame = first_frame(video) if video is not None else None
    a = litert_runner(detector_dir, threads, True, frame).call
    b = litert_runner(pose_dir, threads, True, frame).call
    for f in (a, b, a, b):
        f()
    t0 = time.perf_counter()
    for _ in range(runs):
        a()
        b()
    seq = time.perf_counter() - t0

    def loop(f):
        for _ in range(runs):
            f()
    ts = [threading.Thread(target=loop, args=(f,)) for f in (a, b)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    thr = time.perf_counter() - t0
    return {"sequential_ms": round(seq * 1e3, 3), "threaded_ms": round(thr * 1e3, 3),
            "overlap": round(seq / thr, 3) if thr > 0 else 0.0, "runs": runs, "threads": threads}


def measure_pipelines(specs, video, frames: Optional[int], warmup: int, bar, keep_samples: bool = True
                      ) -> List[Dict[str, object]]:
    """:func:`measure_pipeline` for each spec in turn, each result with the 1-minute ``loadavg_start``
    it began under; ``bar`` is the run's progress bar (postfix = the pipeline's key, one tick a frame)."""
    from .load import loadavg
    out = []
    for s in specs:
        bar.set_postfix_str(s.key)
        la = loadavg()
        e = measure_pipeline(s, video, frames, warmup, bar.update, BUDGETS, keep_samples=keep_samples)
        e["loadavg_start"] = la
        out.append(e)
    return out
