"""Finding artifacts of a bench run: paths keyed by weights, failed-build markers, weight resolution."""

import pytest

from headpose.benchmarks import artifacts as art
from headpose.runtime.errors import ConversionError, InputError, ManifestError
from headpose.runtime.manifest import sha256_file


def _weights(tmp_path, model="mobilenetv3_small"):
    p = tmp_path / f"{model}.pt"
    p.write_bytes(b"not really a checkpoint")
    return art.Weights(model, p, "given", sha256_file(p))


def test_artifact_dir_is_keyed_by_weights(tmp_path):
    w = _weights(tmp_path)
    d = art.artifact_dir(w, "tflite", "int8", tmp_path / "root")
    assert d == tmp_path / "root" / f"mobilenetv3_small-{w.sha256[:12]}" / "mobilenetv3_small-224-tflite-int8"
    other = art.Weights(w.model, w.path, "given", "f" * 64)
    assert art.artifact_dir(other, "tflite", "int8", tmp_path / "root") != d


def test_missing_artifact_without_building(tmp_path):
    with pytest.raises(ManifestError, match="headpose convert mobilenetv3_small"):
        art.ensure_artifact(_weights(tmp_path), "tflite", "fp32", tmp_path / "root", build=False)


def test_failed_marker_stops_rebuilds(tmp_path):
    w = _weights(tmp_path)
    d = art.artifact_dir(w, "tflite", "int8", tmp_path / "root")
    d.parent.mkdir(parents=True)
    d.with_name(d.name + ".failed").write_text("RuntimeError: XNNPACK failed to prepare\n")
    with pytest.raises(ConversionError, match="failed before .*XNNPACK failed to prepare.*--retry-failed"):
        art.ensure_artifact(w, "tflite", "int8", tmp_path / "root", build=True)


def test_a_failing_build_leaves_a_marker(tmp_path):
    w = _weights(tmp_path)  # not a checkpoint: the conversion pipeline refuses it
    with pytest.raises(ConversionError, match="building mobilenetv3_small-224-onnx-fp32 failed"):
        art.ensure_artifact(w, "onnx", "fp32", tmp_path / "root", build=True)
    marker = art.artifact_dir(w, "onnx", "fp32", tmp_path / "root")
    assert marker.with_name(marker.name + ".failed").read_text().strip()


def test_weight_resolution(tmp_path):
    with pytest.raises(InputError, match="do not exist"):
        art.pose_weights("mobilenetv3_small", tmp_path / "absent.pt")
    with pytest.raises(InputError, match="not a face detector"):
        art.detector_weights("mobilenetv2")
    given = _weights(tmp_path)
    assert art.pose_weights("mobilenetv3_small", given.path).kind == "given"
