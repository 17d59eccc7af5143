"""Conversion edges of issue 18 (point 11): ``--out`` naming a file, a damaged face-detection cache."""

from __future__ import annotations

import numpy as np
import pytest

from headpose.cli import main
from tests.conftest import IMAGES, WEIGHTS, need_shared


def test_out_naming_a_file_is_a_clear_error(tmp_path, capsys):
    f = tmp_path / "exports"
    f.write_text("not a folder")
    rc = main(["convert", "mobilenetv3_small", "--weights", str(f), "--format", "tflite", "--out", str(f)])
    err = capsys.readouterr().err
    assert rc == 2 and "is a file: expected the folder" in err and "Traceback" not in err
    assert f.read_text() == "not a folder"


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_detection_cache_is_rebuilt(tmp_path, monkeypatch, damage):
    pytest.importorskip("onnxruntime", reason="the convert extra finds the faces")
    from headpose.convert import calibration
    monkeypatch.setenv("HEADPOSE_CACHE", str(tmp_path))
    src = need_shared(IMAGES / "single_face.jpg")
    det = need_shared(WEIGHTS / "scrfd_500m_bnkps.onnx")
    sha = calibration.source_sha256(src)
    crops, _ = calibration._cached_face_crops(src, sha, det, 224, 0.2)  # builds the cache
    cache, = tmp_path.glob("faces-*.npz")
    good = cache.read_bytes()
    cache.write_bytes(good[: len(good) // 2] if damage == "truncated" else b"")
    again, _ = calibration._cached_face_crops(src, sha, det, 224, 0.2)
    assert len(again) == len(crops) >= 1 and np.array_equal(again, crops)
    assert cache.read_bytes() == good  # rebuilt in place


# ---- points 9 and 10: leftovers of killed conversions, signals --------------------------------------
def _dead_pid() -> int:
    import subprocess
    import sys
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_sweep_removes_only_dead_runs_leftovers_and_restores_a_cut_force(tmp_path):
    import os
    import socket
    from headpose.convert import staging
    host, dead, live = socket.gethostname(), _dead_pid(), os.getppid()
    names = {"dead_stage": f".a.staging-{host}-{dead}-k2j_x9", "dead_work": f".a.work-{host}-{dead}-p0q1",
             "live_stage": f".b.staging-{host}-{live}-zz", "other_host": f".c.staging-otherbox-{dead}-zz",
             "cut_force": f".d.old-{host}-{dead}-0", "done_force": f".e.old-{host}-{dead}-0"}
    for n in names.values():
        (tmp_path / n).mkdir()
        (tmp_path / n / "model.tflite").write_bytes(b"x")
    (tmp_path / "e").mkdir()  # the replacement of e was published before the kill
    staging.sweep(tmp_path)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["d", "e", names["live_stage"], names["other_host"]])
    assert (tmp_path / "d" / "model.tflite").exists()  # the old artifact is back under its name


def _convert_child(ckpt, out):
    import subprocess
    import sys
    from tests.conftest import ROOT, VIDEO
    return subprocess.Popen([sys.executable, "-m", "headpose.cli", "convert", "mobilenetv3_small", "--weights",
                             str(ckpt), "--format", "tflite", "--precision", "fp32", "--calib", str(VIDEO),
                             "--out", str(out)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_default)


def _sigint_default():
    """A job started in the background inherits SIGINT ignored; a terminal's Ctrl-C finds it at its default."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_work(p, out, timeout=180.0):
    import time
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None:
        if any(".work-" in q.name and any(q.iterdir()) for q in out.iterdir()):
            return
        time.sleep(0.1)
    raise AssertionError(f"the conversion made no work folder: {p.communicate()}")


@pytest.mark.parametrize("sig,code", [(15, 143), (2, 130), (9, -9)], ids=["SIGTERM", "SIGINT", "SIGKILL"])
def test_a_stopped_conversion_leaves_nothing(seeded_ckpt, tmp_path, sig, code):
    pytest.importorskip("onnx2tf", reason="the convert extra")
    from headpose.convert import staging
    from tests.conftest import VIDEO
    need_shared(VIDEO)
    out = tmp_path / "exports"
    out.mkdir()
    p = _convert_child(seeded_ckpt("mobilenetv3_small"), out)
    _wait_for_work(p, out)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == code, err[-2000:]
    if sig == 9:  # nothing can clean up after kill -9: the next conversion's sweep does
        assert list(out.iterdir())
        staging.sweep(out)
    assert list(out.iterdir()) == []


def test_a_swallowed_signal_stops_at_the_next_step(tmp_path):
    import os
    import signal
    from headpose.convert import staging
    from headpose.convert.staging import timed_step as _step
    ran = []
    with pytest.raises(staging.Interrupted) as e:
        with staging.stop_on_signals():
            with _step("onnx2tf", {}):
                try:  # what onnx2tf's bare `except:` does to the KeyboardInterrupt of Ctrl-C
                    os.kill(os.getpid(), signal.SIGTERM)
                except:  # noqa: E722
                    pass
                ran.append("rest of the step")
            ran.append("next step")
    assert e.value.signum == signal.SIGTERM and ran == ["rest of the step"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_a_step_broken_by_the_signal_is_the_stop(tmp_path):
    """A signal landing inside a C extension's import (onnxruntime's, while simplify imports onnxsim)
    can leave it half-registered, so the step fails with an ImportError: that is the stop, exit 128 + N,
    not a conversion error (the clean-clone CI run saw exit 1 for Ctrl-C once)."""
    import os
    import signal
    from headpose.convert import staging
    with pytest.raises(staging.Interrupted) as e:
        with staging.stop_on_signals():
            with staging.timed_step("simplify", {}):
                try:
                    os.kill(os.getpid(), signal.SIGINT)
                except KeyboardInterrupt:  # swallowed by the import machinery ...
                    pass
                raise ImportError('generic_type: type "GraphOptimizationLevel" is already registered!')  # ... then this
    assert e.value.signum == signal.SIGINT and isinstance(e.value.__cause__, ImportError)
    with pytest.raises(ImportError):  # without a pending signal an error stays itself
        with staging.timed_step("simplify", {}):
            raise ImportError("no module")
