"""Golden check of the device runtime on ARM64: the same artifacts and frames, x86 vs emulated aarch64.

Two halves:

* ``prepare`` (x86, the dev/CI ``.venv``): converts the real SCRFD-500M ONNX and a seeded pose
  checkpoint into TFLite fp32 and int8 artifacts with ``headpose.convert.pipeline.convert``, decodes a
  few real video frames with OpenCV and saves them as ``.npy`` (the device side has no OpenCV), then
  runs :func:`run_runtime` with the x86 LiteRT interpreter and saves what it returns as
  ``expected.npz``.
* :func:`run_runtime` + :func:`compare` (aarch64 under qemu, only NumPy + ai-edge-litert + the
  installed ``headpose`` wheel): ``tests/arm64/test_golden_arm.py`` runs the same runtime code on the
  same inputs and compares with ``expected.npz``.

What is compared, per artifact and frame (all with the NumPy pre-processing, ``use_opencv=False``):

* detector: every raw output tensor (by manifest role and stride), the decoded boxes+scores and keypoints;
* pose: the normalised crops of fixed boxes (the x86 int8 detector's boxes, fp32 if int8 is missing, so
  both sides crop the same faces), the raw 6D outputs and the decoded (pitch, yaw, roll) in degrees.

Rules (see :func:`compare`): int8 raw outputs within one quantisation step of x86 (bit-identical is
reported as such; then boxes, keypoints are bit-identical too and angles agree to 1e-9 degree, the
float64 ``atan2``/``sqrt`` of two libms); crops always bit-identical; fp32 artifacts:
``|arm - x86| <= 1e-4 * max(|x86|, 1)`` for every value (units: raw model units, pixels, degrees), and
the same number of faces. Figures are written so the CI log shows them.

Timings under emulation are meaningless; nothing here measures speed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

log = logging.getLogger("arm64_golden")

DETECTOR = "scrfd_500m"
POSE = "mobilenetv3_small"
PRECISIONS = ("int8", "fp32")
# Frames of in_video.mp4 at these fractions of its length (frames 33 and 164 of 329: 7 and 6 faces).
# Few on purpose: under emulation one 640x640 SCRFD invoke takes seconds.
FRAME_FRACTIONS = (0.1, 0.5)
THREADS = 2  # interpreter threads on both sides (a Pi would use 4; qemu-user runs guest threads in parallel)
FP32_REL = 1e-4
INT8_ANGLE_ABS = 1e-9
# int8 outputs one quantisation step apart move the angles; bound that at the scale of the model's own
# int8 error. Observed on MobileNetV3-Small: LiteRT splits its int8 graph into 28 XNNPACK partitions,
# the ops between them run LiteRT's built-in int8 kernels, and those round differently on x86 and ARM
# (run wholly on built-in kernels, its first CONV_2D already differs by one step in 176 of 200704
# values). SCRFD-500M int8 (3 partitions) is bit-identical.
INT8_STEP_ANGLE_DEG = 1.0
FRAMES_FILE = "frames.npy"
BOXES_FILE = "pose_boxes.npz"
EXPECTED_FILE = "expected.npz"
META_FILE = "meta.json"


# --------------------------------------------------------------------------- both sides

def run_runtime(golden: Path) -> Dict[str, np.ndarray]:
    """Run every artifact of ``golden/meta.json`` on its frames with the installed runtime.

    Parameters
    ----------
    golden : Path
        Directory written by ``prepare``: ``meta.json``, ``frames.npy`` (F, H, W, 3) uint8 BGR,
        ``pose_boxes.npz`` (``frame<i>`` -> (K, 5) float32 boxes), artifact directories.

    Returns
    -------
    dict: ``"<artifact id>/frame<i>/<quantity>"`` -> array (float32, or float64 for angles)
    """
    from headpose.runtime.detector import FaceDetector
    from headpose.runtime.pose import PoseEstimator
    from headpose.runtime.rotation import euler_from_rotation, rotation_from_6d

    meta = json.loads((golden / META_FILE).read_text())
    frames = np.load(golden / FRAMES_FILE)
    boxes = dict(np.load(golden / BOXES_FILE))
    out: Dict[str, np.ndarray] = {}
    for art in meta["artifacts"]:
        path = golden / art["dir"]
        aid = art["id"]
        if art["task"] == "face_detection":
            det = FaceDetector(path, num_threads=THREADS, xnnpack=True, use_opencv=False)
            for i, frame in enumerate(frames):
                x, scale = det.preprocess(frame, "BGR")
                raw = det.raw(x)
                for (role, stride), arr in sorted(raw.items()):
                    out[f"{aid}/frame{i}/raw/{role}@{stride}"] = np.asarray(arr, np.float32)
                dets, kps = det.decode(raw, scale)
                out[f"{aid}/frame{i}/dets"] = dets
                out[f"{aid}/frame{i}/kps"] = kps
        else:
            pose = PoseEstimator(path, num_threads=THREADS, xnnpack=True, use_opencv=False)
            for i, frame in enumerate(frames):
                crops, kept = pose.crop(frame, boxes[f"frame{i}"], "BGR")
                v6 = pose.infer(crops)
                out[f"{aid}/frame{i}/crops"] = crops
                out[f"{aid}/frame{i}/kept"] = np.asarray(kept, np.int64)
                out[f"{aid}/frame{i}/ortho6d"] = v6
                out[f"{aid}/frame{i}/euler"] = euler_from_rotation(rotation_from_6d(v6)).reshape(-1, 3)
    return out


def _raw_name(key: str) -> str:
    """``"<aid>/frame0/raw/score@8"`` -> ``"score@8"``; ``"<aid>/frame0/ortho6d"`` -> ``"ortho6d"``."""
    return key.split("/", 2)[2].split("/")[-1]


def compare(expected: Dict[str, np.ndarray], got: Dict[str, np.ndarray], meta: dict) -> List[dict]:
    """Compare ARM results with the x86 ones; one row per artifact with the worst figures.

    int8 artifacts: each raw model output may differ by at most one quantisation step of the int8
    tensor it is dequantised from (``meta`` holds the steps, read from the model on x86); a pose
    6-vector computed in float after the int8 body (the float_head remedy) is judged by its angles. Where every
    raw output is bit-identical, everything decoded from it (boxes, keypoints) must be too and the
    angles must agree to ``INT8_ANGLE_ABS``; where some differ by a step, the angles must agree to
    ``INT8_STEP_ANGLE_DEG`` and the face counts must match. Crops (NumPy, model-independent) are
    always bit-identical. fp32: ``|arm - x86| <= FP32_REL * max(|x86|, 1)`` everywhere.

    Returns
    -------
    list of dict: ``artifact``, ``precision``, ``values`` (count compared), ``max_abs`` and ``max_rel``
    per quantity kind, ``raw_steps_differing`` (raw values one step apart), ``faces``, ``failures``
    (list of str; empty when the artifact passed).
    """
    rows = []
    for art in meta["artifacts"]:
        aid, prec = art["id"], art["precision"]
        steps = art.get("output_steps", {})
        keys = sorted(k for k in expected if k.startswith(aid + "/"))
        row = {"artifact": aid, "precision": prec, "values": 0, "faces": 0, "max_abs": {}, "max_rel": {},
               "raw_steps_differing": 0, "raw_values": 0, "failures": []}
        missing = [k for k in keys if k not in got]
        extra = sorted(k for k in got if k.startswith(aid + "/") and k not in expected)
        if missing or extra or not keys:
            row["failures"].append(f"result keys differ: missing {missing[:3]}, extra {extra[:3]}, "
                                   f"expected {len(keys)}")
        pairs = []
        for k in keys:
            if k not in got:
                continue
            e, g = expected[k], got[k]
            kind = k.split("/", 2)[2].split("/")[0]  # raw, dets, kps, crops, kept, ortho6d, euler
            if kind in ("dets", "euler"):
                row["faces"] += int(e.shape[0])
            if e.shape != g.shape:
                row["failures"].append(f"{k}: shape {g.shape} on ARM, {e.shape} on x86")
                continue
            row["values"] += int(e.size)
            if e.size:
                pairs.append((k, kind, e, g))
        raw_identical = True
        for k, kind, e, g in pairs:
            if kind in ("raw", "ortho6d"):
                row["raw_values"] += int(e.size)
                n = int(np.count_nonzero(e != g))
                row["raw_steps_differing"] += n
                raw_identical &= n == 0
        for k, kind, e, g in pairs:
            diff = np.abs(g.astype(np.float64) - e.astype(np.float64))
            rel = diff / np.maximum(np.abs(e.astype(np.float64)), 1.0)
            row["max_abs"][kind] = max(row["max_abs"].get(kind, 0.0), float(diff.max()))
            row["max_rel"][kind] = max(row["max_rel"].get(kind, 0.0), float(rel.max()))
            if kind in ("kept", "crops"):
                if not np.array_equal(e, g):
                    row["failures"].append(f"{k}: not bit-identical (max |diff| {diff.max():.3g})")
            elif prec != "int8":
                if rel.max() > FP32_REL:
                    row["failures"].append(f"{k}: max |diff|/max(|x86|,1) {rel.max():.3g} > {FP32_REL}")
            elif kind in ("raw", "ortho6d"):
                step = steps.get(_raw_name(k))
                if step is None:
                    # a float output after a float layer (the int8 gate's float_head remedy keeps the
                    # final FULLY_CONNECTED in float32): the int8 body's one-step differences reach it
                    # through float arithmetic, so no step bounds it; the angles decoded from it are
                    # checked against INT8_STEP_ANGLE_DEG below, as for outputs a step apart
                    if kind == "raw" and not np.array_equal(e, g):
                        row["failures"].append(f"{k}: not bit-identical and no quantisation step is known")
                elif diff.max() > step * (1 + 1e-4):
                    row["failures"].append(f"{k}: differs by {diff.max() / step:.2f} quantisation steps (> 1)")
            elif kind == "euler":
                limit = INT8_ANGLE_ABS if raw_identical else INT8_STEP_ANGLE_DEG
                if diff.max() > limit:
                    row["failures"].append(f"{k}: angles differ by {diff.max():.3g} deg (> {limit})")
            elif raw_identical and not np.array_equal(e, g):  # dets, kps from identical raw outputs
                row["failures"].append(f"{k}: not bit-identical though the raw outputs are (max |diff| "
                                       f"{diff.max():.3g})")
        rows.append(row)
    return rows


def format_rows(rows: List[dict]) -> str:
    """Human-readable table of :func:`compare`'s rows."""
    lines = []
    for r in rows:
        figs = ", ".join(f"{k} {r['max_abs'][k]:.3g} ({r['max_rel'][k]:.2g})" for k in sorted(r["max_abs"]))
        n, total = r["raw_steps_differing"], r["raw_values"]
        raw = ("raw outputs bit-identical" if not n else
               f"{n}/{total} raw outputs one quantisation step apart" if r["precision"] == "int8" else
               f"{n}/{total} raw outputs not bit-identical")
        lines.append(f"{'PASS' if not r['failures'] else 'FAIL'} {r['artifact']}: {r['values']} values, "
                     f"{r['faces']} faces, {raw}; max |arm-x86| (max |arm-x86|/max(|x86|,1)): {figs}")
        lines.extend(f"    {f}" for f in r["failures"][:10])
    return "\n".join(lines)


