"""``headpose bench`` and ``headpose bench-report``.

``headpose bench`` measures, in one run on one device: model-only latency of every artifact in the
matrix (LiteRT with/without XNNPACK, ONNX Runtime, optionally PyTorch eager), the end-to-end
pipelines (our LiteRT estimator per pose model x precision x threads x detect-every, and the
upstream-style ONNX Runtime pipeline on the same ONNX models and the same frames), the speed-up
ratios between them, and optionally a sustained run; it writes one result JSON
(:mod:`headpose.benchmarks.schema`) and prints a compact table.

``headpose bench-report results/*.json`` merges result files into Markdown, CSV and PNG plots.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import shlex
import sys
from pathlib import Path
from typing import Dict, List, Optional

from ..runtime.paths import PROJECT_ROOT, SHARED_VIDEO as DEFAULT_VIDEO
from .load import loadavg

log = logging.getLogger(__name__)

DEFAULT_OUT = PROJECT_ROOT / "benchmarks" / "results"


def add_parser(sub) -> None:
    """Register ``bench`` and ``bench-report``."""
    p = sub.add_parser("bench", help="measure model-only and end-to-end latency on this device (one JSON per run)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", nargs="?", default=None,
                   help=f"video for the end-to-end pipelines (default {DEFAULT_VIDEO} when present)")
    p.add_argument("--pose", default="mobilenetv3_small",
                   help="pose models, comma-separated: model ids (built per --precision) or artifact directories / "
                        "artifact ids (measured exactly as given, nothing built) (default %(default)s)")
    p.add_argument("--detector", default="scrfd_500m",
                   help="detector: a model id, or an artifact directory / id as --pose (default %(default)s)")
    p.add_argument("--precision", default="fp32,int8", help="precision sweep of the TFLite artifacts (default %(default)s)")
    p.add_argument("--detector-precision", default="match", choices=("match", "fp32", "int8"),
                   help="detector precision in LiteRT pipelines: 'match' uses the pose precision (default)")
    p.add_argument("--threads", default="1,2", help="thread sweep (default %(default)s)")
    p.add_argument("--detect-every", default="1", help="detect-every sweep of the LiteRT pipelines (default %(default)s)")
    p.add_argument("--xnnpack", default="on", help="XNNPACK sweep: on, off or on,off (default %(default)s)")
    p.add_argument("--pipelined", default="off",
                   help="LiteRT pipelines one stage after another (off), overlapped on threads as `headpose run "
                        "--pipelined` (on), or both (off,on) (default %(default)s)")
    p.add_argument("--batch", default="1",
                   help="model-only batch sweep of pose models, e.g. 1,7 (faces per call; detectors take 1)")
    p.add_argument("--model-xnnpack-off", action="store_true",
                   help="model-only latency also without XNNPACK (built-in kernels) for every TFLite artifact")
    p.add_argument("--frames", type=int, default=100, help="measured frames per pipeline (default %(default)s)")
    p.add_argument("--pipeline-warmup", type=int, default=3, help="untimed pipeline calls first (default %(default)s)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per model-only measurement (default %(default)s)")
    p.add_argument("--seconds", type=float, default=None, help="time each model for S seconds instead of --runs")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs before model-only timing (default %(default)s)")
    p.add_argument("--no-baseline", action="store_true", help="skip the ONNX Runtime pipeline")
    p.add_argument("--no-model-latency", action="store_true", help="skip model-only latency")
    p.add_argument("--no-pipelines", action="store_true", help="skip end-to-end pipelines")
    p.add_argument("--torch", action="store_true", help="also time the pose checkpoints in PyTorch eager mode")
    p.add_argument("--duration", default=None,
                   help="sustained mode: loop the first LiteRT pipeline for this long (e.g. 10m, 90s)")
    p.add_argument("--window", default="10s", help="sustained-mode reporting window (default %(default)s)")
    p.add_argument("--device-name", default=None, help="name of this device in reports (default: hostname)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder for the result JSON (default %(default)s)")
    p.add_argument("--artifacts-root", default=None, help="where artifacts are found/built (default weights/cache/bench)")
    p.add_argument("--no-build", action="store_true", help="never convert: fail when an artifact is missing")
    p.add_argument("--pose-weights", action="append", default=[], metavar="MODEL=PATH",
                   help="checkpoint of a pose model (default: weights/<model>*.pt if trained, else seeded)")
    p.add_argument("--detector-weights", default=None, help="SCRFD ONNX file (default ../shared/weights)")
    p.add_argument("--seeded", action="store_true",
                   help="use seeded (untrained) pose checkpoints even where trained ones exist (same cost)")
    p.add_argument("--retry-failed", action="store_true", help="retry artifact builds that failed in earlier runs")
    p.add_argument("--note", action="append", default=[], help="free text recorded in the result (repeatable)")
    p.add_argument("--no-samples", action="store_true", help="do not store raw per-run/per-frame timings")
    p.add_argument("--sweep", choices=("plan",), default=None,
                   help="plan: the sweep `headpose plan` needs (students x fp32/int8, threads 1 and all cores, "
                        "detect-every 1,3, 40 frames; found artifacts only), <= 10 min on a Pi 4 (estimate: --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="print what would be measured and its estimated duration")
    p.add_argument("--max-load", type=float, default=None,
                   help="refuse to start above this 1-minute load average (default: a quarter of the cores, >= 0.5)")
    p.add_argument("--allow-load", action="store_true",
                   help="measure on a busy machine anyway (the result is flagged load.verdict=loaded)")
    p.add_argument("--artifact", action="append", default=[], metavar="DIR|ID",
                   help="model-only latency of these artifact directories only (tflite or onnx; repeatable): "
                        "no matrix, no pipelines")
    p.set_defaults(func=run_bench)

    r = sub.add_parser("bench-report", help="merge bench result JSONs into Markdown/CSV tables, PNG plots and diffs")
    r.add_argument("results", nargs="+", help="result JSON files of `headpose bench`")
    r.add_argument("--out", default=None, help="output folder (default: the first file's folder)")
    r.add_argument("--threshold", type=float, default=10.0,
                   help="p50 change in %% beyond which a repeated configuration is a regression/improvement")
    r.add_argument("--no-plots", action="store_true", help="Markdown and CSV only")
    r.set_defaults(func=run_report)

    from .plan import add_parser as add_plan  # `headpose plan`: the budget planner (benchmarks/plan.py)
    add_plan(sub)


# -- bench ------------------------------------------------------------------------------------------
def _pose_weights_map(items: List[str]) -> Dict[str, Path]:
    from ..runtime.errors import InputError
    out = {}
    for it in items:
        if "=" not in it:
            raise InputError(f"--pose-weights expects MODEL=PATH, found '{it}'")
        k, v = it.split("=", 1)
        out[k.strip()] = Path(v.strip())
    return out


def command_of(args: argparse.Namespace) -> str:
    """The command that repeats a run: the words ``headpose`` parsed (``args.argv``, set by
    :func:`headpose.cli.main`, whoever called it), else rebuilt from the parsed arguments
    (``--flag value`` for every value given), never the process's ``sys.argv`` (pytest's, when
    called from Python)."""
    words = getattr(args, "argv", None)
    if words is not None:
        return shlex.join(["headpose", *map(str, words)])
    from ..convert.matrix import command_line
    given = {k: v for k, v in sorted(vars(args).items())
             if k not in ("func", "command", "argv", "verbose") and not callable(v)}
    return command_line(["headpose", *([args.command] if getattr(args, "command", None) else [])], given)


def run_bench(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .. import __version__
    from ..runtime.errors import ConversionError, InputError
    from ..runtime.manifest import load_manifest
    from ..runtime.formats import precisions_of
    from ..runtime.registry import get_spec
    from . import artifacts as art
    from . import model_latency as ml
    from . import pipeline_latency as pl
    from .fingerprint import fingerprint
    from .schema import SCHEMA_NAME, SCHEMA_VERSION
    from .stats import BUDGETS, parse_duration, parse_int_list, parse_list, ratio
    from .sustained import SustainedRecorder, sensors_available, summarize_windows
    from .given import is_given
    from .load import LoadWatch, usable_cores

    if args.sweep == "plan":
        from . import sweep
        sweep.apply(args, usable_cores())
    poses = parse_list(args.pose, "pose")
    given = bool(args.sweep) or any(is_given(x) for x in poses + [args.detector])
    for m in ([] if given else poses):
        if get_spec(m).task != "head_pose":
            raise InputError(f"--pose {m}: not a head pose model")
    precisions = parse_list(args.precision, "precision", precisions_of("tflite"))
    threads = parse_int_list(args.threads, "threads")
    detect_every = parse_int_list(args.detect_every, "detect-every")
    xnn = [{"on": True, "off": False}[v] for v in parse_list(args.xnnpack, "xnnpack", ("on", "off"))]
    args.pipelined_modes = [{"on": True, "off": False}[v] for v in parse_list(args.pipelined, "pipelined", ("on", "off"))]
    batches = parse_int_list(args.batch, "batch")
    duration = parse_duration(args.duration) if args.duration else None
    window = parse_duration(args.window)
    video = Path(args.video) if args.video else (DEFAULT_VIDEO if DEFAULT_VIDEO.exists() else None)
    if video is None and not args.no_pipelines:
        raise InputError(f"no video given and the default {DEFAULT_VIDEO} is absent: pass a video file "
                         f"(or --no-pipelines for model-only latency)")
    if video is not None and not video.exists():
        raise InputError(f"video '{video}' does not exist")
    root = Path(args.artifacts_root) if args.artifacts_root else art.DEFAULT_ROOT
    build = not args.no_build
    started = _dt.datetime.now(_dt.timezone.utc)
    device = fingerprint(args.device_name)
    run_id = f"{device['name']}-{started.strftime('%Y%m%dT%H%M%SZ')}"
    load_start = loadavg()
    watch = LoadWatch(args.max_load)
    if args.dry_run:
        return _dry_run(args, poses, precisions, threads, detect_every)
    if watch.busy_at_start() and not args.allow_load:
        raise InputError(watch.refuse_message())

    if args.artifact:
        return _bench_artifacts(args, device, run_id, started, watch, threads, xnn, batches)
    if given:
        return _bench_given(args, video, device, run_id, started, watch, poses, precisions, threads,
                            detect_every, xnn, batches)

    # -- artifacts ------------------------------------------------------------------------------
    pw = _pose_weights_map(args.pose_weights)
    det_w = art.detector_weights(args.detector, Path(args.detector_weights) if args.detector_weights else None)
    print(f"headpose bench: {run_id}; preparing artifacts under {root}", file=sys.stderr)
    notes: List[str] = list(args.note)
    need_det = sorted(set(precisions if args.detector_precision == "match" else [args.detector_precision]))
    det_art: Dict[str, Path] = {}
    for p in need_det:
        try:
            det_art[p] = art.ensure_artifact(det_w, "tflite", p, root, build, video, retry_failed=args.retry_failed)
        except Exception as e:  # a detector precision that does not convert: fall back to fp32
            if p == "fp32":
                raise
            notes.append(f"detector {args.detector} {p} unavailable ({type(e).__name__}: {e}); fp32 detector used")
            log.warning(notes[-1])
    if "fp32" not in det_art:
        det_art["fp32"] = art.ensure_artifact(det_w, "tflite", "fp32", root, build, video,
                                              retry_failed=args.retry_failed)
    det_onnx = art.ensure_artifact(det_w, "onnx", "fp32", root, build, video, retry_failed=args.retry_failed)
    pose_w = {m: art.pose_weights(m, pw.get(m), root, prefer_seeded=args.seeded) for m in poses}
    pose_art: Dict[tuple, Path] = {}
    pose_onnx: Dict[str, Path] = {}
    for m in poses:
        for p in precisions:
            try:
                pose_art[(m, p)] = art.ensure_artifact(pose_w[m], "tflite", p, root, build, video, det_w.path,
                                                       retry_failed=args.retry_failed)
            except ConversionError as e:  # one cell of the matrix cannot be built: say so, measure the rest
                notes.append(f"{m} tflite {p} skipped: {e}")
                log.warning(notes[-1])
        pose_onnx[m] = art.ensure_artifact(pose_w[m], "onnx", "fp32", root, build, video, det_w.path,
                                           retry_failed=args.retry_failed)
    kinds = {w.kind for w in pose_w.values()}
    if "seeded" in kinds:
        seeded = [m for m, w in pose_w.items() if w.kind == "seeded"]
        notes.append(f"pose weights of {', '.join(seeded)} are seeded (untrained) checkpoints: valid for speed "
                     f"(the cost of a network does not depend on its weights), not for accuracy")

    def det_for(p: str) -> Path:
        want = p if args.detector_precision == "match" else args.detector_precision
        return det_art.get(want, det_art["fp32"])

    all_dirs = list(det_art.values()) + [det_onnx] + list(pose_art.values()) + list(pose_onnx.values())
    artifacts = []
    for d in dict.fromkeys(all_dirs):
        m = load_manifest(d)
        src = m.source or {}
        w = det_w if m.task == "face_detection" else pose_w[m.model]
        artifacts.append({"id": m.id, "model": m.model, "task": m.task, "format": m.format, "precision": m.precision,
                          "file_sha256": m.file_sha256, "file_bytes": m.file_bytes, "weights": w.kind,
                          "source_sha256": src.get("sha256", w.sha256), "path": str(d)})
    from .given import artifact_record
    for a in artifacts:  # the manifest's sha256 and the held-out accuracy `headpose plan` ranks by
        rec = artifact_record(Path(a["path"]))
        a.update(manifest_sha256=rec["manifest_sha256"], accuracy=rec["accuracy"])

    # -- plan -----------------------------------------------------------------------------------
    frame0 = ml.first_frame(video) if video is not None else None
    model_jobs = []
    if not args.no_model_latency:
        for d in dict.fromkeys(list(det_art.values()) + [det_onnx]):
            model_jobs.append(d)
        for m in poses:
            model_jobs += [pose_art[(m, p)] for p in precisions if (m, p) in pose_art] + [pose_onnx[m]]
    model_xnn = list(dict.fromkeys(xnn + ([False] if args.model_xnnpack_off else [])))
    model_threads = ml.thread_counts(threads, args.pipelined_modes)
    n_model = 0
    for d in model_jobs:
        mm = load_manifest(d)
        n_model += (len(model_threads) * (len(model_xnn) if mm.format == "tflite" else 1)
                    * (len(batches) if mm.task == "head_pose" else 1))
    if args.torch:
        n_model += len(poses) * len(threads)
    pipe_specs: List[pl.PipelineSpec] = []
    if not args.no_pipelines:
        for m in poses:
            for t in threads:
                if not args.no_baseline:
                    pipe_specs.append(pl.PipelineSpec("onnxruntime", det_onnx, pose_onnx[m], t))
                for p in precisions:
                    if (m, p) not in pose_art:
                        continue
                    for de in detect_every:
                        for x in xnn:
                            for pm in args.pipelined_modes:
                                pipe_specs.append(pl.PipelineSpec("litert", det_for(p), pose_art[(m, p)], t, x, de,
                                                                  pipelined=pm))
    runs_each = args.runs if not args.seconds else 0
    total = n_model * (runs_each or 1) + len(pipe_specs) * args.frames
    bar = tqdm(total=total, desc="bench", unit="it", file=sys.stderr, dynamic_ncols=True)

    # -- model-only -----------------------------------------------------------------------------
    model_latency = []
    keep = not args.no_samples
    for d in model_jobs:
        m = load_manifest(d)
        for t in model_threads:
            for x in (model_xnn if m.format == "tflite" else [None]):
                for b in (batches if m.task == "head_pose" else [1]):
                    bar.set_postfix_str(f"{m.id} t{t} b{b}" + ("" if x is None else (" xnn" if x else " noxnn")))
                    runner = (ml.litert_runner(d, t, x, frame0, b) if m.format == "tflite"
                              else ml.onnx_runner(d, t, frame0, b))
                    model_latency.append(ml.measure(runner, args.warmup, args.runs, args.seconds,
                                                    bar.update if runs_each else None, keep))
                    if not runs_each:
                        bar.update(1)
    if args.torch:
        for m in poses:
            for t in threads:
                bar.set_postfix_str(f"torch {m} t{t}")
                e = ml.measure(ml.torch_runner(m, pose_w[m].path, t, frame0), args.warmup, args.runs, args.seconds,
                               bar.update if runs_each else None, keep)
                e["weights_sha256"] = pose_w[m].sha256
                model_latency.append(e)
                if not runs_each:
                    bar.update(1)

    # -- pipelines ------------------------------------------------------------------------------
    pipelines = pl.measure_pipelines(pipe_specs, video, args.frames, args.pipeline_warmup, bar, keep_samples=keep)
    pl.add_bounds(pipelines, model_latency)
    gil = _gil(pipe_specs, video)
    comparisons = []
    by_key = {p["key"]: p for p in pipelines}
    for p in pipelines:
        if p["backend"] != "litert":
            continue
        base = f"onnxruntime|{p['model']}|fp32|t{p['threads']}|de1|-"
        if base in by_key:
            b = by_key[base]
            comparisons.append({"baseline": base, "candidate": p["key"],
                                "speedup_p50": ratio(b["end_to_end"]["p50"], p["end_to_end"]["p50"]),
                                "speedup_mean": ratio(b["end_to_end"]["mean"], p["end_to_end"]["mean"]),
                                "fps_ratio": ratio(p["fps"], b["fps"])})

    # -- sustained ------------------------------------------------------------------------------
    sustained = None
    if duration and not args.no_pipelines:
        s = next((x for x in pipe_specs if x.backend == "litert"), None)
        if s is not None:
            bar.set_postfix_str(f"sustained {s.key}")
            rec = SustainedRecorder(window)
            e = pl.measure_pipeline(s, video, None, args.pipeline_warmup, None, BUDGETS, duration_s=duration,
                                    on_frame=rec.frame, keep_samples=False)
            windows = rec.finish()
            sustained = {"key": e["key"], "duration_s": duration, "window_s": window, "frames": e["frames"],
                         "fps": e["fps"], "end_to_end": e["end_to_end"], "verdict": e["verdict"],
                         "sensors": sensors_available(), "windows": windows, "summary": summarize_windows(windows)}
    bar.close()

    # -- result ---------------------------------------------------------------------------------
    load_end = loadavg()
    notes.append(f"load average (1/5/15 min) at start {load_start}, at end {load_end} on {device['cores']} "
                 f"usable cores; absolute times drift on shared machines, ratios within one run are what to quote")
    result = {
        "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "run_id": run_id,
        "created_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": {"name": "headpose bench", "version": __version__,
                 "command": command_of(args)},
        "device": device,
        "load": watch.finish(),
        "budgets": dict(BUDGETS),
        "settings": {"video": str(video) if video else None, "frames": args.frames, "warmup": args.warmup,
                     "pipeline_warmup": args.pipeline_warmup, "runs": args.runs, "seconds": args.seconds,
                     "threads": threads, "precisions": precisions, "pose_models": poses,
                     "detector": args.detector, "detector_precision": args.detector_precision,
                     "detect_every": detect_every, "xnnpack": xnn, "model_xnnpack": model_xnn, "batch": batches,
                     "pipelined": args.pipelined_modes,
                     "baseline": not args.no_baseline,
                     "torch": bool(args.torch), "duration_s": duration,
                     "weights": {m: w.to_dict() for m, w in {**pose_w, args.detector: det_w}.items()}},
        "artifacts": artifacts,
        "model_latency": model_latency,
        "pipelines": pipelines,
        "comparisons": comparisons,
        "sustained": sustained,
        "notes": notes,
    }
    if gil is not None:
        result["gil"] = gil
    _write(result, args.out)
    return 0


def _gil(specs, video) -> Optional[dict]:
    """With a pipelined spec: whether its two interpreters' ``invoke`` overlap on two threads (1 thread each)."""
    from . import pipeline_latency as pl
    s = next((x for x in specs if x.pipelined), None)
    if s is None:
        return None
    g = pl.gil_overlap(s.detector, s.pose, video)
    from ..runtime.manifest import load_manifest
    g.update(detector=load_manifest(s.detector).id, pose=load_manifest(s.pose).id)
    return g


