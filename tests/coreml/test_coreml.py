"""CoreML artifacts: what can be checked on Linux, and the CoreML predictions on macOS.

Linux (CI): the SCRFD PyTorch replay against ONNX Runtime on real frames; the exactness of the
image-input normalisation fold; for built artifacts the spec (names, shapes, types), the ML
program's op counts (dequantise ops after int8 / palettisation), reload with
``skip_model_load=True``, sizes, digests, the parity block and the shipped reference data.
macOS only: CoreML predictions on the shipped real inputs against the reference outputs.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import IMAGES, ROOT, VIDEO, WEIGHTS, need_shared

ct = pytest.importorskip("coremltools", reason="coremltools is part of the 'convert' extra")

FAST_POSE = ("mobilenetv3_small",)
ALL_POSE = ("resnet18", "resnet34", "resnet50", "mobilenetv2", "mobilenetv3_small", "mobilenetv3_large")
MACOS = sys.platform == "darwin"
NOT_MAC = "coremltools runs CoreML predictions only on macOS; on Linux the spec, program and parity are checked"


def _real_frames(n_video: int = 4):
    from headpose.convert.facedata import iter_frames
    need_shared(VIDEO)
    frames = [f for _, f in iter_frames(VIDEO, every=80)][:n_video]
    frames += [f for _, f in iter_frames(need_shared(IMAGES))]
    return frames


def _real_crops(n: int = 8) -> np.ndarray:
    from headpose.convert.facedata import OnnxFaceDetector, face_crops
    det = OnnxFaceDetector(need_shared(WEIGHTS / "scrfd_500m_bnkps.onnx"), 640)
    crops, _ = face_crops(need_shared(VIDEO), det, size=224, every=40, min_face=40, limit=n)
    return crops


# ---------------------------------------------------------------------------------------------
# the SCRFD route: the ONNX graph replayed in PyTorch


def test_scrfd_replay_matches_onnxruntime_on_real_frames():
    from headpose.convert.models.scrfd_torch import ScrfdTorch, compare_with_onnx
    module = ScrfdTorch(need_shared(WEIGHTS / "scrfd_500m_bnkps.onnx"), 640).eval()
    r = compare_with_onnx(module, _real_frames())
    assert r["faces_onnx"] >= 5, "the real frames must hold faces for this check to mean anything"
    assert r["faces_torch"] == r["faces_onnx"]
    assert r["min_matched_iou"] > 0.9999
    assert r["max_score_diff"] < 1e-5 and r["max_kps_diff_px"] < 0.01
    assert max(r["max_abs_diff"].values()) < 1e-3


@pytest.mark.slow
def test_scrfd_2_5g_replay_matches_onnxruntime():
    from headpose.convert.models.scrfd_torch import ScrfdTorch, compare_with_onnx
    module = ScrfdTorch(need_shared(WEIGHTS / "scrfd_2.5g_bnkps.onnx"), 640).eval()
    r = compare_with_onnx(module, _real_frames(2))
    assert r["faces_onnx"] >= 3 and r["faces_torch"] == r["faces_onnx"] and r["min_matched_iou"] > 0.9999


def test_scrfd_replay_refuses_other_models(tmp_path):
    from headpose.convert.models.scrfd_torch import ScrfdTorch
    from headpose.runtime.errors import ConversionError
    with pytest.raises(ConversionError, match="operator|SCRFD"):
        ScrfdTorch(need_shared(WEIGHTS / "fsanet_1x1.onnx"), 64)


# ---------------------------------------------------------------------------------------------
# the image input: ImageNet's per-channel std with CoreML's scalar scale


def test_image_affine_reproduces_imagenet_normalisation_exactly():
    from headpose.convert.steps.coreml import image_affine
    from headpose.runtime.preprocess import normalise
    from headpose.runtime.registry import get_spec
    spec = get_spec("resnet18")
    scale, bias, gain = image_affine(spec.mean, spec.std)
    assert not np.allclose(gain, 1.0), "ImageNet's std differs per channel: a gain must remain"
    px = np.arange(256, dtype=np.float64)[:, None].repeat(3, 1)
    np.testing.assert_allclose((scale * px + np.asarray(bias)) * gain,
                               normalise(px, spec.mean, spec.std), rtol=0, atol=1e-5)
    scale, bias, gain = image_affine(get_spec("scrfd_500m").mean, get_spec("scrfd_500m").std)
    assert scale == pytest.approx(1 / 128) and bias == pytest.approx([-127.5 / 128] * 3) and np.allclose(gain, 1)


def test_folded_first_conv_matches_original_on_real_crops(seeded_ckpt):
    import copy

    import torch

    from headpose.convert.checkpoint import load_pose_model
    from headpose.convert.steps.coreml import first_conv, fold_input_gain, image_affine
    from headpose.runtime.preprocess import normalise
    from headpose.runtime.registry import get_spec
    crops = _real_crops(6)
    spec = get_spec("mobilenetv3_small")
    original = load_pose_model(spec.model_id, seeded_ckpt(spec.model_id))
    folded = copy.deepcopy(original)
    scale, bias, gain = image_affine(spec.mean, spec.std)
    fold_input_gain(first_conv(folded), gain)
    x_ref = normalise(crops.astype(np.float32), spec.mean, spec.std).transpose(0, 3, 1, 2)
    x_img = (crops.astype(np.float32) * np.float32(scale) + np.asarray(bias, np.float32)).transpose(0, 3, 1, 2)
    with torch.no_grad():
        ref = original(torch.from_numpy(x_ref.copy())).numpy()
        got = folded(torch.from_numpy(x_img.copy())).numpy()
        unfolded = original(torch.from_numpy(x_img.copy())).numpy()
    err, err_unfolded = np.abs(ref - got).max(), np.abs(ref - unfolded).max()
    assert err < 1e-4
    assert err < err_unfolded / 20, "without the fold the outputs must differ (the check can fail)"


# ---------------------------------------------------------------------------------------------
# built artifacts (through headpose.convert.pipeline.convert, i.e. `headpose convert --format coreml`)


def _check_common(path: Path, model_id: str, precision: str):
    from headpose.convert.steps.coreml import CHECKER_FILE, MODEL_FILE, REFERENCE_FILE, describe_mlpackage, mlpackage_digest
    from headpose.runtime.manifest import load_manifest
    from headpose.runtime.registry import get_spec
    spec = get_spec(model_id)
    m = load_manifest(path, expect_task=spec.task)
    assert (m.format, m.precision, m.model, m.file) == ("coreml", precision, model_id, MODEL_FILE)
    assert m.id == path.name == f"{model_id}-{spec.input_size}-coreml-{precision}"
    sha, nbytes = mlpackage_digest(path / MODEL_FILE)
    assert (m.file_sha256, m.file_bytes) == (sha, nbytes)
    assert (path / REFERENCE_FILE).is_file() and (path / CHECKER_FILE).is_file()
    # reload from disk without compiling (the only load Linux can do) and read the spec
    reloaded = ct.models.MLModel(str(path / MODEL_FILE), skip_model_load=True)
    assert reloaded.get_spec().WhichOneof("Type") == "mlProgram"
    d = describe_mlpackage(path / MODEL_FILE)
    s = spec.input_size
    assert d["inputs"] == [{"name": m.input.name, "kind": "image", "shape": [s, s], "color": "RGB"}]
    assert m.input.dtype == "uint8" and m.input.shape == [1, s, s, 3] and m.input.mean == [0, 0, 0] \
        and m.input.std == [1, 1, 1]
    assert [o["name"] for o in d["outputs"]] == [o.name for o in m.outputs]
    for o, spec_o in zip(d["outputs"], m.outputs):
        assert o["kind"] == "multiarray" and o["dtype"] == "FLOAT32" and o["shape"] == spec_o.shape
    assert d["spec_version"] >= 7, "ML Program for iOS 16 (spec version 7) or later"
    compressed = d["ops"].get("constexpr_affine_dequantize", 0) + d["ops"].get("constexpr_lut_to_dense", 0)
    if precision == "int8":
        assert d["ops"].get("constexpr_affine_dequantize", 0) > 0
    elif precision == "palettize6":
        assert d["ops"].get("constexpr_lut_to_dense", 0) > 0
    else:
        assert compressed == 0
    assert "batch_norm" not in d["ops"]
    assert m.parity["coreml_predictions"]["checked"] is False  # honest: not predicted on Linux
    return m, d


def _n_convs(model_id: str) -> int:
    from torch import nn

    from headpose.convert.models import build_pose_model
    return sum(isinstance(k, nn.Conv2d) for k in build_pose_model(model_id).modules())


def _n_linears(model_id: str) -> int:
    """2 for MobileNetV3's current upstream head (Linear-Hardswish-Linear), else 1."""
    from torch import nn

    from headpose.convert.models import build_pose_model
    return sum(isinstance(k, nn.Linear) for k in build_pose_model(model_id).modules())


