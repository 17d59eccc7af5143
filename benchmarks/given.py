"""``headpose bench`` on the artifacts it is given (directories or artifact ids): exactly those, nothing built.

``headpose bench VIDEO --pose DIR|ID[,...] --detector DIR|ID`` times every given artifact model-only
and runs the LiteRT pipeline of every given pose artifact with the given detector per thread count x
detect-every x XNNPACK. Each artifact is recorded with its manifest id, model file sha256 and size,
the sha256 of its ``manifest.json``, its source's sha256 and, for pose models, the held-out accuracy
of its source (:func:`headpose.benchmarks.plan.pose_accuracy`), so ``headpose plan`` can rank it on
any machine. There is no ONNX Runtime baseline here (no ONNX file of the same weights is implied):
the model-id form builds both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..runtime.manifest import load_manifest, sha256_file
from ..runtime.resolve import parse_ref, resolve_artifact


def is_given(text: str) -> bool:
    """True for an artifact directory or artifact id (measured as it is), False for a model id (built)."""
    r = parse_ref(text)
    return r.is_path or r.text != r.model


def resolve_all(items: Sequence[str], task: str, precisions: Sequence[str], skipped: Optional[List[str]] = None
                ) -> List[Path]:
    """Each item's artifact(s): a directory / artifact id as it is; a model id at every precision given.

    ``skipped``: a list to note missing artifacts in instead of raising (``--sweep plan``)."""
    from ..runtime.errors import ManifestError
    out: List[Path] = []
    for it in items:
        for p in ([None] if is_given(it) else precisions):
            try:
                out.append(resolve_artifact(it, task, precision=p))
            except ManifestError as e:
                if skipped is None:
                    raise
                skipped.append(f"skipped: {e}")
    return list(dict.fromkeys(out))


def detector_for(pose: Path, det_dirs: Sequence[Path], mans: Dict[Path, object], match: bool) -> List[Path]:
    """The detector(s) a pose artifact runs with: all given ones, or with ``match`` the one of its precision
    (else fp32, else the first)."""
    dets = [d for d in det_dirs if mans[d].format == "tflite"]
    if not match or len(dets) <= 1:
        return dets
    for want in (mans[pose].precision, "fp32"):
        same = [d for d in dets if mans[d].precision == want]
        if same:
            return same[:1]
    return dets[:1]


def artifact_record(d: Path, weights_kind: Optional[str] = None) -> Dict[str, object]:
    """What a result records of one artifact (id, sha256 of the model file and manifest, source, accuracy)."""
    from .plan import PUBLISHED_DETECTOR_AP, int8_error, pose_accuracy
    m = load_manifest(d)
    src = m.source or {}
    raw = json.loads((Path(m.directory) / "manifest.json").read_text())
    rec = {"id": m.id, "model": m.model, "task": m.task, "format": m.format, "precision": m.precision,
           "file_sha256": m.file_sha256, "file_bytes": m.file_bytes,
           "manifest_sha256": sha256_file(Path(m.directory) / "manifest.json"),
           "weights": weights_kind or "given-artifact", "source_sha256": src.get("sha256"), "path": str(m.directory)}
    if m.task == "head_pose":
        acc = pose_accuracy(m.model, src.get("sha256"))
        if m.precision == "int8":
            acc["int8_vs_float_deg"] = int8_error(raw)
        rec["accuracy"] = acc
    else:
        ap = PUBLISHED_DETECTOR_AP.get(m.model)
        rec["accuracy"] = {"parity_recall": (m.parity or {}).get("recall"),
                           "published_ap_hard": ap[2] if ap else None}
    return rec


def bench_given(args, video: Optional[Path], pose_dirs: Sequence[Path], det_dirs: Sequence[Path], threads, detect_every,
                xnn, batches, keep: bool) -> Dict[str, object]:
    """Model-only latency of every given artifact and the pipelines pose x detector x threads x de x xnn.

    Returns the ``settings``, ``artifacts``, ``model_latency``, ``pipelines`` and ``notes`` of the result.
    """
    import sys

    from tqdm import tqdm

    from . import model_latency as ml
    from . import pipeline_latency as pl
    dirs = list(dict.fromkeys(list(det_dirs) + list(pose_dirs)))
    mans = {d: load_manifest(d) for d in dirs}
    frame0 = ml.first_frame(video) if video is not None else None
    jobs = [] if args.no_model_latency else [
        (d, t, x, b) for d in dirs for t in ml.thread_counts(threads, getattr(args, "pipelined_modes", [False]))
        for x in (xnn if mans[d].format == "tflite" else [None])
        for b in (batches if mans[d].task == "head_pose" else [1])]
    modes = getattr(args, "pipelined_modes", [False])
    specs = [] if args.no_pipelines else [
        pl.PipelineSpec("litert", det, pose, t, x, de, pipelined=pm)
        for pose in pose_dirs if mans[pose].format == "tflite"
        for det in detector_for(pose, det_dirs, mans, getattr(args, "detector_precision", "match") == "match")
        for t in threads for de in detect_every for x in xnn for pm in modes]
    runs_each = args.runs if not args.seconds else 0
    bar = tqdm(total=len(jobs) * (runs_each or 1) + len(specs) * args.frames, desc="bench", unit="it",
               file=sys.stderr, dynamic_ncols=True)
    model_latency = []
    for d, t, x, b in jobs:
        m = mans[d]
        bar.set_postfix_str(f"{m.id} t{t} b{b}")
        r = ml.litert_runner(d, t, x, frame0, b) if m.format == "tflite" else ml.onnx_runner(d, t, frame0, b)
        model_latency.append(ml.measure(r, args.warmup, args.runs, args.seconds, bar.update if runs_each else None,
                                        keep))
        if not runs_each:
            bar.update(1)
    pipelines = pl.measure_pipelines(specs, video, args.frames, args.pipeline_warmup, bar, keep_samples=keep)
    pl.add_bounds(pipelines, model_latency)
    bar.close()
    notes = list(args.note) + ["measured exactly the given artifacts (no build, no ONNX Runtime baseline)"]
    settings = {"video": str(video) if video else None, "frames": args.frames, "warmup": args.warmup,
                "pipeline_warmup": args.pipeline_warmup, "runs": args.runs, "seconds": args.seconds,
                "threads": list(threads), "detect_every": list(detect_every), "xnnpack": list(xnn),
                "pipelined": list(modes),
                "batch": list(batches), "given": {"pose": [str(d) for d in pose_dirs],
                                                  "detector": [str(d) for d in det_dirs]},
                "precisions": sorted({mans[d].precision for d in pose_dirs}),
                "pose_models": sorted({mans[d].model for d in pose_dirs}),
                "detector": ",".join(sorted({mans[d].model for d in det_dirs}))}
    return {"settings": settings, "artifacts": [artifact_record(d) for d in dirs], "model_latency": model_latency,
            "pipelines": pipelines, "comparisons": [], "sustained": None, "notes": notes}
