"""``headpose convert-matrix``: convert many models x precisions and tabulate the artifacts.

For each (model, precision) it runs :func:`headpose.convert.pipeline.convert` (parity gate
included), then loads the artifact the way the device does (LiteRT + XNNPACK), counts the XNNPACK
partitions, times one-face inference, and writes one row: size, parity figures, int8 remedy,
latency, conversion time. A conversion that fails is a row with its error, not the end of the run.

Outputs: a JSON file (every figure) and a Markdown table, both written atomically.

Weights: ``--weights MODEL=PATH``; else the project's trained checkpoint (``weights/<model>_*.pt``,
e.g. the students) where one exists; else a seeded checkpoint (random weights with randomised
batch-norm statistics; labelled ``seeded`` in the table: its int8 and fp16 figures describe a random
network, not a trained one). SCRFD models come from their ONNX files in ``weights/`` or
``$HEADPOSE_SHARED/weights``. The lookup is :mod:`headpose.convert.weights`'s, shared with ``bench``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from ..runtime.errors import HeadposeError, InputError
from ..runtime.formats import PRECISIONS
from ..runtime.manifest import load_manifest, write_atomic, write_json_atomic
from ..runtime.registry import POSE_MODELS, REGISTRY, get_spec

log = logging.getLogger(__name__)


def weights_of(model_id: str, given: Dict[str, str], out: Path):
    """The source of a model's artifacts (:mod:`headpose.convert.weights`, the project's one
    resolver): ``--weights``, else a trained checkpoint of the project, else a seeded one (seed 1,
    under ``out/seeded``); SCRFD: its ONNX file in ``weights/`` or ``$HEADPOSE_SHARED/weights``."""
    from .weights import detector_weights, pose_weights
    explicit = Path(given[model_id]) if model_id in given else None
    if get_spec(model_id).task == "face_detection":
        return detector_weights(model_id, explicit)
    return pose_weights(model_id, explicit, root=out, seed=1)


def device_check(artifact_dir: Path, runs: int = 20) -> Dict:
    """Load an artifact with LiteRT + XNNPACK (1 thread): XNNPACK partitions, median batch-1 latency (ms)."""
    from ..runtime.interpreter import xnnpack_partitions
    from .int8_gate import latency_ms
    m = load_manifest(artifact_dir)
    side = m.input.shape[1]  # NHWC
    x = np.random.default_rng(0).uniform(-1, 1, (1, side, side, 3)).astype(np.float32)
    return {"xnnpack_partitions": xnnpack_partitions(m.model_path), "latency_ms_1thread": latency_ms(m.model_path, x, runs)}


def row_of(model_id: str, precision: str, kind: str, d: Path) -> Dict:
    m = load_manifest(d)
    p, q = m.parity, m.quantization or {}
    row = {"model": model_id, "precision": precision, "weights": kind, "artifact": d.name,
           "mb": round(m.file_bytes / 1e6, 2), "conversion_s": p.get("conversion_seconds"),
           "step_seconds": p.get("step_seconds"), "passed": p.get("passed"), "gate": p.get("gate")}
    if m.task == "head_pose":
        row.update(euler_max_deg=p["euler_max_deg"], euler_mean_deg=p["euler_mean_deg"],
                   euler_worst_yaw_deg=p.get("euler_worst_yaw_deg"), geodesic_mean_deg=p["geodesic_mean_deg"],
                   geodesic_max_deg=p["geodesic_max_deg"], samples=p["samples"],
                   reference_std_deg=max(p["reference_euler_std_deg"].values()))
        gate = q.get("int8_gate")
        if gate:
            final = ([a for a in gate["attempts"] if a["passed"]] or gate["attempts"][:1])[-1]  # recorded only: plain
            row["int8_remedy"] = gate["chosen"] if gate.get("passed") is not None else "none (recorded, not gated)"
            row["int8_gate"] = {k: final[k] for k in ("geodesic_mean_deg", "axis_mean_deg", "geodesic_p99_deg",
                                                      "mean_deg", "p99_deg") if k in final}
    else:
        row.update(mean_iou=p["mean_iou"], matched=p["matched"], reference_faces=p["reference_faces"],
                   samples=p.get("samples"))
    row.update(device_check(d))
    return row


def markdown(rows: List[Dict], runs: List[Dict]) -> str:
    """The Markdown table of ``rows``; ``runs`` are the runs' facts (row ``run`` indexes them)."""
    lines = ["# Conversion matrix", ""]
    for i, meta in enumerate(runs):
        lines.append(f"- run {i}: `{meta['command']}` on {meta['machine']} ({meta['cpus']} CPUs, load average "
                     f"{meta['load_before']} before, {meta['load_after']} after), {meta['date_utc']} UTC.")
    lines += ["",
             "Parity: pose against the PyTorch model on real face crops of `in_video.mp4` (degrees; rotation = "
             "geodesic distance, the gated figure; Euler = largest |Δpitch|, |Δyaw|, |Δroll|, which near "
             "|yaw| = 90° measures gimbal lock rather than the converter); detector against the ONNX model on real frames (mean box IoU, faces "
             "matched). Latency: LiteRT + XNNPACK, 1 thread, batch 1, median of 20.", "",
             "| model | weights | precision | MB | parity | int8 remedy | XNNPACK partitions | ms | convert s | run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            why = r["error"].splitlines()[0].replace("|", "/")
            lines.append(f"| {r['model']} | {r['weights']} | {r['precision']} | – | **failed**: {why} "
                         f"| | | | | {r.get('run', 0)} |")
            continue
        if "euler_max_deg" in r:
            par = (f"rotation max {r['geodesic_max_deg']:.3g}°, mean {r['geodesic_mean_deg']:.3g}°; Euler max "
                   f"{r['euler_max_deg']:.3g}° ({r['samples']} crops)")
        else:
            par = f"IoU {r['mean_iou']:.4f}, {r['matched']}/{r['reference_faces']} faces"
        mark = "" if r["gate"] is None else (" ✅" if r["passed"] else " ❌")
        remedy = r.get("int8_remedy", "")
        if "int8_gate" in r and "geodesic_mean_deg" in r["int8_gate"]:
            g = r["int8_gate"]
            ok = "" if r.get("int8_remedy", "").startswith("none (recorded") else " ✅"
            remedy += f" (int8 vs float: geodesic mean {g['geodesic_mean_deg']:.2f}°, p99 {g['geodesic_p99_deg']:.2f}°{ok})"
        elif "int8_gate" in r and "axis_mean_deg" in r["int8_gate"]:  # rows of an older --json (--update)
            g = r["int8_gate"]
            remedy += f" (gate: axis mean {g['axis_mean_deg']:.2f}°, geodesic p99 {g['geodesic_p99_deg']:.2f}° ✅)"
        lines.append(f"| {r['model']} | {r['weights']} | {r['precision']} | {r['mb']} | {par}{mark} | "
                     f"{remedy} | {r['xnnpack_partitions']} | {r['latency_ms_1thread']} | "
                     f"{r['conversion_s']} | {r.get('run', 0)} |")
    lines += ["", "✅ / ❌: a gated precision (fp32 pose rotation < 0.05°, fp16 pose < 0.5°, fp32 detector IoU ≥ 0.99 "
              "with every face). int8 figures are recorded; for trained weights the int8 pose gate (per-axis "
              "rotation error mean ≤ 0.5°, geodesic p99 ≤ 3° vs the float model) picks the remedy shown; seeded "
              "(random) weights are not gated. convert s: the whole conversion; onnx2tf runs once per model and "
              "process, so the later precisions of a model reuse its SavedModel (per-step seconds are in the JSON).",
              ""]
    return "\n".join(lines)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "convert-matrix", help="convert many models x precisions and write a table of the artifacts",
        description="Convert every listed model at every listed precision (TFLite), load each artifact "
                    "with LiteRT + XNNPACK, and write a JSON + Markdown table: size, parity, int8 remedy, "
                    "partitions, latency, conversion time. Failures become rows.")
    p.add_argument("--models", default=",".join(POSE_MODELS + ("scrfd_2.5g",)),
                   help="comma-separated registry ids (default: the six pose backbones and scrfd_2.5g)")
    p.add_argument("--precisions", default="fp32,fp16,int8", help="comma-separated (default fp32,fp16,int8)")
    p.add_argument("--weights", action="append", default=[], metavar="MODEL=PATH",
                   help="weights of one model (repeatable); default: weights/<model>_fsanet.pt, else seeded")
    p.add_argument("--calib", default=None, metavar="PATH",
                   help="calibration + parity data (default as convert: $HEADPOSE_DATA or ../shared's video)")
    p.add_argument("--out", default="weights/exports/matrix", metavar="DIR", help="artifacts go here")
    p.add_argument("--json", default=None, metavar="FILE", help="default <out>/matrix.json")
    p.add_argument("--report", default=None, metavar="FILE", help="Markdown table (default <out>/MATRIX.md)")
    p.add_argument("--max-int8-error", type=float, default=1.0, metavar="DEG",
                   help="int8 pose gate (geodesic mean, degrees) for trained/given weights, as in convert (seeded weights: recorded, "
                        "not gated: a random network's int8 error describes the network)")
    p.add_argument("--update", action="store_true",
                   help="keep the rows of an existing --json for the (model, precision) pairs not run now")
    p.set_defaults(func=run)