def _write(result: dict, out_dir) -> Path:
    """Validate, write ``<out>/<run_id>.json`` atomically (a new name if taken), print the summary."""
    from ..runtime.manifest import write_json_atomic
    from .schema import check
    check(result, where=f"run {result['run_id']}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path, n = out / f"{result['run_id']}.json", 1
    while path.exists():
        n += 1
        path = out / f"{result['run_id']}-{n}.json"
    if n > 1:
        result["run_id"] = path.stem
    write_json_atomic(path, result)  # readable by all, as the umask allows
    print_summary(result)
    print(f"\nresult: {path}")
    return path


def _header(args, device, run_id, started, load) -> dict:
    from .. import __version__
    from .schema import SCHEMA_NAME, SCHEMA_VERSION
    from .stats import BUDGETS
    return {"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "run_id": run_id,
            "created_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "tool": {"name": "headpose bench", "version": __version__,
                     "command": command_of(args)},
            "device": device, "load": load, "budgets": dict(BUDGETS)}


def _dry_run(args, poses, precisions, threads, detect_every) -> int:
    """``--dry-run``: what would be measured; for ``--sweep plan`` its ESTIMATED duration on a Pi 4."""
    from .sweep import estimate_seconds
    models = [p.split("-")[0] if "-" in p and "/" not in p else p for p in poses]
    models = list(dict.fromkeys(m for m in models if "/" not in m))
    e = estimate_seconds(models, precisions, threads, detect_every, args.frames, args.pipeline_warmup, args.runs,
                         args.warmup)
    print(f"headpose bench{' --sweep ' + args.sweep if args.sweep else ''}: pose {args.pose}; detector "
          f"{args.detector}; threads {threads}; detect-every {detect_every}; {e['pipelines']} pipelines x "
          f"{args.frames + args.pipeline_warmup} frames, model-only {args.runs} runs each")
    print(f"ESTIMATE on a Raspberry Pi 4 (published per-MAC figures, 7 faces per frame; see "
          f"headpose.benchmarks.sweep): ~{e['total_s']} s ({e['pipelines_s']} s pipelines + {e['model_only_s']} s "
          f"model-only); a Pi 5 is 1.4-2.5x faster")
    return 0


