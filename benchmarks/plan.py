"""``headpose plan``: which configuration meets the budget on this device, with the best accuracy.

Input: one or more result files of ``headpose bench`` (any mix of devices; each device is planned on
its own). For every measured LiteRT pipeline (pose model x precision x detector x threads x
detect-every x XNNPACK) the planner checks the budget (``--fps``, ``--p99``; with ``--faces N`` the
per-face stages are rescaled from the measured faces per frame, which makes the figures estimates),
then ranks the configurations that meet it by accuracy:

1. **pose error**, lower first: the held-out figure of the checkpoint the artifact was built from,
   ``validation.vs_teacher.unseen_people.mae_mean`` of the student's sidecar ``weights/<model>_*.json``
   (found by the checkpoint's sha256, else the same architecture's sidecar, marked so: a seeded run's
   speed holds for the trained weights, its accuracy does not). For an int8 artifact whose manifest
   records the int8 gate, the gate's mean error against the float model is added (an upper bound by
   the triangle inequality);
2. **detector**, better first: the recall its manifest's parity records (conversion fidelity against
   the ONNX model), then the published WIDER FACE hard AP of the SCRFD family;
3. fewer carried frames (lower detect-every), then higher FPS.

It prints the exact ``headpose run`` command of the best. When nothing measured meets the budget it
names the bottleneck stage (share of the frame time, how many ms must go) and **estimates** (marked
as such, arithmetic on the measured per-stage means) what would: detecting every N frames, a smaller
detector input (cost ~ pixels), a thread count timed model-only but not end to end, at most K faces.

Estimates, stated once: detector cost per call = (detector_preprocess + detector + decode) mean x the
run's detect-every; with every N the frame mean loses (N-1)/N of it, but the p99 keeps it (a
detection frame comes at least every N <= 100 frames: 1 % of frames or more), so detect-every fixes
FPS, never p99. A detector at S px costs (S/640)^2 of the 640 px one.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..runtime.paths import WEIGHTS_DIR
from .schema import load_result

DETECT_STAGES = ("detector_preprocess", "detector", "decode")
FACE_STAGES = ("crop", "pose", "smoothing")
# SCRFD model zoo (InsightFace, github.com/deepinsight/insightface/tree/master/detection/scrfd):
# WIDER FACE val AP easy / medium / hard at VGA resolution, as published (not measured here).
PUBLISHED_DETECTOR_AP = {"scrfd_500m": (90.57, 88.12, 68.51), "scrfd_2.5g": (93.78, 92.16, 77.87),
                         "scrfd_10g": (95.16, 93.87, 83.05)}
SMALLER_INPUTS = (480, 320)
LOAD_PER_CORE_MAX = 0.5  # a result whose load average exceeded this per core is flagged as taken under load


# -- accuracy --------------------------------------------------------------------------------------
def _sidecar_error(path: Path) -> Optional[float]:
    try:
        d = json.loads(path.read_text())
        return float(d["validation"]["vs_teacher"]["unseen_people"]["mae_mean"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pose_accuracy(model: str, source_sha256: Optional[str], weights_dir: Path = WEIGHTS_DIR,
                  recorded: Optional[dict] = None) -> Dict[str, object]:
    """The held-out pose error (degrees, mean of yaw/pitch/roll MAE on unseen people) of a pose artifact.

    ``recorded``: the ``accuracy`` a result's artifact entry already carries (bench writes it).
    Returns ``{"mae_mean", "source", "exact"}``; ``mae_mean`` is None when nothing is recorded.
    """
    if recorded and recorded.get("mae_mean") is not None:
        return {"mae_mean": recorded["mae_mean"], "source": recorded.get("source", "result"),
                "exact": bool(recorded.get("exact", True))}
    sidecars = sorted(Path(weights_dir).glob(f"{model}_*.json")) + sorted(Path(weights_dir).glob(f"{model}.json"))
    same_arch = None
    for p in sidecars:
        err = _sidecar_error(p)
        if err is None:
            continue
        try:
            sha = json.loads(p.read_text()).get("sha256")
        except (OSError, ValueError):
            sha = None
        if source_sha256 and sha == source_sha256:
            return {"mae_mean": err, "source": f"{p.name} validation.vs_teacher.unseen_people.mae_mean",
                    "exact": True}
        same_arch = same_arch or (err, p)
    if same_arch:
        return {"mae_mean": same_arch[0], "exact": False,
                "source": f"{same_arch[1].name} (the trained {model}; the run timed other weights of the "
                          f"same network, whose speed is the same)"}
    return {"mae_mean": None, "source": "none recorded", "exact": False}


def _manifest_json(path: Optional[str]) -> dict:
    if not path:
        return {}
    try:
        return json.loads((Path(path) / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def int8_error(manifest: dict) -> Optional[float]:
    """Mean per-axis error of an int8 pose artifact against its float model, from its int8 gate."""
    gate = (manifest.get("quantization") or {}).get("int8_gate") or {}
    passed = [a for a in gate.get("attempts", []) if a.get("passed")]
    if passed:
        a = passed[-1]
        v = a.get("axis_mean_deg", a.get("mean_deg"))
        return float(v) if v is not None else None
    return None


def detector_quality(model: str, manifest: dict) -> Dict[str, object]:
    par = manifest.get("parity") or {}
    ap = PUBLISHED_DETECTOR_AP.get(model)
    return {"parity_recall": par.get("recall"), "published_ap_hard": ap[2] if ap else None}


# -- configurations --------------------------------------------------------------------------------
def _mean(stages: dict, names: Sequence[str]) -> float:
    return float(sum((stages.get(n) or {}).get("mean", 0.0) or 0.0 for n in names))


def device_under_load(result: dict) -> Optional[str]:
    """A sentence when the result was taken under load (its recorded load averages), else None."""
    load = result.get("load") or {}
    if load.get("verdict") == "loaded":
        return load.get("note") or "flagged as taken under load by headpose bench"
    if load.get("verdict") == "idle":
        # measured by headpose bench itself: the load at the start and the CPU time of OTHER processes
        # during the run; the load average at the end also counts the benchmark's own threads
        return None
    cores = (result.get("device") or {}).get("cores") or 1
    worst = max([v[0] for v in (load.get("loadavg_start"), load.get("loadavg_end")) if v] or [0.0])
    if worst > LOAD_PER_CORE_MAX * cores + 0.5:
        return f"load average {worst:g} on {cores} cores while measuring"
    return None


def configurations(result: dict, faces: Optional[float], budgets: Dict[str, float],
                   weights_dir: Path = WEIGHTS_DIR) -> List[dict]:
    """Every LiteRT pipeline of a result as a planner row (budget check, accuracy, run command)."""
    arts = {a["id"]: a for a in result.get("artifacts", []) or [] if isinstance(a, dict) and "id" in a}
    weights = (result.get("settings") or {}).get("weights") or {}
    rows = []
    for p in result.get("pipelines", []) or []:
        if p.get("backend") != "litert":
            continue
        e2e, stages = p["end_to_end"], p.get("stages") or {}
        measured_faces = (p.get("faces_per_frame") or {}).get("mean")
        fps, p99, mean = float(p["fps"]), float(e2e["p99"]), float(e2e.get("mean") or 1000.0 / max(p["fps"], 1e-9))
        estimate = []
        if faces is not None and measured_faces is not None and abs(faces - measured_faces) > 1e-9:
            if measured_faces <= 0:
                continue  # no face was measured: the per-face cost is unknown
            shift = _mean(stages, FACE_STAGES) * (faces / measured_faces - 1.0)
            mean, p99 = mean + shift, p99 + shift
            fps = 1000.0 / (1000.0 / fps + shift) if 1000.0 / fps + shift > 0 else fps
            estimate.append(f"per-face stages rescaled from {measured_faces:g} to {faces:g} faces per frame")
        pose_a, det_a = arts.get(p.get("pose"), {}), arts.get(p.get("detector"), {})
        pose_m, det_m = _manifest_json(pose_a.get("path")), _manifest_json(det_a.get("path"))
        src = pose_a.get("source_sha256") or (weights.get(p["model"]) or {}).get("sha256")
        acc = pose_accuracy(p["model"], src, weights_dir, pose_a.get("accuracy"))
        i8 = (pose_a.get("accuracy") or {}).get("int8_vs_float_deg")
        if i8 is None and p["precision"] == "int8":
            i8 = int8_error(pose_m)
        det_model = det_a.get("model") or (p.get("detector") or "").split("-")[0]
        det_q = detector_quality(det_model, det_m)
        if (det_a.get("accuracy") or {}).get("parity_recall") is not None:
            det_q["parity_recall"] = det_a["accuracy"]["parity_recall"]
        err = acc["mae_mean"]
        bound = None if err is None else err + (i8 or 0.0)
        meets = fps >= budgets["fps_min"] and p99 < budgets["p99_ms_max"]
        rows.append({
            "device": result["device"]["name"], "run_id": result.get("run_id"), "key": p["key"],
            "model": p["model"], "precision": p["precision"], "detector": p.get("detector"),
            "detector_model": det_model, "threads": p["threads"], "detect_every": p["detect_every"],
            "xnnpack": p.get("xnnpack", True), "fps": round(fps, 2), "p99_ms": round(p99, 1),
            "mean_ms": round(mean, 1), "meets": meets, "estimate": estimate,
            "pose_error_deg": err, "pose_error_bound_deg": None if bound is None else round(bound, 2),
            "int8_vs_float_deg": i8, "accuracy_source": acc["source"], "accuracy_exact": acc["exact"],
            "detector_quality": det_q, "stages": stages, "faces_measured": measured_faces,
            "command": run_command(p, arts),
        })
    return rows


def _artifact_ref(art_id: Optional[str], arts: dict) -> str:
    a = arts.get(art_id) or {}
    path = a.get("path")
    if path and (Path(path) / "manifest.json").is_file():
        return path
    return art_id or "?"  # an artifact id: `headpose run` resolves it in weights/exports and the bench cache


def run_command(p: dict, arts: dict, detect_every: Optional[int] = None, detector: Optional[str] = None,
                threads: Optional[int] = None, max_faces: Optional[int] = None) -> str:
    words = ["headpose", "run", "--detector", detector or _artifact_ref(p.get("detector"), arts),
             "--pose", _artifact_ref(p.get("pose"), arts), "--threads", str(threads or p["threads"]),
             "--detect-every", str(detect_every or p["detect_every"])]
    if p.get("xnnpack") is False:
        words.append("--no-xnnpack")
    if p.get("pipelined"):
        words.append("--pipelined")
    if max_faces:
        words += ["--max-faces", str(max_faces)]
    return shlex.join(words)


def rank_key(r: dict):
    """Most accurate first: pose error bound, detector recall / published AP, detect-every, FPS."""
    q = r["detector_quality"]
    return (r["pose_error_bound_deg"] is None, r["pose_error_bound_deg"] or 0.0,
            -(q.get("parity_recall") or 0.0), -(q.get("published_ap_hard") or 0.0),
            r["detect_every"], -r["fps"])


# -- bottleneck and estimates ---------------------------------------------------------------------
def bottleneck(r: dict, budgets: Dict[str, float]) -> Dict[str, object]:
    """Which stage dominates the frame of a failing configuration, and how far it is from the budget."""
    stages = {k: float(v.get("mean", 0.0) or 0.0) for k, v in (r["stages"] or {}).items()}
    frame = r["mean_ms"]
    name = max(stages, key=stages.get) if stages else "end_to_end"
    target = 1000.0 / budgets["fps_min"]
    return {"stage": name, "stage_ms": round(stages.get(name, frame), 1), "frame_ms": frame,
            "share_pct": round(100 * stages.get(name, frame) / frame, 1) if frame else None,
            "fps_short_ms": round(max(0.0, 1000.0 / r["fps"] - target), 1) if r["fps"] else None,
            "p99_over_ms": round(max(0.0, r["p99_ms"] - budgets["p99_ms_max"]), 1)}


def _model_latency(result: dict, model: str, precision: str, threads: int) -> Optional[float]:
    for e in result.get("model_latency", []) or []:
        if (e.get("runtime") == "litert" and e["model"] == model and e["precision"] == precision
                and e["threads"] == threads and e.get("xnnpack", True) is not False and e.get("batch", 1) == 1):
            return float(e["stats"]["p50"])
    return None


def estimates(r: dict, result: dict, budgets: Dict[str, float], arts: dict, pipe: dict) -> List[dict]:
    """Marked estimates, from this configuration's measured stage means, of what would meet the budget."""
    st = r["stages"] or {}
    de = max(int(r["detect_every"]), 1)
    frame_mean = 1000.0 / r["fps"] if r["fps"] else r["mean_ms"]
    det_frame = _mean(st, DETECT_STAGES)
    det_call = det_frame * de
    rest = frame_mean - det_frame
    target = 1000.0 / budgets["fps_min"]
    p99 = r["p99_ms"]
    out = []

    def add(change, mean_ms, p99_ms, cmd, caveat):
        fps = 1000.0 / mean_ms if mean_ms > 0 else float("inf")
        out.append({"change": change, "fps": round(fps, 1), "p99_ms": round(p99_ms, 1), "estimate": True,
                    "needs_artifact": "detector input" in change,
                    "meets": fps >= budgets["fps_min"] and p99_ms < budgets["p99_ms_max"],
                    "command": cmd, "caveat": caveat})

    # detect every N (the smallest N that reaches the FPS; p99 unchanged)
    if det_call > 0 and rest < target:
        n = max(de + 1, math.ceil(det_call / (target - rest)))
        if n <= 30:
            add(f"detect every {n}", rest + det_call / n, p99,
                run_command(pipe, arts, detect_every=n),
                "FPS only: a detection frame still costs the full detector, so p99 keeps it; boxes between "
                "detections are carried by the tracker (new faces appear up to N-1 frames late)")
    # smaller detector input
    for s in SMALLER_INPUTS:
        k = (s / 640.0) ** 2
        new_det = det_frame * k
        cut = det_frame - new_det
        det_id = str(pipe.get("detector") or "")
        parts = det_id.split("-")
        smaller = "-".join([parts[0], str(s)] + parts[2:]) if len(parts) >= 4 else f"{r['detector_model']} at {s}"
        add(f"detector input {s}x{s} (cost x{k:.2f})", frame_mean - cut, p99 - cut * de,
            run_command(pipe, arts, detector=smaller),
            f"needs that artifact: headpose convert {r['detector_model']} --input-size {s} ...; small faces "
            f"(under ~{int(16 * 640 / s)} px at 640) are found less often")
    # thread counts timed model-only but not end to end
    measured_t = {c["threads"] for c in result.get("pipelines", []) if c.get("model") == r["model"]}
    det_model, prec = r["detector_model"], pipe.get("detector_precision") or r["precision"]
    for t in sorted({e["threads"] for e in result.get("model_latency", []) or []} - measured_t):
        d0, d1 = _model_latency(result, det_model, prec, r["threads"]), _model_latency(result, det_model, prec, t)
        q0, q1 = (_model_latency(result, r["model"], r["precision"], r["threads"]),
                  _model_latency(result, r["model"], r["precision"], t))
        if None in (d0, d1, q0, q1):
            continue
        cut = (1 - d1 / d0) * _mean(st, ("detector",)) + (1 - q1 / q0) * _mean(st, ("pose",))
        add(f"{t} threads", frame_mean - cut, p99 - cut, run_command(pipe, arts, threads=t),
            f"scaled by the model-only p50 ratio t{t}/t{r['threads']} (detector {d1 / d0:.2f}, pose {q1 / q0:.2f})")
    # fewer faces
    faces = r["faces_measured"] or 0
    per_face = _mean(st, FACE_STAGES) / faces if faces else 0.0
    if per_face > 0 and faces > 1:
        for k in range(int(faces) - 1, 0, -1):
            cut = per_face * (faces - k)
            if frame_mean - cut <= target and p99 - cut < budgets["p99_ms_max"]:
                add(f"at most {k} faces", frame_mean - cut, p99 - cut, run_command(pipe, arts, max_faces=k),
                    "the faces beyond K (the smallest detections) get no pose")
                break
    # combined: smaller detector + detect every N
    for s in SMALLER_INPUTS:
        k = (s / 640.0) ** 2
        call = det_call * k
        if rest < target and call > 0:
            n = max(1, math.ceil(call / (target - rest)))
            if n <= 30 and n > 1:
                det_id = str(pipe.get("detector") or "")
                parts = det_id.split("-")
                smaller = "-".join([parts[0], str(s)] + parts[2:]) if len(parts) >= 4 else det_id
                add(f"detector input {s}x{s} and detect every {n}", rest + call / n,
                    p99 - (det_frame - det_frame * k) * de, run_command(pipe, arts, detect_every=n, detector=smaller),
                    "both caveats above")
                break
    return out