# --------------------------------------------------------------------------- x86 side

def artifact_set() -> str:
    """What the converted artifacts are made from: ``.ci/arm64.sh`` caches them under a hash of it."""
    return f"detector={DETECTOR} pose={POSE} seed=1 precisions={','.join(PRECISIONS)} calib=in_video.mp4"


def _frames(video: Path) -> np.ndarray:
    """The frames at ``FRAME_FRACTIONS`` of the video, (F, H, W, 3) uint8 BGR, decoded with OpenCV."""
    import cv2
    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if total <= 0:
        raise SystemExit(f"arm64_golden: cannot read frames of {video}")
    picks = [int(round(total * f)) for f in FRAME_FRACTIONS]
    frames = []
    for idx in picks:
        cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
        ok, frame = cap.read()
        if not ok:
            raise SystemExit(f"arm64_golden: frame {idx} of {video} could not be decoded")
        frames.append(frame)
    cap.release()
    return np.stack(frames)


def _artifacts(cache: Path, weights: Path, calib: Path) -> Tuple[List[Tuple[str, Path]], List[str]]:
    """Convert (once; kept in ``cache``) the detector and pose artifacts.

    Returns
    -------
    made : list of (task, artifact dir)
    failed : list of str, one line per artifact the converter refused (``ConversionError``); it is
        reported as skipped by the ARM side, never silently dropped
    """
    from headpose.convert.checkpoint import seeded_checkpoint
    from headpose.convert.pipeline import convert
    from headpose.runtime.detector import FaceDetector
    from headpose.runtime.errors import ConversionError, HeadposeError
    from headpose.runtime.pose import PoseEstimator
    from headpose.runtime.manifest import artifact_id
    from headpose.runtime.registry import get_spec

    cache.mkdir(parents=True, exist_ok=True)
    ckpt = cache / f"{POSE}-seed1.pt"
    if not ckpt.exists():
        seeded_checkpoint(POSE, ckpt, seed=1)  # seed 1: part of artifact_set()
    detector_onnx = weights / "scrfd_500m_bnkps.onnx"
    made, failed = [], []
    for prec in PRECISIONS:
        for model, src, task in ((DETECTOR, detector_onnx, "face_detection"), (POSE, ckpt, "head_pose")):
            done = cache / artifact_id(model, get_spec(model).input_size, "tflite", prec)
            if (done / "manifest.json").exists():
                try:  # still readable by this runtime? (a manifest schema change makes it re-convert)
                    (FaceDetector if task == "face_detection" else PoseEstimator)(done, use_opencv=False)
                    made.append((task, done))
                    continue
                except HeadposeError as e:
                    log.info("cached %s is stale for this runtime (%s): converting again", done.name, e)
            log.info("converting %s %s (cached in %s for later runs)", model, prec, cache)
            try:
                path = convert(model, src, fmt="tflite", precision=prec, calib=calib, out_dir=cache, force=True,
                               detector=detector_onnx if task == "head_pose" else None)
            except ConversionError as e:
                log.error("%s %s: the x86 conversion failed, so ARM cannot be compared on it: %s", model, prec, e)
                failed.append(f"{done.name}: conversion failed on x86: {e}")
                continue
            made.append((task, Path(path)))
    return made, failed


