"""``headpose bench --sweep plan``: the one sweep ``headpose plan`` needs, sized for <= 10 minutes on a Pi.

What it measures (on the artifacts found by :func:`headpose.runtime.resolve.resolve_artifact`, never
built: on a device they are copied from a development machine; a missing one is skipped with a
note): the pose models that have a trained student (``weights/<model>_*.pt``; else
mobilenetv3_small) at fp32 and int8, the scrfd_500m detector at the pose precision (fp32 where its
int8 artifact is absent), threads ``1`` and all usable cores, detect-every 1 and 3 (the planner
extrapolates larger N from the measured per-stage costs), 40 measured frames per pipeline after 2
warm-up frames, 20 model-only runs after 3 warm-up; no ONNX Runtime baseline, no sustained run.

Its duration, an ESTIMATE (:func:`estimate_seconds`, printed by ``--dry-run``): every pipeline
costs (frames + warm-up) x its frame time, every model-only measurement (runs + warm-up + 1) x its
model time, plus ~1 s of loading per pipeline. Model and frame times on a Raspberry Pi 4 come from
:mod:`headpose.benchmarks.estimate` (published Pi 4 figures per MAC, 4 threads; 1 thread taken as
:data:`ONE_THREAD_FACTOR` x slower) with the video's 7 faces per frame; the Pi 5 is faster
(``estimate.PI5_SPEEDUP``), so the Pi 4 figure is the bound to meet.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

from . import estimate as est

FRAMES, PIPELINE_WARMUP, RUNS, WARMUP = 40, 2, 20, 3
DETECT_EVERY = (1, 3)
PRECISIONS = ("fp32", "int8")
DETECTOR = "scrfd_500m"
FACES = 7  # in_video.mp4: 7 faces in every frame
ONE_THREAD_FACTOR = 3.0  # XNNPACK on 4 Cortex-A72 cores: ~3x one core (assumed)
LOAD_S = 1.0
# multiply-accumulates per call (millions): pose models at 224 (headpose.benchmarks.flops.pose_model_macs),
# SCRFD-500M at 640x640 (flops.onnx_conv_macs of scrfd_500m_bnkps.onnx, rounded up)
MACS_M = {"mobilenetv3_small": 60.0, "mobilenetv3_large": 230.0, "mobilenetv2": 320.0, "resnet18": 1820.0,
          "scrfd_500m": 750.0}


def students() -> List[str]:
    """Pose models with a trained student checkpoint in weights/ (the runtime's lookup, no torch)."""
    from ..runtime.paths import WEIGHTS_DIR
    from ..runtime.registry import POSE_MODELS
    found = [m for m in POSE_MODELS if (WEIGHTS_DIR / f"{m}.pt").is_file() or any(WEIGHTS_DIR.glob(f"{m}_*.pt"))]
    return found or ["mobilenetv3_small"]


def apply(args, cores: int) -> None:
    """Set the sweep's settings on parsed ``headpose bench`` arguments (the preset wins over the flags)."""
    args.pose = ",".join(f"{m}-224-tflite-{p}" for m in students() for p in PRECISIONS)
    args.detector = DETECTOR
    args.precision = ",".join(PRECISIONS)
    args.threads = ",".join(str(t) for t in sorted({1, max(1, cores)}))
    args.detect_every = ",".join(str(d) for d in DETECT_EVERY)
    args.xnnpack, args.batch = "on", "1"
    args.frames, args.pipeline_warmup, args.runs, args.warmup, args.seconds = FRAMES, PIPELINE_WARMUP, RUNS, WARMUP, None
    args.no_baseline, args.torch, args.duration = True, False, None


def _model_ms(model: str, precision: str, threads: int) -> float:
    kind = "dense" if model.startswith("resnet") else "mobile"
    ms = est.model_ms_pi4(MACS_M[model] * 1e6, kind, precision)
    return ms * (ONE_THREAD_FACTOR if threads == 1 else 1.0)


def estimate_seconds(poses: Sequence[str], precisions: Sequence[str], threads: Sequence[int],
                     detect_every: Sequence[int] = DETECT_EVERY, frames: int = FRAMES,
                     warmup: int = PIPELINE_WARMUP, runs: int = RUNS, model_warmup: int = WARMUP,
                     faces: float = FACES) -> Dict[str, float]:
    """ESTIMATED seconds of the sweep on a Raspberry Pi 4 (see the module docstring for the method)."""
    pipe_s = model_s = 0.0
    n_pipes = 0
    for m in poses:
        for p in precisions:
            for t in threads:
                det, pose = _model_ms(DETECTOR, p, t), _model_ms(m, p, t)
                model_s += (runs + model_warmup + 1) * pose / 1e3
                for de in detect_every:
                    pipe_s += (frames + warmup) * est.frame_ms(det, pose, faces, de) / 1e3 + LOAD_S
                    n_pipes += 1
    for p in precisions:
        for t in threads:
            model_s += (runs + model_warmup + 1) * _model_ms(DETECTOR, p, t) / 1e3
    return {"pipelines": n_pipes, "frames": n_pipes * (frames + warmup), "pipelines_s": round(pipe_s),
            "model_only_s": round(model_s), "total_s": round(pipe_s + model_s)}