FLAGS = ("models", "precisions", "weights", "calib", "out", "json", "report", "max_int8_error", "update")


def arguments_of(args: argparse.Namespace) -> Dict:
    """The parsed arguments of a run, flag by flag (what is recorded, whoever called :func:`run`)."""
    return {k: getattr(args, k) for k in FLAGS}


def command_line(words: List[str], arguments: Dict) -> str:
    """``words`` then ``--flag value`` for every argument given (``name -> value``: a list repeats its
    flag, True is a bare flag, None and False are left out), as one shell-quoted line."""
    import shlex
    words = list(words)
    for k, v in arguments.items():
        flag = "--" + k.replace("_", "-")
        if v is None or v is False:
            continue
        words += [flag] if v is True else [w for x in (v if isinstance(v, list) else [v]) for w in (flag, str(x))]
    return shlex.join(words)


def command_of(args: argparse.Namespace) -> str:
    """The command line that repeats a run, rebuilt from its parsed arguments (every value spelled out)."""
    return command_line(["headpose", "convert-matrix"], arguments_of(args))


def run(args: argparse.Namespace) -> int:
    from .pipeline import convert
    given = {}
    for item in args.weights:
        if "=" not in item:
            raise InputError(f"--weights expects MODEL=PATH, got '{item}'")
        k, v = item.split("=", 1)
        given[k] = v
    from ..runtime.resolve import parse_ref, resolve_artifact  # model ids, artifact ids or directories
    models = [m for m in args.models.split(",") if m]
    refs = {m: parse_ref(m) for m in models}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"command": command_of(args), "arguments": arguments_of(args),
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "load_before": round(os.getloadavg()[0], 2), "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}
    json_path = Path(args.json) if args.json else out / "matrix.json"
    report = Path(args.report) if args.report else out / "MATRIX.md"
    previous = json.loads(json_path.read_text()) if args.update and json_path.exists() else None
    rows: List[Dict] = []
    for model_id in models:
        if refs[model_id].is_path or refs[model_id].text != refs[model_id].model:  # an existing artifact: its row
            try:  # (no conversion: the directory or id, resolved as `headpose run` and `bench` resolve it)
                d = resolve_artifact(model_id)
                m = load_manifest(d)
                rows.append(row_of(m.model, m.precision, "artifact", d))
            except HeadposeError as e:
                rows.append({"model": model_id, "precision": "*", "weights": "artifact", "error": str(e)})
            meta["load_after"] = round(os.getloadavg()[0], 2)
            _write(rows, meta, previous, json_path, report)
            continue
        try:
            w = weights_of(model_id, given, out)
        except HeadposeError as e:
            rows.append({"model": model_id, "precision": "*", "weights": "?", "error": str(e)})
            log.error("matrix: %s: %s", model_id, e)
            continue
        weights, kind = w.path, w.kind
        gate = None if kind == "seeded" or args.max_int8_error < 0 else args.max_int8_error
        for precision in [p for p in args.precisions.split(",") if p]:
            log.info("matrix: %s %s (%s weights)", model_id, precision, kind)
            try:
                d = convert(model_id, weights, precision=precision, calib=args.calib, out_dir=out, force=True,
                            max_int8_error=gate)
                rows.append(row_of(model_id, precision, kind, d))
            except HeadposeError as e:
                rows.append({"model": model_id, "precision": precision, "weights": kind, "error": str(e)})
                log.error("matrix: %s %s failed: %s", model_id, precision, e)
            meta["load_after"] = round(os.getloadavg()[0], 2)
            _write(rows, meta, previous, json_path, report)  # after every row: progress survives a stop
    log.info("matrix: %d rows -> %s, %s", len(rows), json_path, report)
    print(report)
    return 0 if all("error" not in r for r in rows) else 2


def _write(rows: List[Dict], meta: Dict, previous, json_path: Path, report: Path) -> None:
    """Write the JSON and Markdown of this run (merged into ``previous`` when updating), atomically."""
    runs, rows = [meta], [dict(r, run=0) for r in rows]
    if previous:
        done = {(r["model"], r["precision"]) for r in rows}
        runs += previous.get("runs") or [previous["meta"]]
        rows += [dict(r, run=r.get("run", 0) + 1) for r in previous["rows"]
                 if (r["model"], r["precision"]) not in done]
    used = sorted({r["run"] for r in rows})  # drop runs whose rows were all replaced, renumber the rest
    runs = [runs[i] for i in used]
    rows = [dict(r, run=used.index(r["run"])) for r in rows]
    order = {m: i for i, m in enumerate(REGISTRY)}
    rank = {p: i for i, p in enumerate(PRECISIONS)}
    rows.sort(key=lambda r: (order.get(r["model"], 99), r["model"], rank.get(r["precision"], 9)))
    write_json_atomic(json_path, {"runs": runs, "rows": rows})
    write_atomic(report, markdown(rows, runs))