def _check_pose(artifact, model_id: str, precision: str):
    from headpose.convert.steps.coreml import REFERENCE_FILE
    path = artifact(model_id, precision, fmt="coreml")
    m, d = _check_common(path, model_id, precision)
    assert [(o.name, o.role, o.shape) for o in m.outputs] == [("ortho6d", "ortho6d", [1, 6])]
    assert d["ops"]["conv"] == _n_convs(model_id) and d["ops"].get("linear", 0) == _n_linears(model_id)
    gain = m.source["coreml"]["first_conv_input_gain"]
    assert len(gain) == 3 and not np.allclose(gain, 1.0)
    p = m.parity
    assert p["graph_handed_to_coremltools"]["max_geodesic_deg"] < 0.01
    assert p["data"]["crops"] >= 8
    emu = p["artifact_weights_emulated"]
    assert np.isfinite(emu["max_geodesic_deg"]) and "read back from the ML program" in emu["compared"]
    ref = np.load(path / REFERENCE_FILE)
    assert ref["image"].dtype == np.uint8 and ref["image"].shape[1:] == (224, 224, 3) and len(ref["image"]) >= 4
    assert ref["ortho6d"].shape == (len(ref["image"]), 6)
    assert np.ptp(ref["ortho6d"], axis=0).max() > 1e-3, "reference outputs vary across real faces"
    return path, m, d