def _output_steps(manifest) -> Dict[str, float]:
    """Quantisation step of each output (``"score@8"`` / ``"ortho6d"``) of an int8 artifact, else ``{}``.

    A float output produced by a DEQUANTIZE node has the step of that node's int8 input; a quantised
    output has its own scale. Read with the x86 interpreter (LiteRT's op list, through the runtime's
    :func:`~headpose.runtime.interpreter.op_details`, is used here only, never on the device side).
    """
    if manifest.precision != "int8":
        return {}
    from ai_edge_litert import interpreter as litert

    from headpose.runtime.interpreter import op_details
    it = litert.Interpreter(model_path=str(manifest.model_path),
                            experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    by_name = {t["name"]: t for t in tensors.values()}
    producer = {o: op for op in op_details(it) for o in op["outputs"]}
    steps = {}
    for o in manifest.outputs:
        t = by_name[o.name]
        scale = float(t["quantization"][0])
        op = producer.get(t["index"])
        if scale == 0.0 and op is not None and op["op_name"] == "DEQUANTIZE":
            scale = float(tensors[op["inputs"][0]]["quantization"][0])
        if scale > 0:
            steps[o.role if o.stride is None else f"{o.role}@{o.stride}"] = scale
    return steps


def prepare(out: Path, cache: Path, shared: Path) -> dict:
    """Write the golden directory (artifacts linked from ``cache``, frames, boxes, x86 results)."""
    from headpose.runtime.detector import FaceDetector
    from headpose.runtime.interpreter import interpreter_version
    from headpose.runtime.manifest import load_manifest

    video = shared / "data" / "in_video.mp4"
    weights = shared / "weights"
    for p in (video, weights / "scrfd_500m_bnkps.onnx"):
        if not p.exists():
            raise FileNotFoundError(f"real data {p} is not present (../shared is laid beside the checkout)")
    out.mkdir(parents=True, exist_ok=True)
    arts = []
    made, failed = _artifacts(cache, weights, video)
    if not any(task == "face_detection" for task, _ in made):
        raise SystemExit("arm64_golden: no detector artifact could be converted: " + "; ".join(failed))
    for task, src in made:
        m = load_manifest(src)
        link = out / m.id
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(src.resolve(), target_is_directory=True)
        arts.append({"id": m.id, "dir": m.id, "task": task, "precision": m.precision,
                     "file_sha256": m.to_dict().get("file_sha256"), "output_steps": _output_steps(m)})
    frames = _frames(video)
    np.save(out / FRAMES_FILE, frames)
    dets = [a for a in arts if a["task"] == "face_detection"]
    box_source = next((a for a in dets if a["precision"] == "int8"), dets[0])
    det = FaceDetector(out / box_source["dir"], num_threads=THREADS, use_opencv=False)
    boxes = {f"frame{i}": det.detect(f, "BGR")[0] for i, f in enumerate(frames)}
    np.savez(out / BOXES_FILE, **boxes)
    meta = {"artifacts": arts, "not_converted": failed, "pose_boxes_from": box_source["id"],
            "frames": int(frames.shape[0]), "frame_shape": list(frames.shape[1:]),
            "faces_per_frame": [int(b.shape[0]) for b in boxes.values()],
            "x86": {"interpreter": interpreter_version(), "numpy": np.__version__}}
    (out / META_FILE).write_text(json.dumps(meta, indent=1))
    expected = run_runtime(out)
    np.savez(out / EXPECTED_FILE, **expected)
    log.info("golden inputs in %s: %d artifacts, %d frames, faces per frame %s, %d expected arrays",
             out, len(arts), frames.shape[0], meta["faces_per_frame"], len(expected))
    return meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="x86 half of the ARM64 golden check (see module docstring)")
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare", help="convert artifacts, save frames and the x86 results")
    pp.add_argument("--out", required=True, type=Path, help="golden directory to write")
    pp.add_argument("--cache", required=True, type=Path, help="where converted artifacts are kept between runs")
    pp.add_argument("--shared", type=Path, default=Path(os.environ.get(
        "HEADPOSE_SHARED", Path(__file__).resolve().parents[3] / "shared")), help="the shared data folder")
    sub.add_parser("artifact-set", help="print what the converted artifacts depend on (the cache key)")
    ps = sub.add_parser("summary", help="print the figures of the per-CPU reports")
    ps.add_argument("reports", nargs="+", type=Path)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if args.cmd == "artifact-set":
        print(artifact_set())
        return 0
    if args.cmd == "prepare":
        prepare(args.out, args.cache, args.shared)
        return 0
    bad = 0
    for rep in args.reports:
        d = json.loads(rep.read_text())
        print(f"[{d['cpu']}] aarch64 {d['interpreter']}, numpy {d['numpy']} vs x86 {d['x86']['interpreter']}, "
              f"numpy {d['x86']['numpy']}")
        print(format_rows(d["rows"]))
        for line in d.get("not_converted", []):
            print(f"SKIPPED {line}")
        bad += sum(bool(r["failures"]) for r in d["rows"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
