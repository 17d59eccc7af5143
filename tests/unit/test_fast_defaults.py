"""`headpose run` without --detector/--pose takes the fastest artifact on this install that passed its gates
(runtime.resolve.fast_default), else the fresh-machine defaults; and the input.normalisation field."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from headpose.runtime import cli as run_cli
from headpose.runtime.errors import ManifestError
from headpose.runtime.manifest import Manifest, TensorSpec, artifact_id, sha256_file
from headpose.runtime.registry import DEFAULT_DETECTOR, DEFAULT_POSE, FAST_DETECTORS, FAST_POSES, get_spec
from headpose.runtime import resolve
from headpose.runtime.resolve import fast_default, gates_passed


def _write(folder: Path, model: str, precision: str, *, passed=True, gate=True, source_sha="0" * 64) -> Path:
    spec = get_spec(model)
    size = spec.input_size
    if spec.task == "head_pose":
        inp = TensorSpec(name="input", shape=[1, size, size, 3], role="image", layout="NHWC", color=spec.color,
                         mean=list(spec.mean), std=list(spec.std))
        outs = [TensorSpec(name="Identity", shape=[1, 6], role="ortho6d")]
        decode = copy.deepcopy(spec.decode)
    else:
        inp = TensorSpec(name="input.1", shape=[1, size, size, 3], role="image", layout="NHWC", color=spec.color,
                         mean=list(spec.mean), std=list(spec.std))
        outs = [TensorSpec(name=f"{r}_{s}", shape=[1, 100, w], role=r, stride=s)
                for s in spec.decode["strides"] for r, w in (("score", 1), ("bbox", 4), ("kps", 10))]
        decode = dict(spec.decode, input_size=[size, size])
    quant = {"mode": "full_integer" if precision == "int8" else "none"}
    if precision == "int8" and gate and spec.task == "head_pose":
        quant["int8_gate"] = {"passed": True, "chosen": "none"}
    m = Manifest(id=artifact_id(model, size, "tflite", precision), model=model, task=spec.task, format="tflite",
                 precision=precision, file="model.tflite", file_sha256="0" * 64, file_bytes=1, input=inp,
                 outputs=outs, decode=decode, quantization=quant, source={"sha256": source_sha},
                 parity={"passed": passed})
    d = folder / m.id
    d.mkdir(parents=True)
    (d / "model.tflite").write_bytes(b"x")
    (d / "manifest.json").write_text(json.dumps(m.to_dict()))
    return d


@pytest.fixture
def root(tmp_path):
    """A checkout with a 'shipped student' checkpoint (its bytes are what the pose gate checks)."""
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "mobilenetv3_small_fsanet.pt").write_bytes(b"student")
    return tmp_path


def test_first_gate_passing_candidate_in_order(root, tmp_path):
    student = sha256_file(root / "weights" / "mobilenetv3_small_fsanet.pt")
    exports = tmp_path / "exports"
    assert FAST_DETECTORS[0] == ("scrfd_500m", 640, "tflite", "int8")
    assert fast_default("face_detection", [exports], root=root, measure=False) is None
    _write(exports, "scrfd_500m", "fp32")
    assert fast_default("face_detection", [exports], root=root, measure=False).name == "scrfd_500m-640-tflite-fp32"
    _write(exports, "scrfd_500m", "int8")
    assert fast_default("face_detection", [exports], root=root, measure=False).name == "scrfd_500m-640-tflite-int8"
    # pose: only artifacts of the shipped student, and int8 only with its accuracy gate passed
    pose8 = FAST_POSES[0]
    _write(exports, pose8[0], "int8", source_sha="1" * 64)  # seeded / foreign weights
    assert fast_default("head_pose", [exports], root=root, measure=False) is None
    cache = tmp_path / "cache"
    _write(cache, pose8[0], "int8", source_sha=student, gate=False)  # converted with max_int8_error=None
    assert fast_default("head_pose", [exports, cache], root=root, measure=False) is None
    good = tmp_path / "good"
    _write(good, pose8[0], "int8", source_sha=student)
    assert fast_default("head_pose", [exports, cache, good], root=root, measure=False).parent == good
    # the shipped student's quantisation-aware fine-tune (weights/<model>_fsanet_qat.pt) is the project's too
    (root / "weights" / "mobilenetv3_small_fsanet_qat.pt").write_bytes(b"qat student")
    qat = tmp_path / "qat"
    _write(qat, pose8[0], "int8", source_sha=sha256_file(root / "weights" / "mobilenetv3_small_fsanet_qat.pt"))
    assert fast_default("head_pose", [exports, cache, qat], root=root, measure=False).parent == qat


def test_failed_parity_never_becomes_a_default(root, tmp_path):
    d = _write(tmp_path, "scrfd_500m", "int8", passed=False)
    from headpose.runtime.manifest import load_manifest
    ok, why = gates_passed(load_manifest(d), root)
    assert not ok and "parity" in why
    assert fast_default("face_detection", [tmp_path], root=root, measure=False) is None


@pytest.fixture
def timed(monkeypatch):
    """Candidate timings by artifact name (ms) instead of running the stand-in files; records each timing."""
    speeds, calls = {}, []

    def fake(path, threads, runs=5):
        calls.append((Path(path).name, threads))
        return speeds[Path(path).name]
    monkeypatch.setattr(resolve, "_model_ms", fake)
    return speeds, calls


def test_fastest_is_measured_and_remembered(root, tmp_path, timed):
    speeds, calls = timed
    exports = tmp_path / "exports"
    for p in ("int8", "fp32"):
        _write(exports, "scrfd_500m", p)
    cache = tmp_path / "cache" / "fast_defaults.json"
    speeds.update({"scrfd_500m-640-tflite-int8": 9.0, "scrfd_500m-640-tflite-fp32": 5.0})  # int8 slower here
    got = fast_default("face_detection", [exports], root=root, threads=2, cache=cache)
    assert got.name == "scrfd_500m-640-tflite-fp32" and sorted(calls) == sorted(
        [("scrfd_500m-640-tflite-int8", 2), ("scrfd_500m-640-tflite-fp32", 2)])
    calls.clear()
    assert fast_default("face_detection", [exports], root=root, threads=2, cache=cache) == got and calls == []
    speeds["scrfd_500m-640-tflite-int8"] = 1.0  # another thread count is another ranking
    assert fast_default("face_detection", [exports], root=root, threads=1, cache=cache).name.endswith("int8")
    assert len(calls) == 2


def test_default_artifacts_prefers_fast_then_fresh_defaults(root, tmp_path, monkeypatch, timed):
    weights = tmp_path / "w"
    monkeypatch.setenv("HEADPOSE_WEIGHTS_DIR", str(weights))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_cli, "PROJECT_ROOT", root)
    student = sha256_file(root / "weights" / "mobilenetv3_small_fsanet.pt")
    exports = weights / "exports"
    _write(exports, *DEFAULT_DETECTOR[:1], DEFAULT_DETECTOR[3])
    _write(exports, *DEFAULT_POSE[:1], DEFAULT_POSE[3], source_sha=student)
    d, p = run_cli.default_artifacts()
    assert (d.name, p.name) == (artifact_id(*DEFAULT_DETECTOR), artifact_id(*DEFAULT_POSE))
    # bench's cache of this weights folder holds a faster gate-passing pair: taken
    cache = weights / "cache" / "bench" / "mobilenetv3_small-abc"
    _write(cache, "mobilenetv3_small", "int8", source_sha=student)
    _write(weights / "cache" / "bench" / "scrfd_500m-def", "scrfd_500m", "int8")
    timed[0].update({"scrfd_500m-640-tflite-int8": 3.0, "mobilenetv3_small-224-tflite-int8": 1.0,
                     "mobilenetv3_small-224-tflite-fp32": 2.0})
    d, p = run_cli.default_artifacts()
    assert (d.name, p.name) == ("scrfd_500m-640-tflite-int8", "mobilenetv3_small-224-tflite-int8")


def test_missing_defaults_still_say_how_to_build(root, tmp_path, monkeypatch):
    monkeypatch.setenv("HEADPOSE_WEIGHTS_DIR", str(tmp_path / "w"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_cli, "PROJECT_ROOT", root)
    _write(tmp_path / "w" / "exports", "scrfd_500m", "int8")  # a fast detector, no pose at all
    with pytest.raises(ManifestError) as e:
        run_cli.default_artifacts()
    assert artifact_id(*DEFAULT_POSE) in str(e.value) and f"headpose convert {DEFAULT_POSE[0]}" in str(e.value)


def test_normalisation_field_is_checked():
    spec = get_spec("mobilenetv3_small")
    inp = TensorSpec(name="input", shape=[1, 224, 224, 3], dtype="int8", role="image", layout="NHWC",
                     color="RGB", mean=list(spec.mean), std=list(spec.std),
                     quantization={"scale": 0.0187, "zero_point": -14}, normalisation="input_quantisation")
    m = Manifest(id="mobilenetv3_small-224-tflite-int8", model="mobilenetv3_small", task="head_pose",
                 format="tflite", precision="int8", file="model.tflite", file_sha256="0" * 64, file_bytes=1,
                 input=inp, outputs=[TensorSpec(name="Identity", shape=[1, 6], role="ortho6d")],
                 decode=copy.deepcopy(spec.decode))
    d = m.to_dict()
    assert Manifest.from_dict(copy.deepcopy(d)).input.normalisation == "input_quantisation"
    for bad in ({"normalisation": "graph"}, {"quantization": None}, {"dtype": "float32"}):
        e = copy.deepcopy(d)
        e["input"].update(bad)
        with pytest.raises(ManifestError, match="normalisation|input"):
            Manifest.from_dict(e)
    old = copy.deepcopy(d)
    del old["input"]["normalisation"]
    old["input"].update(dtype="float32", quantization=None)
    assert Manifest.from_dict(old).input.normalisation is None  # old manifests: the caller normalises
