"""Nothing lost, nothing corrupt, nothing left behind (issue 18): signals, bad output paths, a full
disk, damaged artifacts and manifests, odd frames, the Pi camera and the service unit.

Signals are sent to a real ``headpose run`` child process.
"""

from __future__ import annotations

import configparser
import csv
import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from headpose.cli import main
from headpose.runtime import cli as run_cli
from headpose.runtime.errors import HeadposeError, InputError, ManifestError
from headpose.runtime.estimator import EstimatorOptions, HeadPoseEstimator
from headpose.runtime.manifest import MANIFEST_NAME, artifact_id, load_manifest, verify_model_file
from headpose.runtime.pose import PoseEstimator
from headpose.runtime.registry import DEFAULT_DETECTOR, DEFAULT_POSE
from headpose.runtime.sinks import JsonlSink, SinkError
from tests.conftest import IMAGES, ROOT, VIDEO, need_shared

STANDIN = Path(__file__).resolve().parent / "standin"
UNIT = ROOT / "runtime" / "systemd" / "headpose.service"


@pytest.fixture(scope="module")
def face_image():
    return need_shared(IMAGES / "single_face.jpg")


def _default_signals() -> None:
    # the child starts with default handlers even when this test run inherited ignored ones (under
    # `nohup` SIGHUP is ignored, in a shell's background job SIGINT): `headpose run` deliberately keeps
    # an inherited ignore, and these tests are about the signals it does receive
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def _child(det_dir, pose_dir, *args, env=None, **kw):
    """``headpose run`` in a child process, its stdout/stderr piped, default signal handlers."""
    kw.setdefault("preexec_fn", _default_signals)
    return subprocess.Popen([sys.executable, "-m", "headpose.cli", "run", "--detector", str(det_dir),
                             "--pose", str(pose_dir), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env, **kw)


def _wait_lines(p, path: Path, n: int, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and p.poll() is None:
        if path.exists() and path.read_text().count("\n") >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"no {n} lines in {path}: {p.communicate()}")


def _video_frames(path: Path) -> int:
    cv2 = pytest.importorskip("cv2")
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def _hidden(folder: Path):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---- 1. SIGTERM / SIGHUP end like Ctrl-C -------------------------------------------------------
@pytest.mark.parametrize("mode", [(), ("--pipelined",)], ids=["sequential", "pipelined"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_signals_publish_complete_outputs(det_dir, pose_dir, tmp_path, sig, mode):
    pytest.importorskip("cv2", reason="video source and output")
    need_shared(VIDEO)
    out = {k: tmp_path / f"o.{k}" for k in ("jsonl", "csv", "mp4")}
    p = _child(det_dir, pose_dir, "--source", VIDEO, *mode, "--jsonl", out["jsonl"], "--csv", out["csv"],
               "--output", out["mp4"])
    _wait_lines(p, tmp_path / ".o.jsonl.partial.jsonl", 3)
    p.send_signal(sig)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, stderr[-2000:]
    assert "(interrupted)" in stdout and "Traceback" not in stderr
    if mode:
        assert "(pipelined)" in stdout
    recs = [json.loads(x) for x in out["jsonl"].read_text().splitlines()]
    assert len(recs) >= 3 and [r["frame"] for r in recs] == list(range(len(recs)))
    rows = list(csv.reader(out["csv"].open()))
    assert len(rows) == 1 + sum(len(r["faces"]) for r in recs)
    assert _video_frames(out["mp4"]) == len(recs)
    assert _hidden(tmp_path) == []


# ---- 2. a run that produced nothing publishes nothing ------------------------------------------
def test_failed_run_keeps_the_previous_outputs(det_dir, pose_dir, tmp_path, capsys):
    pytest.importorskip("cv2", reason="image source")
    (tmp_path / "zero.jpg").write_bytes(b"")
    old = {k: tmp_path / f"out.{k}" for k in ("jsonl", "csv")}
    for p in old.values():
        p.write_text("previous run\n")
    rc = main(["run", "--detector", str(det_dir), "--pose", str(pose_dir), "--source", str(tmp_path / "zero.jpg"),
               "--jsonl", str(old["jsonl"]), "--csv", str(old["csv"])])
    assert rc == 2 and "could not be read" in capsys.readouterr().err
    assert all(p.read_text() == "previous run\n" for p in old.values())
    assert _hidden(tmp_path) == []


def test_a_failed_write_never_replaces_a_file(tmp_path):
    out = tmp_path / "r.jsonl"
    out.write_text("previous\n")
    s = JsonlSink(out)
    s.write(0, 1.0, [], None)
    os.unlink(out)
    out.mkdir()  # the target became a folder while the run went on: the rename fails
    with pytest.raises(SinkError, match="cannot write"):
        s.close()
    assert _hidden(tmp_path) == []


# ---- 3. a folder as output: refused before the first frame --------------------------------------
@pytest.mark.parametrize("flag,name", [("--output", "x.mp4"), ("--jsonl", "x.jsonl"), ("--csv", "x.csv")])
def test_a_folder_as_output_is_refused(det_dir, pose_dir, face_image, tmp_path, capsys, flag, name):
    pytest.importorskip("cv2", reason="image source")
    (tmp_path / name).mkdir()
    rc = main(["run", "--detector", str(det_dir), "--pose", str(pose_dir), "--source", str(face_image),
               flag, str(tmp_path / name)])
    err = capsys.readouterr()
    assert rc == 2 and "is a folder" in err.err
    assert "headpose run:" not in err.out  # refused before any frame
    assert _hidden(tmp_path) == [] and (tmp_path / name).is_dir()


# ---- 4. a full disk ----------------------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a 256 KiB tmpfs needs root (mount -t tmpfs -o size=256k tmpfs DIR)")
    d = tmp_path / "tiny"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    yield d
    subprocess.run(["umount", str(d)], check=True)


@pytest.mark.parametrize("outputs", [("jsonl", "csv", "mp4"), ("mp4",)], ids=["all", "video-only"])
def test_a_full_disk_is_one_clear_error_and_publishes_no_broken_file(det_dir, pose_dir, tiny_disk, outputs):
    pytest.importorskip("cv2", reason="video source and output")
    need_shared(VIDEO)
    flags = {"jsonl": "--jsonl", "csv": "--csv", "mp4": "--output"}
    args = [a for k in outputs for a in (flags[k], tiny_disk / f"o.{k}")]
    p = _child(det_dir, pose_dir, "--source", VIDEO, "--max-frames", "25", *args)
    _, stderr = p.communicate(timeout=300)
    assert p.returncode == 2, stderr[-2000:]
    assert "Traceback" not in stderr and "disk is full" in stderr, stderr[-2000:]
    assert _hidden(tiny_disk) == []
    for k in outputs:  # whatever was published is complete
        f = tiny_disk / f"o.{k}"
        if f.exists() and k == "mp4":
            assert _video_frames(f) > 0
        elif f.exists() and k == "jsonl":
            [json.loads(x) for x in f.read_text().splitlines()]
    assert not (tiny_disk / "o.mp4").exists()  # 25 frames of 1280x720 never fit in 256 KiB


# ---- 5. a read-only output folder --------------------------------------------------------------
@pytest.fixture
def read_only_dir(tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() == 0:  # root writes through permissions; a read-only mount stops it too
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)], capture_output=True)
        if r.returncode != 0:
            pytest.skip("as root a read-only folder needs a read-only mount, which failed here")
        yield d
        subprocess.run(["umount", str(d)], check=True)
    else:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)


