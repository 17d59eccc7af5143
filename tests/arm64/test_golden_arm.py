"""The device runtime on (emulated) aarch64 gives the x86 results: run by ``.ci/arm64.sh`` under qemu-user.

``.ci/arm64.sh`` prepares the golden directory on x86 (artifacts, frames, x86 results; see
``arm64_golden.py``) and runs this file with the aarch64 interpreter of the emulated Raspberry Pi OS
root, with ``HEADPOSE_ARM64_GOLDEN`` set. Anywhere else (the x86 test run) it is skipped.
"""

import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import pytest

from arm64_golden import META_FILE, EXPECTED_FILE, compare, format_rows, run_runtime

GOLDEN = os.environ.get("HEADPOSE_ARM64_GOLDEN")
REPORT = os.environ.get("HEADPOSE_ARM64_REPORT")
pytestmark = pytest.mark.skipif(
    not GOLDEN or platform.machine() != "aarch64",
    reason="ARM64 golden check: runs only on aarch64 under .ci/arm64.sh (which sets HEADPOSE_ARM64_GOLDEN)")


def test_bare_device_install():
    """What runs here is the pip-installed wheel with only the bare install's packages (no OpenCV, no torch)."""
    import headpose
    assert Path(headpose.__file__).resolve().is_relative_to(Path(sys.prefix).resolve()), headpose.__file__
    from importlib import metadata
    assert metadata.version("ai-edge-litert")
    for absent in ("cv2", "torch", "tensorflow", "onnxruntime"):
        with pytest.raises(ImportError):
            __import__(absent)


def test_golden_matches_x86():
    golden = Path(GOLDEN)
    meta = json.loads((golden / META_FILE).read_text())
    expected = dict(np.load(golden / EXPECTED_FILE))
    got = run_runtime(golden)
    rows = compare(expected, got, meta)
    from headpose.runtime.interpreter import interpreter_version
    report = {"cpu": os.environ.get("QEMU_CPU", "unknown"), "interpreter": interpreter_version(),
              "numpy": np.__version__, "python": platform.python_version(), "x86": meta["x86"], "rows": rows,
              "not_converted": meta.get("not_converted", [])}
    if REPORT:
        Path(REPORT).write_text(json.dumps(report, indent=1))
    print(format_rows(rows))
    for line in meta.get("not_converted", []):
        print(f"SKIPPED {line}")
    assert rows and all(r["faces"] for r in rows), "no faces compared: the frames found none"
    failures = [f"{r['artifact']}: {f}" for r in rows for f in r["failures"]]
    assert not failures, "\n".join(failures[:20])
