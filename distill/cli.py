"""``headpose distill`` and ``headpose eval``: teacher -> student distillation and accuracy reports.

Heavy imports (torch, onnxruntime, OpenCV) happen inside the run functions only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path
from typing import List, Optional, Tuple

from ..runtime.paths import SHARED as DEFAULT_SHARED, SHARED_WEIGHTS

log = logging.getLogger(__name__)

DEFAULT_DETECTOR = SHARED_WEIGHTS / "scrfd_500m_bnkps.onnx"


def _resolve_source(spec: str, root: Optional[Path]) -> str:
    """Absolute path of a ``PATH[#START:STOP][@EVERY]`` source (relative paths against ``root`` or the cwd)."""
    from .cropset import parse_source
    path, every, start, stop = parse_source(spec)
    p = Path(path)
    if not p.is_absolute():
        p = (root / p) if root else p
    suffix = spec[len(path):]
    return str(p.resolve()) + suffix


def _sources(args, key: str, plan_key: Optional[str] = None) -> List[str]:
    """Sources of ``--data``/``--val`` plus those of ``--data-plan``'s ``plan_key`` list.

    ``plan_key`` defaults to ``train`` for ``--data`` and ``val`` for ``--val``; evaluation reads ``val``.
    """
    from ..runtime.errors import InputError
    out = [_resolve_source(s, None) for s in (getattr(args, key, None) or [])]
    if getattr(args, "data_plan", None):
        plan_path = Path(args.data_plan)
        if not plan_path.is_file():
            raise InputError(f"data plan '{plan_path}' does not exist: expected a JSON file "
                             f"{{\"train\": [...], \"val\": [...]}} of sources")
        plan = json.loads(plan_path.read_text())
        root = Path(args.data_root)
        plan_key = plan_key or ("train" if key == "data" else "val")
        if plan_key not in plan:
            raise InputError(f"data plan '{plan_path}' has no '{plan_key}' list")
        out += [_resolve_source(s, root) for s in plan[plan_key]]
    return out


def _cache_dir(base: Path, sources: List[str], teacher: List[str], min_face: int) -> Path:
    key = json.dumps([sources, teacher, min_face]).encode()
    return base / f"crops-{hashlib.sha256(key).hexdigest()[:12]}"


def _teacher_specs(specs: List[str]) -> List[str]:
    out = []
    for s in specs:
        model_id, eq, path = s.rpartition("=")
        out.append(f"{model_id}={Path(path).resolve()}" if eq else str(Path(s).resolve()))
    return out


def _crops(sources: List[str], args, teacher: List[str]):
    from ..runtime.errors import InputError
    from .cropset import cached_cropset
    if not teacher:
        raise InputError("building crops from --data needs a teacher to label them: give --teacher "
                         "(e.g. ../shared/weights/fsanet_1x1.onnx ../shared/weights/fsanet_var.onnx)")
    folder = _cache_dir(Path(args.cache), sources, teacher, args.min_face)
    return cached_cropset(sources, folder, args.detector, teacher, min_face=args.min_face)


def run_distill(args: argparse.Namespace) -> int:
    import time
    from ..runtime.errors import InputError
    from .distill import DistillConfig, distill
    from .evaluate import evaluate, load_predictor
    train_src, val_src = _sources(args, "data"), _sources(args, "val")
    if not train_src:
        raise InputError("no training data: give --data VIDEO_OR_DIR [...] or --data-plan PLAN.json")
    teacher = _teacher_specs(args.teacher)
    t0 = time.time()
    train = _crops(train_src, args, teacher)
    val = _crops(val_src, args, teacher) if val_src else None
    overlap = set(train_src) & set(val_src)
    if overlap:
        raise InputError(f"sources both in training and validation: {sorted(overlap)}; hold out whole sources")
    out = Path(args.out)
    if args.qat:
        from .qat import QATConfig, qat_finetune
        if not args.init:
            raise InputError("--qat fine-tunes a trained student: give --init CKPT (e.g. weights/"
                             f"{args.student}_fsanet.pt)")
        steps = args.epochs * (len(train) // args.batch)
        cfg_q = QATConfig(student=args.student, steps=min(steps, args.max_steps or steps), batch=args.batch,
                          lr=args.lr if args.lr is not None else QATConfig.lr, seed=args.seed, threads=args.threads,
                          weight_decay=args.weight_decay if args.weight_decay is not None else QATConfig.weight_decay,
                          self_weight=args.self_weight, calib_crops=args.qat_calib,
                          length_weight=args.length_weight if args.length_weight is not None else QATConfig.length_weight)
        sidecar = qat_finetune(cfg_q, train, val, out, args.init, progress=not args.quiet)
    else:
        cfg = DistillConfig(student=args.student, epochs=args.epochs, batch=args.batch,
                            lr=args.lr if args.lr is not None else 2e-3,
                            weight_decay=args.weight_decay if args.weight_decay is not None else 1e-4,
                            seed=args.seed, threads=args.threads,
                            train_size=args.train_size, full_size_epochs=args.full_size_epochs,
                            max_steps=args.max_steps, length_weight=args.length_weight or 0.0)
        work = Path(args.work_dir) if args.work_dir else Path(args.cache) / f"{out.stem}.work"
        sidecar = distill(cfg, train, val, out, work, resume=not args.no_resume, progress=not args.quiet,
                          init=args.init, bn_crops=args.bn_recalibrate)
    if val is not None:
        report = evaluate(load_predictor(out, args.student), val, limit=args.eval_limit,
                          with_consistency=not args.no_consistency)
        sidecar["validation"] = report
        sidecar["invocation_seconds"] = round(time.time() - t0, 1)  # this command only (a resumed run: the rest)
        from ..runtime.manifest import write_json_atomic
        write_json_atomic(out.with_suffix(".json"), sidecar)
        from .evaluate import format_report
        print(format_report(report))
    print(f"student written to {out} (sidecar {out.with_suffix('.json')})")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    import numpy as np
    from ..runtime.errors import InputError
    from .cropset import load_cropset
    from .evaluate import evaluate, format_report, load_predictor
    from .teachers import make_teacher
    teacher = _teacher_specs(args.teacher) if args.teacher else []
    if args.crops:
        cs = load_cropset(args.crops)
    else:
        src = _sources(args, "data", plan_key="val")  # a plan's held-out list, never its training list
        if not src:
            raise InputError("nothing to evaluate on: give --data VIDEO_OR_DIR [...], --data-plan PLAN.json "
                             "(its 'val' list) or --crops CROPSET_DIR")
        cs = _crops(src, args, teacher)
    predictor = load_predictor(args.pose, args.model)
    report = evaluate(predictor, cs, teacher=make_teacher(teacher) if teacher and args.teacher_consistency else None,
                      limit=args.limit, with_consistency=not args.no_consistency)
    if args.against:
        from ..convert.int8_gate import angle_errors
        ref = load_predictor(args.against, args.model)
        idx = slice(None)
        if args.limit:
            from ..convert.facedata import sample_evenly
            idx = sample_evenly(len(cs), args.limit)
        base = np.asarray(cs.base[idx])
        # gate figures: this model against the reference model (e.g. int8 artifact vs its fp32 checkpoint)
        report["vs_reference"] = {"reference": str(args.against),
                                  **angle_errors(ref.rotations(base), predictor.raw(base))}
        v = report["vs_reference"]
        print(f"vs reference {args.against}: mean {v['mean_deg']:.3f} deg, p99 {v['p99_deg']:.3f} deg, "
              f"max {v['max_deg']:.3f} deg (Euler); geodesic mean {v['geodesic_mean_deg']:.3f}, p99 "
              f"{v['geodesic_p99_deg']:.3f} deg over {v['n']} crops")
    report["pose"] = str(args.pose)
    report["teacher"] = cs.meta.get("teacher")
    print(format_report(report))
    if args.json:
        from ..runtime.manifest import write_json_atomic
        write_json_atomic(args.json, report)
        print(f"report written to {args.json}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", nargs="+", metavar="SRC", help="videos, images or folders; PATH[#START:STOP][@EVERY]")
    p.add_argument("--data-plan", metavar="JSON", help="JSON {\"train\": [...], \"val\": [...]} of sources "
                   "relative to --data-root (e.g. weights/fsanet_data_plan.json)")
    p.add_argument("--data-root", default=str(DEFAULT_SHARED), help="root of the plan's relative sources")
    p.add_argument("--teacher", nargs="+", default=[], metavar="T",
                   help="ONNX files with degrees out (averaged), MODEL_ID=checkpoint.pt, or an artifact folder")
    p.add_argument("--detector", default=str(DEFAULT_DETECTOR), help="SCRFD ONNX with keypoints that finds faces")
    p.add_argument("--min-face", type=int, default=40, help="smallest face box side kept (pixels)")
    p.add_argument("--cache", default="weights/cache", help="where crop sets and resume checkpoints are kept")
    p.add_argument("--no-consistency", action="store_true", help="skip the rotated/flipped consistency figures")


def add_parser(sub) -> None:
    p = sub.add_parser("distill", help="distil a teacher into a student backbone on real face crops",
                       description="Train a pose backbone from scratch on real face crops labelled by a teacher.")
    _common(p)
    p.add_argument("--student", required=True, help="registered pose backbone (e.g. mobilenetv3_small)")
    p.add_argument("--val", nargs="+", metavar="SRC", help="held-out sources (whole people or frame ranges)")
    p.add_argument("--out", required=True, help="student checkpoint (.pt, plain state_dict); sidecar .json beside it")
    p.add_argument("--epochs", type=int, default=14)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, help="peak learning rate (default 2e-3; 5e-5 with --qat)")
    p.add_argument("--weight-decay", type=float, help="AdamW weight decay (default 1e-4; 0 with --qat)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--train-size", type=int, help="train at this input side (faster) before --full-size-epochs")
    p.add_argument("--full-size-epochs", type=int, default=0, help="last epochs at the registry's 224 px")
    p.add_argument("--init", metavar="CKPT", help="start from these weights of the same backbone (fine-tuning, "
                   "e.g. a student trained at a lower --train-size)")
    p.add_argument("--length-weight", type=float, metavar="W",
                   help="weight of a hinge keeping the 6D output vectors at least 1 long (int8-friendly; "
                        "default 0; 1.0 with --qat)")
    p.add_argument("--qat", action="store_true",
                   help="quantisation-aware fine-tuning of the --init student (simulated TFLite int8: per-channel "
                        "weights, per-tensor activations; distill/qat.py); --max-steps is then the total number "
                        "of steps (else --epochs over the training crops); writes a plain float checkpoint that "
                        "'headpose convert --precision int8' converts")
    p.add_argument("--self-weight", type=float, default=1.0, metavar="W",
                   help="--qat: weight of the geodesic to the --init student's own float rotation (default 1)")
    p.add_argument("--qat-calib", type=int, default=256, metavar="N",
                   help="--qat: un-augmented training crops that start the activation ranges (default 256)")
    p.add_argument("--bn-recalibrate", type=int, default=0, metavar="N",
                   help="re-estimate BatchNorm statistics on N un-augmented training crops at the end (default off)")
    p.add_argument("--max-steps", type=int, help="at most this many batches per epoch (dry runs)")
    p.add_argument("--eval-limit", type=int, help="final evaluation on this many held-out crops")
    p.add_argument("--work-dir", help="resume checkpoint folder (default: <cache>/<out stem>.work)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a resume checkpoint exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_distill)

    e = sub.add_parser("eval", help="accuracy of a pose model against a teacher on held-out real crops",
                       description="Yaw/pitch/roll MAE and geodesic error against the teacher's labels, and "
                                   "label-free consistency on rotated and mirrored copies.")
    _common(e)
    e.add_argument("--pose", required=True, help="checkpoint (.pt) or converted artifact folder")
    e.add_argument("--model", help="backbone of a checkpoint (default: the one it fits)")
    e.add_argument("--crops", help="a cached crop set folder instead of --data")
    e.add_argument("--limit", type=int, help="evaluate on this many crops spread over the set")
    e.add_argument("--teacher-consistency", action="store_true", help="also report the teacher's consistency")
    e.add_argument("--against", metavar="MODEL", help="also compare with this checkpoint/artifact (e.g. the fp32 "
                   "model of an int8 artifact): mean and p99 of the pitch/yaw/roll differences")
    e.add_argument("--json", help="write the full report here")
    e.set_defaults(func=run_eval)