def _check_scrfd(artifact, model_id: str, precision: str):
    from headpose.convert.steps.coreml import REFERENCE_FILE
    path = artifact(model_id, precision, fmt="coreml")
    m, d = _check_common(path, model_id, precision)
    names = {(o.role, o.stride): o for o in m.outputs}
    for s, n in ((8, 12800), (16, 3200), (32, 800)):
        for role, c in (("score", 1), ("bbox", 4), ("kps", 10)):
            assert names[(role, s)].shape == [1, n, c] and names[(role, s)].name == f"{role}_{s}"
    import onnx
    from tests.conftest import SCRFD_ONNX
    graph = onnx.load(str(WEIGHTS / SCRFD_ONNX[model_id])).graph
    assert d["ops"]["conv"] == sum(n.op_type == "Conv" for n in graph.node)  # every ONNX Conv, none fused away
    assert d["ops"]["upsample_nearest_neighbor"] == sum(n.op_type == "Resize" for n in graph.node)
    p = m.parity
    proof = p["pytorch_replay_vs_onnxruntime"]
    assert proof["faces_onnx"] > 0 and proof["faces_torch"] == proof["faces_onnx"] and proof["min_matched_iou"] > 0.999
    g = p["graph_handed_to_coremltools"]
    assert g["faces_onnx"] == g["faces_test"] > 0 and g["min_matched_iou"] > 0.999 and g["faces_onnx_unmatched"] == 0
    ref = np.load(path / REFERENCE_FILE)
    assert ref["image"].dtype == np.uint8 and ref["image"].shape[1:] == (640, 640, 3)
    assert ref["score_8"].shape == (len(ref["image"]), 12800, 1)
    return path, m, d


def test_pose_fp16_artifact(artifact):
    path, m, d = _check_pose(artifact, "mobilenetv3_small", "fp16")
    assert m.parity["artifact_weights_emulated"]["max_geodesic_deg"] < 5.0


def test_pose_int8_artifact_is_smaller_and_dequantises(artifact):
    path16 = artifact("mobilenetv3_small", "fp16", fmt="coreml")
    path, m, d = _check_pose(artifact, "mobilenetv3_small", "int8")
    assert m.quantization["mode"] == "weight_int8"
    from headpose.runtime.manifest import load_manifest
    assert m.file_bytes < 0.7 * load_manifest(path16).file_bytes


def test_scrfd_fp16_artifact(artifact):
    path, m, d = _check_scrfd(artifact, "scrfd_500m", "fp16")
    emu = m.parity["artifact_weights_emulated"]
    # fp16 may shift a face at the score threshold; every reference face must still be found
    assert emu["faces_onnx_unmatched"] == 0 and emu["min_matched_iou"] > 0.9
    assert abs(emu["faces_test"] - emu["faces_onnx"]) <= 1


@pytest.mark.slow
@pytest.mark.parametrize("model_id", [m for m in ALL_POSE if m not in FAST_POSE])
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_pose_artifacts_all_backbones(artifact, model_id, precision):
    _check_pose(artifact, model_id, precision)


@pytest.mark.slow
def test_scrfd_int8_artifact(artifact):
    _check_scrfd(artifact, "scrfd_500m", "int8")


@pytest.mark.slow
def test_scrfd_2_5g_fp16_artifact(artifact):
    _check_scrfd(artifact, "scrfd_2.5g", "fp16")


@pytest.mark.slow
def test_pose_palettize6_artifact(artifact):
    _check_pose(artifact, "mobilenetv3_small", "palettize6")


# ---------------------------------------------------------------------------------------------
# the shipped checker, the CLI and the iOS notes