@pytest.mark.parametrize("flag,name", [("--output", "o.mp4"), ("--jsonl", "o.jsonl"), ("--csv", "o.csv")])
def test_a_read_only_folder_is_refused_up_front(det_dir, pose_dir, face_image, read_only_dir, capsys, flag, name):
    pytest.importorskip("cv2", reason="image source")
    rc = main(["run", "--detector", str(det_dir), "--pose", str(pose_dir), "--source", str(face_image),
               flag, str(read_only_dir / name)])
    err = capsys.readouterr().err
    assert rc == 2 and "is not writable" in err and "encoder" not in err


# ---- 6. overlapping outputs, the source, symlinks, special files ---------------------------------
def test_outputs_that_overlap_each_other_or_the_source_are_refused(det_dir, pose_dir, face_image, tmp_path, capsys):
    src = tmp_path / "in.jpg"
    shutil.copyfile(face_image, src)
    before = src.read_bytes()
    base = ["run", "--detector", str(det_dir), "--pose", str(pose_dir), "--source", str(src)]
    assert main(base + ["--output", str(src)]) == 2
    assert "--output" in capsys.readouterr().err and src.read_bytes() == before
    assert main(base + ["--jsonl", str(tmp_path / "o.txt"), "--csv", str(tmp_path / "o.txt")]) == 2
    assert "same file as --jsonl" in capsys.readouterr().err
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "o.csv")  # the same file by another name
    assert main(base + ["--jsonl", str(tmp_path / "link.jsonl"), "--csv", str(tmp_path / "o.csv")]) == 2
    assert not (tmp_path / "o.txt").exists() and not (tmp_path / "o.csv").exists()


