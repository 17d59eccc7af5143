"""The fresh-machine default: `headpose run` with no model or source argument works without ../shared.

The detector comes from the scrfd==0.3.0 package that ./install.sh fetched (checksummed) into
weights/cache/, the pose model is the shipped student, the artifacts are built on first use into an
empty weights directory, and the source is the package's sample photo (29 real faces).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from headpose.runtime.registry import DEFAULT_DETECTOR, DEFAULT_POSE, DEFAULT_POSE_WEIGHTS, DEFAULT_SAMPLE

ROOT = Path(__file__).resolve().parents[2]


def test_headpose_run_with_no_arguments(tmp_path):
    if not (ROOT / "weights" / DEFAULT_SAMPLE).is_file():
        pytest.skip("weights/cache/ has no scrfd package: ./install.sh fetches it (the test must not download)")
    assert (ROOT / "weights" / DEFAULT_POSE_WEIGHTS).is_file(), "the shipped student is missing"
    weights = tmp_path / "weights"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEADPOSE_")}
    env["HEADPOSE_WEIGHTS_DIR"] = str(weights)
    out = tmp_path / "out.jsonl"
    r = subprocess.run([sys.executable, "-m", "headpose.cli", "run", "--jsonl", str(out)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 1
    faces = records[0]["faces"]
    assert len(faces) >= 20, f"only {len(faces)} faces on the 29-face sample photo"
    yaws = [f["yaw"] for f in faces]
    assert all(abs(f["yaw"]) < 90 and abs(f["pitch"]) < 90 for f in faces)
    assert max(yaws) - min(yaws) > 5, "poses do not vary across faces"
    # what it ran: the fastest gate-passing artifacts on this install (the checkout's shipped int8 ones
    # in weights/int8/, if any), else the fresh-machine pair it built in the empty weights folder
    code = ("import sys; from headpose.runtime.cli import default_artifacts; "
            "print(*default_artifacts(), sep=chr(10))")
    used = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert used.returncode == 0, used.stderr[-2000:]
    dirs = [Path(p) for p in used.stdout.split()]
    built = {f"{model}-{size}-{fmt}-{precision}" for model, size, fmt, precision in (DEFAULT_DETECTOR, DEFAULT_POSE)}
    for d in dirs:
        assert d.name in built and d.parent == weights / "exports" or d.parent == ROOT / "weights" / "int8", d
        m = json.loads((d / "manifest.json").read_text())
        assert m["parity"]["passed"] is True
        assert "shared" not in json.dumps(m["source"]) + json.dumps(m["quantization"]) or d.parent.name == "int8", \
            "built from ../shared"