def _bench_given(args, video, device, run_id, started, watch, poses, precisions, threads, detect_every, xnn,
                 batches) -> int:
    """Directories / artifact ids given (or ``--sweep plan``): exactly those artifacts, nothing built."""
    from .given import bench_given, resolve_all
    skip = bool(args.sweep)  # the sweep measures what is there; a missing one is a note
    notes: List[str] = []
    pose_dirs = resolve_all(poses, "head_pose", precisions, notes if skip else None)
    det_prec = precisions if args.detector_precision == "match" else [args.detector_precision]
    det_dirs = resolve_all([args.detector], "face_detection", det_prec, notes if skip else None)
    from ..runtime.errors import InputError
    if not pose_dirs or not det_dirs:
        raise InputError("no artifact to measure: " + "; ".join(notes))
    body = bench_given(args, video, pose_dirs, det_dirs, threads, detect_every, xnn, batches, not args.no_samples)
    body["notes"] = notes + body["notes"]
    result = {**_header(args, device, run_id, started, watch.finish()), **body}
    result["notes"].append(result["load"]["note"])
    _write(result, args.out)
    return 0


def _bench_artifacts(args, device, run_id, started, watch, threads, xnn, batches) -> int:
    """``--artifact DIR ...``: model-only latency of the given artifacts, nothing else."""
    from tqdm import tqdm

    from .. import __version__
    from ..runtime.manifest import load_manifest
    from . import model_latency as ml
    from .schema import SCHEMA_NAME, SCHEMA_VERSION
    from .stats import BUDGETS
    from ..runtime.resolve import resolve_artifact
    dirs = [resolve_artifact(a) for a in args.artifact]  # directories or artifact ids, as everywhere
    load_start = watch.start
    mans = [load_manifest(d) for d in dirs]
    video = Path(args.video) if args.video else (DEFAULT_VIDEO if DEFAULT_VIDEO.exists() else None)
    frame0 = ml.first_frame(video) if video is not None else None
    n = sum(len(threads) * (len(xnn) if m.format == "tflite" else 1) * (len(batches) if m.task == "head_pose" else 1)
            for m in mans)
    bar = tqdm(total=n * (args.runs if not args.seconds else 1), desc="bench", unit="it", file=sys.stderr,
               dynamic_ncols=True)
    runs_each = args.runs if not args.seconds else 0
    entries = []
    for d, m in zip(dirs, mans):
        for t in threads:
            for x in (xnn if m.format == "tflite" else [None]):
                for b in (batches if m.task == "head_pose" else [1]):
                    bar.set_postfix_str(f"{m.id} t{t} b{b}")
                    r = (ml.litert_runner(d, t, x, frame0, b) if m.format == "tflite"
                         else ml.onnx_runner(d, t, frame0, b))
                    entries.append(ml.measure(r, args.warmup, args.runs, args.seconds,
                                              bar.update if runs_each else None, not args.no_samples))
                    if not runs_each:
                        bar.update(1)
    bar.close()
    load_end = loadavg()
    result = {
        "schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "run_id": run_id,
        "created_utc": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "tool": {"name": "headpose bench", "version": __version__,
                 "command": command_of(args)},
        "device": device, "load": watch.finish(),
        "budgets": dict(BUDGETS),
        "settings": {"artifacts": [str(d) for d in dirs], "threads": threads, "xnnpack": xnn, "batch": batches,
                     "warmup": args.warmup,
                     "runs": args.runs, "seconds": args.seconds, "input": str(video) if frame0 is not None else "seeded random"},
        "artifacts": [{"id": m.id, "model": m.model, "task": m.task, "format": m.format, "precision": m.precision,
                       "file_sha256": m.file_sha256, "file_bytes": m.file_bytes, "path": str(d)}
                      for d, m in zip(dirs, mans)],
        "model_latency": entries, "pipelines": [], "comparisons": [], "sustained": None,
        "notes": list(args.note) + [f"load average at start {load_start}, at end {load_end}"],
    }
    _write(result, args.out)
    return 0