def test_jsonl_through_a_symlink_keeps_the_link(det_dir, pose_dir, face_image, tmp_path):
    pytest.importorskip("cv2", reason="image source")
    real = tmp_path / "data" / "poses.jsonl"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / "poses.jsonl"
    link.symlink_to(real)
    assert main(["run", "--detector", str(det_dir), "--pose", str(pose_dir), "--source", str(face_image),
                 "--jsonl", str(link)]) == 0
    assert link.is_symlink() and link.resolve() == real
    assert json.loads(real.read_text())["faces"]
    assert _hidden(tmp_path) == [] and _hidden(real.parent) == []


@pytest.mark.parametrize("target", ["-", "/dev/stdout"])
def test_jsonl_to_stdout(det_dir, pose_dir, face_image, target):
    pytest.importorskip("cv2", reason="image source")
    if target != "-" and stat.S_ISREG(os.lstat(target).st_mode):
        pytest.fail("/dev/stdout is a regular file on this machine (replaced by an older headpose run as "
                    "root): restore it with `ln -sf /proc/self/fd/1 /dev/stdout`")
    p = _child(det_dir, pose_dir, "--source", face_image, "--jsonl", target)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-2000:]
    recs = [json.loads(x) for x in out.splitlines()]  # every stdout line is a record
    assert len(recs) == 1 and recs[0]["faces"]
    assert "headpose run: 1 frames" in err  # the summary goes to stderr
    assert target == "-" or not stat.S_ISREG(os.lstat(target).st_mode), "the device node was replaced by a file"


# ---- 7. a damaged model file never reaches the interpreter --------------------------------------
def _damaged(pose_dir: Path, tmp_path: Path, how: str) -> Path:
    d = tmp_path / how
    shutil.copytree(pose_dir, d)
    f = d / "model.tflite"
    data = bytearray(f.read_bytes())
    if how == "cut":
        data = data[:100]
    elif how == "flipped":
        mid = len(data) // 2
        data[mid:mid + 4096] = bytes(b ^ 0xFF for b in data[mid:mid + 4096])
    f.write_bytes(bytes(data))
    return d


@pytest.mark.parametrize("how,match", [("cut", "has 100 bytes"), ("flipped", "sha256")])
def test_a_damaged_model_file_is_refused(pose_dir, tmp_path, how, match):
    d = _damaged(pose_dir, tmp_path, how)
    with pytest.raises(ManifestError, match=match) as e:
        PoseEstimator(d)
    assert "--force" in str(e.value)  # and says how to fix it


def test_a_damaged_model_file_exits_2_without_a_crash(det_dir, pose_dir, face_image, tmp_path):
    p = _child(det_dir, _damaged(pose_dir, tmp_path, "cut"), "--source", face_image)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "has 100 bytes, the manifest records" in err, err[-2000:]


def test_model_check_costs_milliseconds(det_dir):
    m = load_manifest(det_dir)
    t0 = time.perf_counter()
    verify_model_file(m)
    ms = (time.perf_counter() - t0) * 1e3
    print(f"verify_model_file {m.id}: {m.file_bytes / 1e6:.1f} MB in {ms:.1f} ms")
    assert ms < 500


