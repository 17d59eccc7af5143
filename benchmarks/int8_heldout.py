"""int8 vs float of a pose student on held-out people: the figures of weights/README.md (issue 14).

For one student (``weights/<model>_fsanet.pt``), builds the float TFLite graph once (onnx2tf), then
one int8 model per variant ``CALIB:MODE`` (``CALIB``: ``video`` = ``in_video.mp4``, ``train`` =
``weights/int8/calib_train.txt``; ``MODE``: ``plain`` or ``float_head``), and measures each against
the float PyTorch student on the gate crops of ``weights/int8/gate_heldout.txt`` (the data plan's
held-out people + ``data/images``), with :func:`headpose.convert.int8_gate.angle_errors` (geodesic
mean / p99, per-|yaw|-bin figures), XNNPACK partitions and 1-thread latency; per-source figures too.

    .venv/bin/python -m headpose.benchmarks.int8_heldout mobilenetv2 video:plain,video:float_head \\
        --work /tmp/int8-heldout --json out.json

Needs the convert extra and ../shared. Latencies are indicative (one run, whatever the load).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from ..runtime.paths import PROJECT_ROOT, SHARED

log = logging.getLogger(__name__)
CALIBRATIONS = {"video": [SHARED / "data" / "in_video.mp4"],
                "train": [PROJECT_ROOT / "weights" / "int8" / "calib_train.txt"]}
GATE = PROJECT_ROOT / "weights" / "int8" / "gate_heldout.txt"
DETECTOR = SHARED / "weights" / "scrfd_500m_bnkps.onnx"


def measure(model_id: str, variants, work: Path, weights: Optional[Path] = None) -> dict:
    """Figures of each variant (see the module docstring); ``work`` keeps the onnx2tf folder.

    ``weights`` is the float checkpoint to measure (default ``weights/<model>_fsanet.pt``; e.g. a QAT
    fine-tune, ``headpose distill --qat``); give each checkpoint its own ``work`` folder.
    """
    import torch
    from ..convert import calibration as cal
    from ..convert.checkpoint import load_pose_model
    from ..convert.facedata import sample_evenly
    from ..convert.int8_gate import angle_errors, float_ops_model, latency_ms, run_tflite
    from ..convert.steps import onnx_export, simplify, tflite
    from ..runtime.interpreter import make_interpreter, xnnpack_partitions
    from ..runtime.registry import get_spec
    from ..runtime.rotation import geodesic_deg, rotation_from_6d
    spec = get_spec(model_id)
    work.mkdir(parents=True, exist_ok=True)
    gate = cal.pose_data(spec, CALIBRATIONS["train"], spec.input_size, True, DETECTOR, gate=[GATE])
    weights = Path(weights) if weights else PROJECT_ROOT / "weights" / f"{model_id}_fsanet.pt"
    model = load_pose_model(model_id, weights)
    saved = work / "onnx2tf" / "saved_model"
    if not (saved / "model_float32.tflite").exists():
        onnx_export.export_pose(model, work / "source.onnx", spec.input_size)
        with tflite.redirect_fds(work / "onnxsim.log"):
            simplify.simplify(work / "source.onnx", work / "model.onnx")
        saved = tflite.onnx_to_saved_model(work / "model.onnx", work / "onnx2tf", gate.sample_rgb01)
    with torch.no_grad():
        ref = rotation_from_6d(model(torch.from_numpy(np.ascontiguousarray(gate.parity.transpose(0, 3, 1, 2))))
                               .numpy().astype(np.float64))
    sources = gate.info["sets"]["gate"]["sources"]
    bounds = np.cumsum([0] + [s["faces"] for s in sources])
    src_of = np.searchsorted(bounds, sample_evenly(int(bounds[-1]), len(gate.parity)), side="right") - 1
    out = {"model": model_id, "weights": str(weights), "gate": gate.info["sets"]["gate"], "float32_ms": latency_ms(saved / "model_float32.tflite",
                                                                                        gate.parity)}
    for v in variants:
        cname, mode = v.split(":")
        src = CALIBRATIONS[cname]
        calib = cal.pose_data(spec, src[0] if len(src) == 1 else src, spec.input_size, True, DETECTOR).calibration
        f = work / f"{cname}_{mode}.tflite"
        if mode == "plain":
            tflite.quantize(saved, "int8", f, calib, work / "quantize.log")
        elif mode == "float_head":
            f.write_bytes(float_ops_model(saved, calib, ["FULLY_CONNECTED"], work / "float_head.log"))
        else:
            raise SystemExit(f"mode '{mode}': expected plain or float_head")
        test = run_tflite(f, gate.parity)
        geo = geodesic_deg(ref, rotation_from_6d(test))
        per_source = {s["name"]: {"n": int((src_of == i).sum()), "geodesic_mean_deg": round(float(geo[src_of == i].mean()), 3)}
                      for i, s in enumerate(sources) if (src_of == i).any()}
        out[v] = {"figures": angle_errors(ref, test), "per_source": per_source, "bytes": f.stat().st_size,
                  "xnnpack_partitions": xnnpack_partitions(make_interpreter(str(f))), "ms": latency_ms(f, gate.parity)}
        fig = out[v]["figures"]
        log.warning("%s %s: geodesic mean %.3f p99 %.3f deg, bins %s, %d partition(s), %.1f ms", model_id, v,
                    fig["geodesic_mean_deg"], fig["geodesic_p99_deg"],
                    {k: b["geodesic_mean_deg"] for k, b in fig["by_yaw_bin"].items()},
                    out[v]["xnnpack_partitions"], out[v]["ms"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("variants", help="comma-separated CALIB:MODE, e.g. video:plain,video:float_head")
    p.add_argument("--work", default="weights/cache/int8-heldout", help="work folder (onnx2tf output is kept)")
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--weights", help="float checkpoint (default weights/<model>_fsanet.pt; use its own --work)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    res = measure(args.model, args.variants.split(","), Path(args.work).resolve() / args.model,  # onnx2tf runs elsewhere
                  Path(args.weights) if args.weights else None)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