def _load_checker(path: Path):
    spec = importlib.util.spec_from_file_location("verify_coreml", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shipped_checker_math_matches_runtime(artifact):
    from headpose.runtime.rotation import geodesic_deg, rotation_from_6d
    path = artifact("mobilenetv3_small", "fp16", fmt="coreml")
    chk = _load_checker(path / "verify_coreml.py")
    ref = np.load(path / "reference.npz")
    np.testing.assert_allclose(chk.rotation_from_6d(ref["ortho6d"]), rotation_from_6d(ref["ortho6d"]), atol=1e-12)
    np.testing.assert_allclose(chk.geodesic_deg(chk.rotation_from_6d(ref["ortho6d"]), chk.rotation_from_6d(ref["ortho6d_emulated"])),
                               geodesic_deg(rotation_from_6d(ref["ortho6d"]), rotation_from_6d(ref["ortho6d_emulated"])),
                               atol=1e-6)
    if not MACOS:
        r = subprocess.run([sys.executable, str(path / "verify_coreml.py")], capture_output=True, text=True)
        assert r.returncode == 2 and "macOS" in r.stderr


def test_cli_refuses_tflite_only_precision_for_coreml(capsys, seeded_ckpt, tmp_path):
    from headpose.cli import main
    code = main(["convert", "mobilenetv3_small", "--weights", str(seeded_ckpt("mobilenetv3_small")),
                 "--format", "coreml", "--precision", "dynamic-int8", "--out", str(tmp_path)])
    assert code == 2 and "palettize6" in capsys.readouterr().err
    code = main(["convert", "mobilenetv3_small", "--weights", str(need_shared(WEIGHTS / "scrfd_500m_bnkps.onnx")),
                 "--format", "coreml", "--precision", "fp16", "--out", str(tmp_path)])
    assert code == 2 and ".pt" in capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "nothing is left behind"


def test_ios_notes_bench_example_is_a_valid_result(tmp_path):
    from headpose.benchmarks.schema import validate
    from headpose.cli import main
    text = (ROOT / "ios_notes" / "README.md").read_text()
    block = re.search(r"<!-- bench-example:start -->\s*```json\n(.*?)```", text, re.S).group(1)
    result = json.loads(block)
    assert validate(result) == []
    entry = result["model_latency"][0]
    assert entry["runtime"] == "coreml" and entry["format"] == "coreml"
    assert set(entry["stats"]) >= {"p50", "p90", "p99", "mean"}
    (tmp_path / "iphone.json").write_text(block)
    assert main(["bench-report", str(tmp_path / "iphone.json"), "--out", str(tmp_path / "report"), "--no-plots"]) == 0
    assert any((tmp_path / "report").iterdir())


def test_ios_notes_swift_files_exist_and_follow_the_manifest():
    notes = ROOT / "ios_notes"
    swift = {p.name: p.read_text() for p in notes.glob("*.swift")}
    assert {"Manifest.swift", "SCRFDDecoder.swift", "PoseMath.swift", "HeadPosePipeline.swift",
            "Imaging.swift", "BenchReport.swift"} <= set(swift)
    assert "outputName(role:" in swift["SCRFDDecoder.swift"]  # tensors by role, not by order
    assert "atan2(R(2, 1), R(2, 2))" in swift["PoseMath.swift"]


# ---------------------------------------------------------------------------------------------
# macOS only: the CoreML predictions


@pytest.mark.skipif(not MACOS, reason=NOT_MAC)
@pytest.mark.parametrize("model_id", ["mobilenetv3_small", "scrfd_500m"])
def test_coreml_predictions_match_reference_on_mac(artifact, model_id):
    path = artifact(model_id, "fp16", fmt="coreml")
    report = _load_checker(path / "verify_coreml.py").check(path, "ALL")
    assert report["ok"], report
    if model_id == "scrfd_500m":  # the same faces after the runtime's decoding
        from PIL import Image

        from headpose.runtime.manifest import load_manifest
        from headpose.runtime.scrfd import box_iou, decode_scrfd
        m = load_manifest(path)
        model = ct.models.MLModel(str(m.model_path))
        ref = np.load(path / "reference.npz")
        for i, img in enumerate(ref["image"]):
            out = model.predict({m.input.name: Image.fromarray(img)})
            got = {(o.role, o.stride): np.asarray(out[o.name]) for o in m.outputs}
            want = {(o.role, o.stride): ref[o.name][i] for o in m.outputs}
            d_got, _ = decode_scrfd(got, (640, 640), scale=float(ref["letterbox_scale"][i]))
            d_ref, _ = decode_scrfd(want, (640, 640), scale=float(ref["letterbox_scale"][i]))
            assert abs(len(d_got) - len(d_ref)) <= 1
            if len(d_ref):
                assert len(d_got) and box_iou(d_ref, d_got).max(axis=1).min() > 0.9
