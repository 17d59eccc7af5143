"""The Android demo's pure-logic module (``android_demo/core``, Java) against the Python runtime.

``android_golden.py`` runs the Python runtime on real frames (SCRFD ONNX in ONNX Runtime, a seeded
pose network in PyTorch) and writes raw model outputs plus what ``headpose.runtime`` makes of them.
This test compiles the core module and its ``GoldenRunner`` with ``javac`` (no Gradle), runs it on
those files and compares every result: letterbox tensor, SCRFD boxes/keypoints/NMS, crop boxes and
crop tensors, 6D -> Euler angles, axis end points, tracker ids, One-Euro and rotation smoothing,
manifest parsing (and rejection of broken manifests), and the bench-report JSON it writes.

Needs a JDK (``javac``/``java`` 11+; ``install.sh`` installs Debian's ``openjdk-17-jdk-headless``
when run as root) and the real data in ``../shared``; skipped, saying which is missing, otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import IMAGES, ROOT, VIDEO, WEIGHTS, need_shared

CORE = ROOT / "android_demo" / "core"
JAVAC, JAVA = shutil.which("javac"), shutil.which("java")

NO_JDK = ("no JDK on PATH (javac/java): ./install.sh installs Debian's openjdk-17-jdk-headless when run as root, "
          "or `apt-get install openjdk-17-jdk-headless`")


def _sources(sub: str):
    return sorted(str(p) for p in (CORE / "src" / sub / "java").rglob("*.java"))


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    """The core module + GoldenRunner compiled for Java 11 (Android's desugared language level)."""
    if JAVAC is None or JAVA is None:
        pytest.skip(NO_JDK)
    out = tmp_path_factory.mktemp("core_classes")
    cmd = [JAVAC, "--release", "11", "-Xlint:all,-serial", "-Werror", "-encoding", "UTF-8", "-d", str(out),
           *_sources("main"), *_sources("test")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"javac failed:\n{r.stdout}\n{r.stderr}"
    return out


@pytest.fixture(scope="module")
def golden(tmp_path_factory, classes):
    """(golden dir, golden index, Java output dir, Java index)."""
    for p in (WEIGHTS / "scrfd_500m_bnkps.onnx", WEIGHTS / "fsanet_1x1.onnx", VIDEO, IMAGES):
        need_shared(p)
    from android_golden import write_golden
    gdir = tmp_path_factory.mktemp("android_golden")
    index = write_golden(gdir)
    jdir = gdir / "java"
    r = subprocess.run([JAVA, "-cp", str(classes), "dev.headpose.core.GoldenRunner", str(gdir), str(jdir)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"GoldenRunner failed:\n{r.stdout}\n{r.stderr}"
    return gdir, index, jdir, json.loads((jdir / "index.json").read_text(encoding="utf-8"))


def _bin(directory: Path, desc) -> np.ndarray:
    from android_golden import read_bin
    return read_bin(directory, desc)


def test_core_has_no_android_dependency():
    """The core module must build with a plain JDK: no android.*, androidx.* or kotlin imports."""
    for src in _sources("main"):
        text = Path(src).read_text()
        for bad in ("import android.", "import androidx.", "import kotlin.", "import org.tensorflow"):
            assert bad not in text, f"{src} imports {bad[7:]}: the core module must stay plain Java"


def test_manifests_parse_like_python(golden):
    from manifest_schema import schema_errors
    _, index, _, out = golden
    for key in ("det_manifest", "pose_manifest"):
        d = json.loads(index[key])
        assert schema_errors(d) == [], key  # what the Java reader parses meets runtime/manifest.schema.json
        got = out[key]
        for k in ("id", "model", "task", "format", "precision", "file", "file_bytes"):
            assert got[k] == d[k], (key, k)
        for k in ("name", "shape", "dtype", "role", "layout", "color"):
            assert got["input"][k] == d["input"][k], (key, "input", k)
        np.testing.assert_allclose(got["input"]["mean"], d["input"]["mean"], rtol=1e-6)
        np.testing.assert_allclose(got["input"]["std"], d["input"]["std"], rtol=1e-6)
        assert len(got["outputs"]) == len(d["outputs"])
        for g, e in zip(got["outputs"], d["outputs"]):
            assert (g["name"], g["shape"], g["role"], g["stride"]) == (e["name"], e["shape"], e["role"], e["stride"])
            assert g["quantization"] == e["quantization"]
    det = json.loads(index["det_manifest"])
    assert out["det_manifest"]["strides"] == det["decode"]["strides"]
    assert out["det_manifest"]["anchors_per_cell"] == det["decode"]["anchors_per_cell"]
    assert out["det_manifest"]["score_threshold"] == det["decode"]["score_threshold"]
    assert out["det_manifest"]["nms_threshold"] == det["decode"]["nms_threshold"]
    assert out["det_manifest"]["input_hw"] == [640, 640]
    pose = json.loads(index["pose_manifest"])
    assert out["pose_manifest"]["crop_margin"] == pose["decode"]["crop"]["margin"]
    assert out["pose_manifest"]["ortho6d_name"] == pose["outputs"][0]["name"]
    assert out["pose_manifest_ascii"] == out["pose_manifest"]  # \u escapes and raw UTF-8 parse alike


def test_json_round_trip(golden):
    """Java parses the manifest (raw UTF-8 and \\u-escaped, with quotes, backslash, tab, emoji) and
    writes it back; Python reads the same document."""
    _, index, _, out = golden
    original = json.loads(index["pose_manifest"])
    assert json.loads(out["pose_manifest_roundtrip"]) == original
    assert json.loads(out["pose_manifest_ascii_roundtrip"]) == original


def test_broken_manifests_rejected_like_python(golden):
    """Each broken manifest is refused by Python, by Java and by runtime/manifest.schema.json."""
    from manifest_schema import schema_errors
    _, index, _, out = golden
    for case, verdict in zip(index["broken_manifests"], out["broken_manifests"]):
        assert case["python"] != "accepted", case["why"]
        if case["why"] != "truncated JSON":
            assert schema_errors(json.loads(case["text"])), case["why"]
        assert verdict.startswith("ManifestException: "), (case["why"], verdict)
    assert out["wrong_task"].startswith("ManifestException: ") and "face_detection" in out["wrong_task"]


def test_quantisation_matches(golden):
    """int8/uint8 input quantisation and output dequantisation as runtime/interpreter.py."""
    gdir, index, jdir, out = golden
    for e, g in zip(index["quant"], out["quant"]):
        want = _bin(gdir, e["q"]).reshape(-1)
        np.testing.assert_array_equal(_bin(jdir, g["q"]), want, err_msg=e["dtype"])
        assert len(np.unique(want)) > 50, "the quantised input should span many levels"
        np.testing.assert_array_equal(_bin(jdir, g["deq"]), _bin(gdir, e["deq"]).reshape(-1), err_msg=e["dtype"])


def test_letterbox_matches(golden):
    gdir, index, jdir, out = golden
    for e, g in zip(index["frames"], out["frames"]):
        assert g["scale"] == pytest.approx(e["scale"], abs=1e-12), e["id"]
        want, got = _bin(gdir, e["det_input"]), _bin(jdir, g["det_input"])
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=e["id"])


def test_scrfd_decode_matches(golden):
    from headpose.runtime.scrfd import box_iou
    gdir, index, jdir, out = golden
    total = 0
    for e, g in zip(index["frames"], out["frames"]):
        want, got = _bin(gdir, e["dets"]), _bin(jdir, g["dets"])
        assert got.shape == want.shape, f"{e['id']}: Java kept {len(got)} faces, Python {len(want)}"
        total += len(want)
        if len(want):
            assert np.diag(box_iou(got, want)).min() > 0.9999, e["id"]
            np.testing.assert_allclose(got, want, atol=1e-3, rtol=0, err_msg=e["id"])
            np.testing.assert_allclose(_bin(jdir, g["kps"]), _bin(gdir, e["kps"]), atol=1e-3, rtol=0)
    assert total >= 6, f"only {total} faces in the golden frames: the check would measure little"


def test_face_crops_match(golden):
    gdir, index, jdir, out = golden
    n = 0
    for e, g in zip(index["frames"], out["frames"]):
        np.testing.assert_array_equal(_bin(jdir, g["crop_boxes"]), _bin(gdir, e["crop_boxes"]))
        np.testing.assert_array_equal(_bin(jdir, g["crop_kept"]), _bin(gdir, e["crop_kept"]))
        want, got = _bin(gdir, e["crops"]), _bin(jdir, g["crops"])
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0, err_msg=e["id"])
        n += len(want)
    assert n >= 6


def test_euler_and_axes_match(golden):
    gdir, index, jdir, out = golden
    spread, norms = [], []
    for e, g in zip(index["frames"], out["frames"]):
        # raw network 6-vectors (seeded backbone): Gram-Schmidt + Euler
        want, got = _bin(gdir, e["euler"]), _bin(jdir, g["euler"])
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0, err_msg=e["id"])
        norms.append(np.linalg.norm(_bin(gdir, e["pose6d"]).reshape(-1, 2, 3), axis=2))
        # real angles (FSA-Net): 6D -> Euler, Euler -> R -> Euler, axes
        want = _bin(gdir, e["fsa_euler"])
        np.testing.assert_allclose(_bin(jdir, g["fsa_euler"]), want, atol=1e-6, rtol=0, err_msg=e["id"])
        ypr = _bin(gdir, e["fsa_ypr"])
        np.testing.assert_allclose(_bin(jdir, g["fsa_euler_via_matrix"]), ypr[:, [1, 0, 2]], atol=1e-6, rtol=0)
        assert np.abs(_bin(jdir, g["axes"]) - _bin(gdir, e["axes"])).max(initial=0) <= 1, e["id"]
        spread.append(want)
    assert np.abs(np.concatenate(norms) - 1).max() > 0.01, "raw 6-vectors are unit length: Gram-Schmidt untested"
    assert np.concatenate(spread).std(axis=0).min() > 1.0, "real pose angles barely vary across the faces"


def test_tracking_and_smoothing_match(golden):
    gdir, index, jdir, out = golden
    ids_seen = set()
    for e, g in zip(index["sequence"], out["sequence"]):
        ids = _bin(gdir, e["track_ids"])
        np.testing.assert_array_equal(_bin(jdir, g["track_ids"]), ids)
        ids_seen.update(ids.tolist())
        np.testing.assert_allclose(_bin(jdir, g["rotations"]), _bin(gdir, e["rotations"]), atol=1e-12, rtol=0)
        np.testing.assert_allclose(_bin(jdir, g["smoothed"]), _bin(gdir, e["smoothed"]), atol=1e-9, rtol=0)
    assert len(ids_seen) >= 2, "the sequence should hold several tracked faces"
    want = _bin(gdir, index["euro"]["y"])
    assert len(want) >= 10
    np.testing.assert_allclose(_bin(jdir, out["euro"]), want, atol=1e-9, rtol=0)
    raw = _bin(gdir, index["euro"]["x"])
    assert np.abs(want - raw).max() > 0.01, "the filter changed nothing: the check would measure nothing"


def test_bench_report_follows_schema(golden):
    """The report the app writes (built by the core module) validates against benchmarks/schema.py and
    its statistics agree with benchmarks.stats.summarize on the same samples."""
    schema = pytest.importorskip("headpose.benchmarks.schema", reason="benchmarks/schema.py not installed")
    stats = pytest.importorskip("headpose.benchmarks.stats", reason="benchmarks/stats.py not installed")
    _, _, jdir, _ = golden
    report = json.loads((jdir / "bench_report.json").read_text())
    assert schema.validate(report) == []
    pipe = report["pipelines"][0]
    want = stats.summarize(pipe["samples_ms"])
    for k, v in want.items():
        assert pipe["end_to_end"][k] == pytest.approx(v, abs=2e-3), k
    assert pipe["frames"] == len(pipe["samples_ms"])


# -- real converted artifacts -------------------------------------------------------------------
@pytest.fixture(scope="module")
def artifact_golden(request, tmp_path_factory, classes):
    """Golden vectors from the converter's real TFLite artifacts (the session's ``artifact`` fixture of
    tests/conftest.py, shared with the runtime tests) and the Java runner's results on them."""
    for p in (WEIGHTS / "scrfd_500m_bnkps.onnx", VIDEO, IMAGES):
        need_shared(p)
    from android_golden import write_artifact_golden
    try:
        artifact = request.getfixturevalue("artifact")
    except pytest.FixtureLookupError:
        pytest.skip("tests/conftest.py has no `artifact` fixture (the converter's test artifacts)")
    det_dir, pose_dir = artifact("scrfd_500m", "fp32"), artifact("mobilenetv3_small", "fp32")
    gdir = tmp_path_factory.mktemp("android_artifact_golden")
    index = write_artifact_golden(gdir, det_dir, pose_dir)
    jdir = gdir / "java"
    r = subprocess.run([JAVA, "-cp", str(classes), "dev.headpose.core.GoldenRunner", str(gdir), str(jdir)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"GoldenRunner failed:\n{r.stdout}\n{r.stderr}"
    return gdir, index, jdir, json.loads((jdir / "index.json").read_text(encoding="utf-8")), det_dir, pose_dir


def test_real_artifact_manifests_parse(artifact_golden):
    """The app reads the converter's own manifest.json files: same fields as the Python loader."""
    from headpose.runtime.manifest import load_manifest
    _, _, _, out, det_dir, pose_dir = artifact_golden
    for key, d in (("det_manifest", det_dir), ("pose_manifest", pose_dir)):
        m = load_manifest(d)
        got = out[key]
        assert (got["id"], got["model"], got["task"], got["format"], got["precision"], got["file"]) == \
               (m.id, m.model, m.task, m.format, m.precision, m.file)
        assert got["input"]["name"] == m.input.name and got["input"]["shape"] == m.input.shape
        assert (got["input"]["layout"], got["input"]["color"]) == (m.input.layout, m.input.color)
        assert [(o["name"], o["role"], o["stride"]) for o in got["outputs"]] == \
               [(o.name, o.role, o.stride) for o in m.outputs]
    assert out["ortho6d_name"] == load_manifest(pose_dir).output("ortho6d").name


def test_real_artifact_pipeline_matches(artifact_golden):
    """Letterbox, SCRFD decode from LiteRT outputs (found by name), crops and Euler angles agree with
    the Python device runtime on the real artifacts."""
    from headpose.runtime.scrfd import box_iou
    gdir, index, jdir, out, _, _ = artifact_golden
    faces = 0
    for e, g in zip(index["frames"], out["frames"]):
        assert g["scale"] == pytest.approx(e["scale"], abs=1e-12)
        np.testing.assert_allclose(_bin(jdir, g["det_input"]), _bin(gdir, e["det_input"]), atol=1e-5, rtol=0)
        want, got = _bin(gdir, e["dets"]), _bin(jdir, g["dets"])
        assert got.shape == want.shape, f"{e['id']}: Java kept {len(got)} faces, Python {len(want)}"
        if len(want):
            assert np.diag(box_iou(got, want)).min() > 0.9999
            np.testing.assert_allclose(got, want, atol=1e-3, rtol=0)
            np.testing.assert_allclose(_bin(jdir, g["kps"]), _bin(gdir, e["kps"]), atol=1e-3, rtol=0)
        np.testing.assert_allclose(_bin(jdir, g["crops"]), _bin(gdir, e["crops"]), atol=1e-5, rtol=0)
        np.testing.assert_allclose(_bin(jdir, g["euler"]), _bin(gdir, e["euler"]), atol=1e-6, rtol=0)
        faces += len(want)
    assert faces >= 3, f"only {faces} faces found by the TFLite detector in the golden frames"


def test_engine_replays_the_python_estimator(artifact_golden):
    """The core HeadPoseEngine (what the app runs per camera frame) against the Python
    HeadPoseEstimator on 12 consecutive video frames (detect every 2nd frame, tracking, One-Euro):
    the interpreter calls are replayed from the Python run, so the inputs the engine builds, the
    number of calls, track ids, boxes and the smoothed angles must all agree."""
    gdir, index, _, out, _, _ = artifact_golden
    want, got = index["stream"], out["stream"]
    assert got["detector_calls"] == len(want["detector_calls"])
    assert got["pose_calls"] == len(want["pose_calls"])
    assert got["input_length_mismatches"] == 0
    assert got["detector_input_max_diff"] <= 1e-5 and got["pose_input_max_diff"] <= 1e-5
    n_faces, ids = 0, set()
    for e, g in zip(want["frames"], got["frames"]):
        assert [f["track_id"] for f in g["faces"]] == [f["track_id"] for f in e["faces"]]
        for fe, fg in zip(e["faces"], g["faces"]):
            np.testing.assert_allclose(fg["box"], fe["box"], atol=1e-3, rtol=0)
            np.testing.assert_allclose(fg["keypoints"], fe["keypoints"], atol=1e-3, rtol=0)
            assert fg["score"] == pytest.approx(fe["score"], abs=1e-6)
            for k in ("yaw", "pitch", "roll"):
                assert fg[k] == pytest.approx(fe[k], abs=1e-6), k
            np.testing.assert_allclose(fg["rotation"], fe["rotation"], atol=1e-9, rtol=0)
            n_faces += 1
            ids.add(fe["track_id"])
    assert n_faces >= 10 and len(ids) >= 2, f"{n_faces} faces, ids {ids}: the stream would check little"
