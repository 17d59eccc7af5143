"""ESTIMATE of per-frame cost on Raspberry Pi 4 / 5 from published per-model figures and MAC counts.

This is arithmetic, not a measurement: measure on the device with ``headpose bench`` for real
figures. The method:

1. Published model times on a Raspberry Pi 4 (4 threads) give an effective rate in MACs per ms
   per network kind (depthwise "mobile" networks vs dense ResNets) and precision (:data:`PUBLISHED`).
2. A network's time on the Pi 4 = its MACs (counted by :mod:`headpose.benchmarks.flops`) / that
   rate; where fp32 (or int8) has no published point, the int8 -> fp32 factor :data:`INT8_GAIN` is
   applied.
3. The Pi 5 is the Pi 4 divided by :data:`PI5_SPEEDUP` (a low and a high figure).
4. A frame costs detector / detect_every + faces x pose + a fixed overhead for capture,
   preprocessing, decoding and drawing (:data:`OVERHEAD_MS`); 30 FPS needs <= 33.3 ms.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

# Published Raspberry Pi 4 figures (4 threads, 224x224 unless noted), model time per image.
PUBLISHED = [
    {"source": "PyTorch tutorial 'Real Time Inference on Raspberry Pi 4 and 5' (pytorch.org, T. Rice)",
     "device": "pi4", "model": "mobilenet_v2", "kind": "mobile", "precision": "int8", "ms": 26.4, "macs_m": 300.0},
    {"source": "PyTorch tutorial 'Real Time Inference on Raspberry Pi 4 and 5'", "device": "pi4",
     "model": "mobilenet_v3_large", "kind": "mobile", "precision": "int8", "ms": 30.7, "macs_m": 217.0},
    {"source": "PyTorch tutorial 'Real Time Inference on Raspberry Pi 4 and 5' (no qnnpack weights: fp32)",
     "device": "pi4", "model": "resnet18", "kind": "dense", "precision": "fp32", "ms": 100.3, "macs_m": 1814.0},
    {"source": "Qengineering TensorFlow_Lite_Classification_RPi_64-bits (TFLite, Pi 4 at 1950 MHz, 45.5 FPS)",
     "device": "pi4", "model": "mobilenet_v2", "kind": "mobile", "precision": "int8", "ms": 22.0, "macs_m": 300.0},
]
# The same tutorial: ~30 FPS on a Pi 4 and ~41 FPS on a Pi 5 (int8 MobileNetV2, end to end) -> 1.37x;
# Raspberry Pi Ltd states 2-3x the CPU performance of the Pi 4 for the Pi 5 (Cortex-A76 at 2.4 GHz).
PI5_SPEEDUP = (1.37, 2.5)
# fp32 / int8 time ratio assumed where only one precision is published (XNNPACK on Cortex-A72: 1.5-2x).
INT8_GAIN = 1.7
# Capture + letterbox + crops + decode + drawing per frame on a Pi 4 (ms), assumed; Pi 5 divides it too.
OVERHEAD_MS = 8.0
FRAME_BUDGET_MS = 1000.0 / 30.0


def rate_macs_per_ms(kind: str, precision: str) -> float:
    """Effective Pi 4 rate (MACs/ms) for a network kind and precision from :data:`PUBLISHED`."""
    pts = [p for p in PUBLISHED if p["kind"] == kind]
    same = [p for p in pts if p["precision"] == precision]
    use = same or pts
    rate = sum(p["macs_m"] * 1e6 / p["ms"] for p in use) / len(use)
    if not same:  # convert between precisions
        rate = rate * INT8_GAIN if precision == "int8" else rate / INT8_GAIN
    return rate


def model_ms_pi4(macs: float, kind: str, precision: str) -> float:
    """Estimated Pi 4 (4 threads) time of one call of a network with ``macs`` MACs."""
    return macs / rate_macs_per_ms(kind, precision)


def frame_ms(det_ms: float, pose_ms: float, faces: float, detect_every: int = 1, overhead_ms: float = OVERHEAD_MS
             ) -> float:
    """Per-frame time: detector amortised over ``detect_every`` + faces x pose + overhead."""
    return det_ms / detect_every + faces * pose_ms + overhead_ms


def estimate_table(pose_macs: Dict[str, float], det_macs: float, precisions: Sequence[str] = ("fp32", "int8"),
                   faces: Sequence[float] = (1, 7), detect_every: Sequence[int] = (1, 5),
                   det_precision: str = "fp32") -> List[Dict[str, object]]:
    """One row per pose model x precision x faces x detect-every: Pi 4 and Pi 5 ms/frame and FPS.

    Parameters
    ----------
    pose_macs : model id -> MACs of one pose call
    det_macs : MACs of one detector call
    det_precision : precision of the detector (the int8 SCRFD may not convert: fp32)
    """
    det4 = model_ms_pi4(det_macs, "mobile", det_precision)
    rows = []
    for model, macs in pose_macs.items():
        kind = "dense" if model.startswith("resnet") else "mobile"
        for prec in precisions:
            p4 = model_ms_pi4(macs, kind, prec)
            for n in faces:
                for de in detect_every:
                    f4 = frame_ms(det4, p4, n, de)
                    f5 = [f4 / s for s in PI5_SPEEDUP]
                    rows.append({"model": model, "precision": prec, "faces": n, "detect_every": de,
                                 "pose_ms_pi4": round(p4, 1), "det_ms_pi4": round(det4, 1),
                                 "frame_ms_pi4": round(f4, 1), "fps_pi4": round(1000.0 / f4, 1),
                                 "frame_ms_pi5": [round(v, 1) for v in sorted(f5)],
                                 "fps_pi5": [round(1000.0 / v, 1) for v in sorted(f5, reverse=True)],
                                 "pi4_30fps": f4 <= FRAME_BUDGET_MS,
                                 "pi5_30fps": ("yes" if max(f5) <= FRAME_BUDGET_MS else
                                               "maybe" if min(f5) <= FRAME_BUDGET_MS else "no")})
    return rows


def markdown(rows: List[Dict[str, object]]) -> str:
    """The estimate as a Markdown table."""
    head = ("pose model", "precision", "faces", "detect every", "pose ms (Pi 4)", "detector ms (Pi 4)",
            "frame ms Pi 4", "FPS Pi 4", "30 FPS Pi 4?", "FPS Pi 5 (low-high)", "30 FPS Pi 5?")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lo, hi = r["fps_pi5"]
        lines.append(f"| {r['model']} | {r['precision']} | {r['faces']} | {r['detect_every']} | {r['pose_ms_pi4']} | "
                     f"{r['det_ms_pi4']} | {r['frame_ms_pi4']} | {r['fps_pi4']} | {'yes' if r['pi4_30fps'] else 'no'} | "
                     f"{lo}-{hi} | {r['pi5_30fps']} |")
    return "\n".join(lines)


def main() -> None:  # pragma: no cover - prints the table used in benchmarks/results/README.md
    from ..runtime.paths import SHARED_WEIGHTS
    from .flops import onnx_conv_macs, pose_model_macs
    pose = {m: float(pose_model_macs(m)["macs"]) for m in ("mobilenetv3_small", "mobilenetv2", "resnet18")}
    det = float(onnx_conv_macs(SHARED_WEIGHTS / "scrfd_500m_bnkps.onnx", (1, 3, 640, 640)))
    print({k: round(v / 1e6, 1) for k, v in pose.items()}, "MMAC; scrfd_500m@640", round(det / 1e6, 1), "MMAC")
    print(markdown(estimate_table(pose, det)))


if __name__ == "__main__":  # pragma: no cover
    main()