# -- the plan --------------------------------------------------------------------------------------
def make_plan(paths: Sequence, fps: float = 30.0, p99: float = 100.0, faces: Optional[float] = None,
              weights_dir: Path = WEIGHTS_DIR) -> Dict[str, object]:
    """Plan every device of the given result files (each validated against the schema)."""
    budgets = {"fps_min": float(fps), "p99_ms_max": float(p99)}
    results = [load_result(p) for p in paths]
    devices: Dict[str, dict] = {}
    for res in results:
        name = res["device"]["name"]
        d = devices.setdefault(name, {"device": name, "runs": [], "rows": [], "warnings": [], "_results": []})
        d["runs"].append(res.get("run_id"))
        d["_results"].append(res)
        warn = device_under_load(res)
        if warn:
            d["warnings"].append(f"{res.get('run_id')}: taken under load ({warn}): figures are pessimistic and "
                                 f"noisy; re-run `headpose bench` on an idle device")
        d["rows"] += configurations(res, faces, budgets, weights_dir)
    for d in devices.values():
        rows = d["rows"]
        if not rows:
            d["warnings"].append("no end-to-end LiteRT pipeline in these results: run `headpose bench --sweep plan`")
        ok = sorted([r for r in rows if r["meets"]], key=rank_key)
        d["meeting"] = ok
        d["best"] = ok[0] if ok else None
        d["bottlenecks"], d["estimates"] = [], []
        if not ok and rows:
            by_model: Dict[str, dict] = {}
            for r in rows:  # the fastest measured configuration of each pose model
                if r["model"] not in by_model or r["fps"] > by_model[r["model"]]["fps"]:
                    by_model[r["model"]] = r
            for r in sorted(by_model.values(), key=rank_key):
                res = next(x for x in d["_results"] if x.get("run_id") == r["run_id"])
                arts = {a["id"]: a for a in res.get("artifacts", []) or [] if isinstance(a, dict) and "id" in a}
                pipe = next(p for p in res["pipelines"] if p["key"] == r["key"])
                b = bottleneck(r, budgets)
                b.update(key=r["key"], model=r["model"], fps=r["fps"], p99_ms=r["p99_ms"])
                d["bottlenecks"].append(b)
                for e in estimates(r, res, budgets, arts, pipe):
                    e.update(base=r["key"], model=r["model"], pose_error_bound_deg=r["pose_error_bound_deg"],
                             rank=rank_key(r))
                    d["estimates"].append(e)
            # the most accurate base first; a change that needs no new artifact before one that does
            good = sorted([e for e in d["estimates"] if e["meets"]],
                          key=lambda e: (e["rank"], e["needs_artifact"], -e["fps"]))
            d["best_estimate"] = good[0] if good else None
        else:
            d["best_estimate"] = None
        del d["_results"]
        for e in d["estimates"]:
            e.pop("rank", None)
    return {"budgets": budgets, "faces": faces, "devices": list(devices.values())}


