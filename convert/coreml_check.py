#!/usr/bin/env python3
"""Check a headpose-edge CoreML artifact on a Mac: CoreML predictions vs the shipped reference.

Copied into every CoreML artifact as ``verify_coreml.py``. Needs only ``numpy``, ``Pillow`` and
``coremltools`` (macOS; coremltools cannot predict elsewhere), not the headpose package::

    python verify_coreml.py [ARTIFACT_DIR] [--compute-units ALL|CPU_ONLY|CPU_AND_GPU|CPU_AND_NE]

It reads ``manifest.json`` and ``reference.npz`` (real uint8 RGB inputs and the reference outputs
of the source model), runs ``model.mlpackage`` on each input, prints a JSON report and exits 0 when
every figure is within ``manifest.parity.coreml_predictions.tolerance``, 1 otherwise.

Pose: the largest geodesic angle (degrees) between the rotations of the CoreML and the reference
6-vectors (Gram-Schmidt, as the runtime). SCRFD: the largest score difference over all anchors, and
the largest box / keypoint distance difference (stride units) over anchors the reference scores
at or above the manifest's score threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def rotation_from_6d(v: np.ndarray) -> np.ndarray:
    """(B, 6) -> (B, 3, 3): columns x = n(a1), z = n(x cross a2), y = z cross x."""
    v = np.asarray(v, np.float64).reshape(-1, 6)
    x = v[:, :3] / np.linalg.norm(v[:, :3], axis=1, keepdims=True)
    z = np.cross(x, v[:, 3:])
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    return np.stack([x, np.cross(z, x), z], axis=2)


def geodesic_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    tr = np.einsum("bij,bij->b", a, b)
    return np.degrees(np.arccos(np.clip((tr - 1.0) / 2.0, -1.0, 1.0)))


def check(artifact: Path, compute_units: str = "ALL") -> dict:
    import coremltools as ct
    from PIL import Image
    manifest = json.loads((artifact / "manifest.json").read_text())
    ref = np.load(artifact / manifest["parity"]["reference"]["file"])
    tol = manifest["parity"]["coreml_predictions"]["tolerance"]
    model = ct.models.MLModel(str(artifact / manifest["file"]),
                              compute_units=getattr(ct.ComputeUnit, compute_units))
    in_name = manifest["input"]["name"]
    outs = [model.predict({in_name: Image.fromarray(img, "RGB")}) for img in ref["image"]]
    report = {"artifact": manifest["id"], "compute_units": compute_units, "inputs": int(len(ref["image"]))}
    if manifest["task"] == "head_pose":
        name = next(o["name"] for o in manifest["outputs"] if o["role"] == "ortho6d")
        got = np.concatenate([np.asarray(o[name], np.float32).reshape(1, 6) for o in outs])
        geo = geodesic_deg(rotation_from_6d(ref["ortho6d"]), rotation_from_6d(got))
        report.update(max_geodesic_deg=float(geo.max()), mean_geodesic_deg=float(geo.mean()),
                      ok=bool(geo.max() <= tol["pose_max_deg"]))
    else:
        thr = manifest["decode"]["score_threshold"]
        score_diff, dist_diff = 0.0, 0.0
        for o in manifest["outputs"]:
            if o["role"] != "score":
                continue
            s = o["stride"]
            r_score = ref[o["name"]]
            g_score = np.stack([np.asarray(x[o["name"]], np.float32).reshape(r_score.shape[1:]) for x in outs])
            score_diff = max(score_diff, float(np.abs(g_score - r_score).max()))
            pos = r_score[..., 0] >= thr
            for other in manifest["outputs"]:
                if other["stride"] == s and other["role"] in ("bbox", "kps") and pos.any():
                    r = ref[other["name"]]
                    g = np.stack([np.asarray(x[other["name"]], np.float32).reshape(r.shape[1:]) for x in outs])
                    dist_diff = max(dist_diff, float(np.abs(g - r)[pos].max()))
        report.update(max_score_diff=score_diff, max_distance_diff_stride_units=dist_diff,
                      ok=bool(score_diff <= tol["score_max_abs"] and dist_diff <= tol["dist_max_abs"]))
    report["tolerance"] = tol
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("artifact", nargs="?", default=str(Path(__file__).resolve().parent))
    p.add_argument("--compute-units", default="ALL", choices=("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE"))
    args = p.parse_args(argv)
    if sys.platform != "darwin":
        print("verify_coreml.py: CoreML predictions need macOS (coremltools cannot predict on "
              f"{sys.platform}); run it on a Mac", file=sys.stderr)
        return 2
    report = check(Path(args.artifact), args.compute_units)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