# ---- 8. every manifest field is checked when it is read -------------------------------------------
@pytest.mark.parametrize("path,value,field", [
    (("input", "mean"), "abc", "input.mean"),
    (("input", "std"), [128.0, 0.0, 128.0], "input.std"),
    (("input", "shape"), [1, -640, 640, 3], "input.shape"),
    (("input", "quantization"), {"scale": "a", "zero_point": 0}, "input.quantization"),
    (("input", "dtype"), "float99", "input.dtype"),
    (("outputs", 0, "stride"), 0, "outputs[0].stride"),
    (("outputs", 0, "name"), 7, "outputs[0].name"),
    (("file",), "../../model.tflite", "file"),
    (("file_bytes",), "2539672", "file_bytes"),
    (("file_sha256",), "abc", "file_sha256"),
    (("decode", "score_threshold"), 5, "decode.score_threshold"),
    (("decode", "strides"), [8, "16", 32], "decode.strides"),
    (("parity",), [], "parity"),
])
def test_a_bad_manifest_value_names_the_field(det_dir, tmp_path, path, value, field):
    d = json.loads((det_dir / MANIFEST_NAME).read_text())
    node = d
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    (tmp_path / "model.tflite").write_bytes(b"")
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(d))
    with pytest.raises(ManifestError, match=f"field '{field.replace('[', '.').replace(']', '.')}'"):
        load_manifest(tmp_path)


# ---- 12. the Python API: frame dtypes, closed estimator, options ----------------------------------
@pytest.fixture(scope="module")
def hpe(det_dir, pose_dir):
    with HeadPoseEstimator.from_artifacts(det_dir, pose_dir, EstimatorOptions(smooth=False)) as h:
        yield h


def test_float_and_uint16_frames(hpe, face_image):
    cv2 = pytest.importorskip("cv2")
    img = cv2.imread(str(face_image))
    ref = hpe.estimate(img)
    assert ref
    for frame in (img.astype(np.float32) / 255.0, img.astype(np.float32)):  # 0..1 and 0..255 floats
        hpe.reset()
        got = hpe.estimate(frame)
        assert len(got) == len(ref) and abs(got[0].yaw - ref[0].yaw) < 0.5
    with pytest.raises(InputError, match="expected a uint8 frame.*uint16.*>> 8"):
        hpe.estimate(img.astype(np.uint16) * 257)


def test_closed_estimator_and_bad_options(det_dir, pose_dir, face_image):
    cv2 = pytest.importorskip("cv2")
    img = cv2.imread(str(face_image))
    h = HeadPoseEstimator.from_artifacts(det_dir, pose_dir)
    faces = h.estimate(img)
    h.close()
    with pytest.raises(HeadposeError, match="was closed"):
        h.annotate(img, faces)
    with pytest.raises(InputError, match="options must be an EstimatorOptions.*found str"):
        HeadPoseEstimator.from_artifacts(det_dir, pose_dir, "threads=4")


# ---- 14. the Pi camera against a stand-in picamera2 ----------------------------------------------
def _picamera(det_dir, pose_dir, tmp_path, config: dict, *args):
    log = tmp_path / "camera.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(STANDIN), os.environ.get("PYTHONPATH", "")]),
               PICAMERA2_STANDIN=json.dumps({"log": str(log), **config}))
    return _child(det_dir, pose_dir, "--source", "picamera", "--jsonl", tmp_path / "cam.jsonl", *args, env=env), log


def _events(log: Path):
    ev = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    opened = [e["cam"] for e in ev if e["event"] == "open"]
    closed = [e["cam"] for e in ev if e["event"] == "close"]
    return opened, closed


def test_picamera_frames_flow_and_a_glitch_is_retried(det_dir, pose_dir, face_image, tmp_path):
    pytest.importorskip("cv2", reason="the stand-in reads its image with OpenCV")
    p, log = _picamera(det_dir, pose_dir, tmp_path, {"image": str(face_image), "fail_at": [2]}, "--max-frames", "5")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err[-2000:]
    recs = [json.loads(x) for x in (tmp_path / "cam.jsonl").read_text().splitlines()]
    assert len(recs) == 5 and all(len(r["faces"]) == 1 for r in recs)  # BGR frames: the face is found
    assert "retry 1/" in err
    opened, closed = _events(log)
    assert len(opened) == 2 and sorted(opened) == sorted(closed)  # re-opened once, every camera closed


def test_picamera_unplugged_ends_with_exit_2(det_dir, pose_dir, face_image, tmp_path):
    pytest.importorskip("cv2", reason="the stand-in reads its image with OpenCV")
    p, log = _picamera(det_dir, pose_dir, tmp_path, {"image": str(face_image), "unplug_after": 3}, "--retries", "2")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "picamera stopped delivering frames: 2 retries failed" in err, err[-2000:]
    assert len((tmp_path / "cam.jsonl").read_text().splitlines()) == 3  # the frames before it are kept
    opened, closed = _events(log)
    assert opened and sorted(opened) == sorted(closed)


