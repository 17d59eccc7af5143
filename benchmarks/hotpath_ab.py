"""A/B of the per-frame hot path (issue 13 points 1-2): an older commit's runtime against this checkout's,
in ONE process on the same frames, with the same artifacts and threads.

The old runtime is taken from git (``git archive OLD runtime``) into a temporary package, so both
code paths run side by side; passes alternate (old, new, old, new, ...) and each stage's figure is
the median over passes of the per-frame mean. What is timed per frame is
``HeadPoseEstimator.estimate`` (detector on every frame, smoothing on) and its ``last_timings``
stages; video decode is outside (the frames are decoded once, before timing).

Usage (under the machine's CPU lock)::

    flock /work/logs/cpu.lock .venv/bin/python -m headpose.benchmarks.hotpath_ab --old d481ca5 \\
        --detector DIR --pose DIR [--pose-new DIR] --source ../shared/data/in_video.mp4 --passes 4

``--pose-new`` / ``--detector-new`` give the new path other artifacts (e.g. the int8-input rewrite
of the same int8 model), so the old code runs the float-input artifacts it knows and the new code
its own.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

STAGES = ("detector_preprocess", "detector", "decode", "crop", "pose", "smoothing")


def old_runtime(commit: str, repo: Path, where: Path):
    """Import ``runtime/`` of ``commit`` as the package ``hp_old_runtime`` (from ``where``)."""
    data = subprocess.run(["git", "-C", str(repo), "archive", commit, "runtime"], check=True,
                          capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=data, check=True)
    os.replace(where / "runtime", where / "hp_old_runtime")
    sys.path.insert(0, str(where))
    return importlib.import_module("hp_old_runtime.estimator")


def frames_of(source: str, limit: int) -> List[np.ndarray]:
    """The first ``limit`` frames (BGR uint8), decoded once by the runtime's own reader."""
    from itertools import islice

    from ..runtime.sources import open_source
    with open_source(source) as src:
        return [f.image for f in islice(src, limit)]


def one_pass(est_mod, det: str, pose: str, frames: List[np.ndarray], threads: int) -> Dict[str, float]:
    opts = est_mod.EstimatorOptions(threads=threads, detect_every=1, smooth=True)
    sums = {k: 0.0 for k in STAGES}
    total, faces = 0.0, 0
    with est_mod.HeadPoseEstimator.from_artifacts(det, pose, opts) as hpe:
        hpe.estimate(frames[0], timestamp=0.0)  # warm-up (first-call allocations of both)
        hpe.reset()
        for i, fr in enumerate(frames):
            t0 = time.perf_counter()
            got = hpe.estimate(fr, timestamp=i / 25.0)
            total += time.perf_counter() - t0
            faces += len(got)
            for k in STAGES:
                sums[k] += hpe.last_timings.get(k, 0.0)
    n = len(frames)
    return {**{k: v / n for k, v in sums.items()}, "estimate": total / n * 1e3, "faces_per_frame": faces / n}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", required=True, help="git commit of the old runtime")
    ap.add_argument("--detector", required=True)
    ap.add_argument("--pose", required=True)
    ap.add_argument("--detector-new")
    ap.add_argument("--pose-new")
    ap.add_argument("--source", default="../shared/data/in_video.mp4")
    ap.add_argument("--frames", type=int, default=329)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--passes", type=int, default=4, help="passes per path (alternating)")
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    tmp = Path(tempfile.mkdtemp(prefix="hotpath-ab-"))
    old = old_runtime(a.old, repo, tmp)
    new = importlib.import_module("headpose.runtime.estimator")
    frames = frames_of(a.source, a.frames)
    runs: Dict[str, List[Dict[str, float]]] = {"old": [], "new": []}
    for p in range(a.passes):
        for name, mod, det, pose in (("old", old, a.detector, a.pose),
                                     ("new", new, a.detector_new or a.detector, a.pose_new or a.pose)):
            r = one_pass(mod, det, pose, frames, a.threads)
            runs[name].append(r)
            print(f"pass {p} {name}: " + " ".join(f"{k} {v:.2f}" for k, v in r.items()), file=sys.stderr, flush=True)
    med = {name: {k: float(np.median([r[k] for r in rs])) for k in rs[0]} for name, rs in runs.items()}
    ratio = {k: (med["old"][k] / med["new"][k] if med["new"][k] > 0 else None) for k in med["old"]}
    out = {"old_commit": a.old, "frames": len(frames), "threads": a.threads, "passes": a.passes,
           "artifacts": {"old": [a.detector, a.pose], "new": [a.detector_new or a.detector, a.pose_new or a.pose]},
           "loadavg_before": os.getloadavg(), "median_ms": med, "old_over_new": ratio, "passes_ms": runs}
    print("stage                 old ms   new ms   old/new")
    for k in (*STAGES, "estimate"):
        r = ratio[k]
        print(f"{k:20s} {med['old'][k]:8.2f} {med['new'][k]:8.2f}   {r:.2f}" if r else f"{k:20s} {med['old'][k]:8.2f} {med['new'][k]:8.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