def _acc(r: dict) -> str:
    if r["pose_error_bound_deg"] is None:
        return "n/a"
    s = f"{r['pose_error_bound_deg']:.2f}"
    return s + ("" if r["accuracy_exact"] else "*")


def format_plan(plan: dict, top: int = 10) -> str:
    from .report import text_table
    b = plan["budgets"]
    lines = []
    for d in plan["devices"]:
        lines.append(f"== {d['device']} ({len(d['runs'])} run(s); budget {b['fps_min']:g}+ FPS, p99 < "
                     f"{b['p99_ms_max']:g} ms" + (f", {plan['faces']:g} faces per frame" if plan["faces"] else "")
                     + ")")
        lines += [f"warning: {w}" for w in d["warnings"]]
        if d["meeting"]:
            lines.append(f"{len(d['meeting'])} of {len(d['rows'])} measured configurations meet the budget, most "
                         f"accurate first (pose error: held-out MAE in degrees, + int8 error vs float where gated; "
                         f"* = the trained weights of the same network):")
            rows = [[r["model"], r["precision"], r["detector"], r["threads"], r["detect_every"], r["fps"],
                     r["p99_ms"], _acc(r), "estimate" if r["estimate"] else "measured"] for r in d["meeting"][:top]]
            lines.append(text_table(("pose", "precision", "detector", "threads", "detect every", "FPS", "p99 ms",
                                     "pose error", "figures"), rows))
            best = d["best"]
            lines.append(f"\nbest: {best['key']} ({best['fps']} FPS, p99 {best['p99_ms']} ms, pose error "
                         f"{_acc(best)} deg from {best['accuracy_source']})"
                         + (" [estimate: " + "; ".join(best["estimate"]) + "]" if best["estimate"] else ""))
            lines.append(f"  {best['command']}")
        else:
            lines.append(f"none of the {len(d['rows'])} measured configurations meets the budget.")
            for bn in d["bottlenecks"]:
                lines.append(f"- {bn['key']}: {bn['fps']} FPS, p99 {bn['p99_ms']} ms; bottleneck {bn['stage']} "
                             f"{bn['stage_ms']} ms of {bn['frame_ms']} ms per frame ({bn['share_pct']} %); the "
                             f"frame must lose {bn['fps_short_ms']} ms for {b['fps_min']:g} FPS and the p99 "
                             f"{bn['p99_over_ms']} ms")
            if d["estimates"]:
                lines.append("ESTIMATES (arithmetic on the measured stage means, not measurements):")
                rows = [[e["base"], e["change"], e["fps"], e["p99_ms"], "yes" if e["meets"] else "no"]
                        for e in d["estimates"]]
                lines.append(text_table(("from", "change (estimate)", "FPS est.", "p99 ms est.", "meets"), rows))
                be = d["best_estimate"]
                if be:
                    lines.append(f"\nbest estimate: {be['base']} with {be['change']} (~{be['fps']} FPS, p99 "
                                 f"~{be['p99_ms']} ms, ESTIMATE: {be['caveat']}); measure it before relying on it:")
                    lines.append(f"  {be['command']}")
                else:
                    lines.append("no single change estimated here meets the budget: a faster device, or fewer "
                                 "pixels and faces, is needed")
        lines.append("")
    return "\n".join(lines)


