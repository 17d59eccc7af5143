import json

import pytest

from headpose.runtime.errors import ManifestError
from headpose.runtime.manifest import Manifest, TensorSpec, artifact_id, load_manifest, write_json_atomic


def _manifest(task="head_pose"):
    return Manifest(
        id=artifact_id("mobilenetv3_small", 224, "tflite", "fp32"), model="mobilenetv3_small", task=task,
        format="tflite", precision="fp32", file="model.tflite", file_sha256="0" * 64, file_bytes=1,
        input=TensorSpec(name="input", shape=[1, 224, 224, 3], role="image", layout="NHWC", color="RGB",
                         mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375]),
        outputs=[TensorSpec(name="Identity", shape=[1, 6], role="ortho6d")],
        decode={"kind": "ortho6d", "crop": {"margin": 0.2}})


def test_roundtrip(tmp_path):
    m = _manifest()
    (tmp_path / "model.tflite").write_bytes(b"x")
    write_json_atomic(tmp_path / "manifest.json", m.to_dict())
    back = load_manifest(tmp_path)
    assert back.to_dict() == m.to_dict()
    assert back.output("ortho6d").name == "Identity"
    assert back.model_path == (tmp_path / "model.tflite").resolve()
    with pytest.raises(ManifestError, match="has no output 'score@8'"):
        back.output("score", 8)


def test_errors(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        load_manifest(tmp_path / "missing")
    with pytest.raises(ManifestError, match="holds no manifest.json"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(tmp_path)
    d = _manifest().to_dict()
    d["schema_version"] = 99
    (tmp_path / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(ManifestError, match="schema_version 99 is not supported"):
        load_manifest(tmp_path)
    d = _manifest().to_dict()
    del d["outputs"]
    (tmp_path / "manifest.json").write_text(json.dumps(d))
    with pytest.raises(ManifestError, match="missing field"):
        load_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps(_manifest().to_dict()))
    with pytest.raises(ManifestError, match="model file 'model.tflite' is missing"):
        load_manifest(tmp_path)
    (tmp_path / "model.tflite").write_bytes(b"x")
    with pytest.raises(ManifestError, match="is a head_pose model, but a face_detection model was expected"):
        load_manifest(tmp_path, expect_task="face_detection")


def test_atomic_json_is_readable_as_the_umask_allows(tmp_path):
    """mkstemp makes 0600 files; a published manifest must be as readable as a plainly written file."""
    import os
    from headpose.runtime.manifest import write_json_atomic
    old = os.umask(0o022)
    try:
        write_json_atomic(tmp_path / "m.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