def print_summary(result: dict) -> None:
    """The compact tables printed at the end of a run."""
    from .report import (MODEL_HEADER, PIPE_HEADER, latency_rows, model_cells, pipe_cells, pipeline_rows,
                         text_table)
    mrows = latency_rows([result])
    if mrows:
        print("\nModel-only latency (ms)")
        print(text_table(MODEL_HEADER[1:-1], [model_cells(r)[1:-1] for r in mrows]))
    prows = pipeline_rows([result])
    if prows:
        print(f"\nEnd-to-end pipelines (budget: {result['budgets']['fps_min']:g}+ FPS, "
              f"p99 < {result['budgets']['p99_ms_max']:g} ms)")
        print(text_table(PIPE_HEADER[1:-1], [pipe_cells(r)[1:-1] for r in prows]))
    if result.get("comparisons"):
        print("\nSpeed-up against the ONNX Runtime pipeline (same frames; >1 = faster)")
        print(text_table(("candidate", "baseline", "p50 x", "mean x", "FPS x"),
                         [[c["candidate"], c["baseline"], c["speedup_p50"], c["speedup_mean"], c["fps_ratio"]]
                          for c in result["comparisons"]]))
    s = result.get("sustained")
    if s:
        sm = s["summary"]
        print(f"\nSustained {s['key']} for {s['duration_s']:g} s: FPS {sm.get('fps_first')} -> {sm.get('fps_last')} "
              f"(drop {sm.get('fps_drop_pct')} %), temperature {sm.get('temp_first_c')} -> {sm.get('temp_last_c')} C, "
              f"clock {sm.get('mhz_first')} -> {sm.get('mhz_last')} MHz, throttled: {sm.get('throttled_seen')}")


# -- report -----------------------------------------------------------------------------------------
def run_report(args: argparse.Namespace) -> int:
    from .report import PIPE_HEADER, build_report, pipe_cells, pipeline_rows, text_table
    out = Path(args.out) if args.out else Path(args.results[0]).resolve().parent
    rep = build_report(args.results, out, args.threshold, plots=not args.no_plots)
    rows = pipeline_rows(rep["results"])
    if rows:
        print(text_table(PIPE_HEADER, [pipe_cells(r) for r in rows]))
    for d in rep["diffs"]:
        if d["kind"] == "pipeline":
            print(f"{d['status']:11s} {d['device']} {d['key']}: p50 {d['old_p50']} -> {d['new_p50']} ms "
                  f"({d['change_pct']:+.1f} %)")
    print(f"\nwrote {rep['markdown']}, {rep['csv']}" + "".join(f", {p}" for p in rep["plots"]))
    return 0