def add_parser(sub) -> None:
    p = sub.add_parser("plan", help="from bench results: the configurations that meet an FPS/p99 budget, "
                                    "most accurate first, and the headpose run command of the best",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", nargs="+", help="result JSON files of `headpose bench` (one or more devices)")
    p.add_argument("--fps", type=float, default=30.0, help="minimum FPS (default %(default)s)")
    p.add_argument("--p99", type=float, default=100.0, help="p99 end-to-end latency bound in ms (default %(default)s)")
    p.add_argument("--faces", type=float, default=None, metavar="N",
                   help="faces per frame to plan for (default: as measured; otherwise the per-face stages "
                        "are rescaled and the figures marked as estimates)")
    p.add_argument("--top", type=int, default=10, help="rows shown per device (default %(default)s)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the plan as JSON")
    p.set_defaults(func=run_plan)


def run_plan(args: argparse.Namespace) -> int:
    from ..runtime.errors import InputError
    if args.fps <= 0 or args.p99 <= 0 or (args.faces is not None and args.faces < 0):
        raise InputError("--fps and --p99 must be positive, --faces zero or more")
    plan = make_plan(args.results, args.fps, args.p99, args.faces)
    print(format_plan(plan, args.top))
    if args.json:
        from ..runtime.manifest import write_json_atomic
        write_json_atomic(Path(args.json), plan)
    return 0 if all(d["best"] for d in plan["devices"]) else 1