def test_picamera_busy_and_sigterm(det_dir, pose_dir, face_image, tmp_path):
    pytest.importorskip("cv2", reason="the stand-in reads its image with OpenCV")
    p, log = _picamera(det_dir, pose_dir, tmp_path, {"busy": True})
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "camera could not be started" in err and "busy" in err
    p, log = _picamera(det_dir, pose_dir, tmp_path, {"image": str(face_image)})
    _wait_lines(p, tmp_path / ".cam.jsonl.partial.jsonl", 2)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err[-2000:]
    assert len((tmp_path / "cam.jsonl").read_text().splitlines()) >= 2
    opened, closed = _events(log)
    assert len(opened) == 1 and opened == closed


# ---- 13. the systemd unit ------------------------------------------------------------------------
def _unit() -> configparser.ConfigParser:
    c = configparser.ConfigParser(strict=False, interpolation=None)
    c.optionxform = str
    c.read(UNIT)
    return c


def test_systemd_unit_is_valid_and_stops_cleanly():
    c = _unit()
    svc = c["Service"]
    assert svc["Restart"] == "on-failure" and "143" in svc["SuccessExitStatus"].split()
    assert svc["KillSignal"] == "SIGTERM" and svc["StandardOutput"] == svc["StandardError"] == "journal"
    cmd = shlex.split(svc["ExecStart"])
    assert cmd[:2] == ["/bin/sh", "-c"] and cmd[2].startswith("exec ")  # headpose is the main process
    inner = shlex.split(cmd[2])
    assert inner[0] == "exec" and inner[2:5] == ["run", "--source", "picamera"] and "--jsonl" in inner
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit's keys were checked, not systemd's verdict")
    r = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True)
    assert r.returncode == 0 and "headpose.service" not in r.stderr, r.stderr


def test_systemd_unit_command_runs_and_stops_with_sigterm(det_dir, pose_dir, face_image, tmp_path):
    """The unit's ExecStart, with this checkout's headpose and the stand-in camera, stopped as systemd would."""
    pytest.importorskip("cv2", reason="the stand-in reads its image with OpenCV")
    script = shlex.split(_unit()["Service"]["ExecStart"])[2]
    script = script.replace("/home/pi/headpose-edge/.venv/bin/headpose",
                            f"{shlex.quote(sys.executable)} -m headpose.cli")
    script = script.replace(" run ", f" run --detector {det_dir} --pose {pose_dir} ", 1)
    env = dict(os.environ, STATE_DIRECTORY=str(tmp_path),
               PYTHONPATH=os.pathsep.join([str(STANDIN), os.environ.get("PYTHONPATH", "")]),
               PICAMERA2_STANDIN=json.dumps({"image": str(face_image)}))
    p = subprocess.Popen(["/bin/sh", "-c", script], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(f.stat().st_size for f in tmp_path.glob(".poses-*")):
        assert p.poll() is None, p.communicate()
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)  # reaches headpose itself: sh exec'd it
    _, err = p.communicate(timeout=60)
    assert str(p.returncode) in _unit()["Service"]["SuccessExitStatus"].split(), err[-2000:]
    published = list(tmp_path.glob("poses-*.jsonl"))
    assert len(published) == 1 and json.loads(published[0].read_text().splitlines()[0])["faces"]
    assert _hidden(tmp_path) == []


# ---- 15. the default-artifact search does not depend on the checkout's exports --------------------
def test_weights_dir_alone_is_searched_when_set(det_dir, pose_dir, tmp_path, monkeypatch):
    checkout = tmp_path / "checkout"
    exports = checkout / "weights" / "exports"
    exports.mkdir(parents=True)
    os.symlink(det_dir, exports / artifact_id(*DEFAULT_DETECTOR))  # a checkout that has been used
    os.symlink(pose_dir, exports / artifact_id(*DEFAULT_POSE))
    monkeypatch.setattr(run_cli, "PROJECT_ROOT", checkout)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HEADPOSE_WEIGHTS_DIR", raising=False)
    assert run_cli.default_artifacts()[0] == exports / artifact_id(*DEFAULT_DETECTOR)
    monkeypatch.setenv("HEADPOSE_WEIGHTS_DIR", str(tmp_path / "fresh"))
    with pytest.raises(ManifestError) as e:
        run_cli.default_artifacts()
    assert str(tmp_path / "fresh" / "exports") in str(e.value) and str(exports) not in str(e.value)
