"""Every file a yakhyo/head-pose-estimation user holds converts: six backbones x four kinds of file.

The files are written by ``tests/convert/upstream.py`` (an independent, functional definition of the
upstream networks, from reading the newest upstream code), never by the project's own export code:

- ``state_dict``: the released ``<backbone>.pt``;
- ``training_checkpoint``: upstream ``main.py``'s ``{"epoch", "model", "optimizer", "lr_scheduler", "args"}``;
- ``onnx``: upstream ``onnx_export.py`` with the TorchScript exporter (opset 20, ``input`` -> ``rotation_matrix``);
- ``dynamo_onnx``: the same with torch's dynamo exporter (the default since torch 2.9): ``.onnx`` + ``.onnx.data``.

Each cell converts to TFLite fp32 through :func:`headpose.convert.pipeline.convert`, whose parity gate
(< 0.05 deg geodesic against the source, on real face crops) must pass. Weights are the project's
trained students where it has them (real networks; the upstream key layout is asserted on them),
seeded upstream-layout weights otherwise. The MobileNetV3 cells run by default (the current head);
the rest of the table is slow. ``HEADPOSE_CONFORMANCE_OUT=DIR`` writes each cell's figures to
``DIR/<backbone>-<kind>.json`` (the README's conformance table).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from headpose.convert.models import build_pose_model
from headpose.runtime.errors import InputError
from headpose.runtime.manifest import load_manifest
from headpose.runtime.registry import POSE_MODELS
from tests.conftest import IMAGES, ROOT, VIDEO, need_shared
from tests.convert import upstream

KINDS = ("state_dict", "training_checkpoint", "onnx", "dynamo_onnx")
FAST = {("mobilenetv3_small", k) for k in KINDS} | {("mobilenetv3_large", k) for k in
                                                    ("state_dict", "training_checkpoint", "dynamo_onnx")}
CELLS = [pytest.param(m, k, marks=() if (m, k) in FAST else pytest.mark.slow, id=f"{m}-{k}")
         for m in POSE_MODELS for k in KINDS]


def _real_crops(n: int = 2) -> torch.Tensor:
    """Real face photos, resized to 224 and ImageNet-normalised: (n, 3, 224, 224)."""
    cv2 = pytest.importorskip("cv2", reason="OpenCV reads the real photos (installed by ./install.sh)")
    from headpose.runtime.preprocess import resize_bilinear
    from headpose.runtime.registry import IMAGENET_MEAN_255, IMAGENET_STD_255
    out = []
    for p in sorted(need_shared(IMAGES).glob("*.jpg"))[:n]:
        rgb = cv2.cvtColor(cv2.imread(str(p), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        img = resize_bilinear(rgb, 224, 224).astype(np.float32)
        out.append(((img - np.array(IMAGENET_MEAN_255)) / np.array(IMAGENET_STD_255)).transpose(2, 0, 1))
    return torch.from_numpy(np.stack(out).astype(np.float32))


@pytest.mark.parametrize("model_id", POSE_MODELS)
def test_upstream_definition_matches_project_models(model_id):
    """Keys (and their order), shapes, batch-norm eps and the forward pass agree with upstream's definition."""
    net = upstream.UpstreamNet(seed=2)
    with torch.no_grad():
        net.forward(model_id, torch.zeros(1, 3, 64, 64))
    model = build_pose_model(model_id)
    assert list(model.state_dict()) == list(net.sd)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(v.shape) for k, v in net.sd.items()}
    eps = {n: m.eps for n, m in model.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert eps == net.eps
    model.load_state_dict(net.sd, strict=True)
    x = _real_crops()
    with torch.no_grad():
        torch.testing.assert_close(model(x), upstream.upstream_forward(model_id, net.sd, x), atol=1e-5, rtol=1e-5)
        # upstream's whole forward ends in the rotation matrix; the project's graph stops at the 6-vector
        r = upstream.rotation_from_ortho6d(model(x)).numpy()
    from headpose.runtime.rotation import rotation_from_6d
    np.testing.assert_allclose(rotation_from_6d(model(x).detach().numpy()), r, atol=1e-5)


def _weights(model_id: str):
    """(state_dict in upstream's key layout, label): the trained student where the project has one."""
    sd = upstream.upstream_state_dict(model_id, seed=1)
    student = ROOT / "weights" / f"{model_id}_fsanet.pt"
    if student.is_file():
        trained = torch.load(student, map_location="cpu", weights_only=True)
        assert list(trained) == list(sd), "the shipped student is not in the current upstream layout"
        return {k: trained[k] for k in sd}, f"trained ({student.name})"
    return sd, "seeded"


def _write(model_id: str, kind: str, where: Path):
    sd, label = _weights(model_id)
    if kind == "state_dict":
        path = where / f"{model_id}.pt"
        torch.save(sd, path)
    elif kind == "training_checkpoint":
        path = upstream.write_training_checkpoint(model_id, where / "best_checkpoint.ckpt", epoch=31, sd=sd)
    else:
        net = build_pose_model(model_id)  # native nn.Hardswish, as upstream's module
        net.load_state_dict(sd, strict=True)
        path = upstream.export_upstream(net, where / f"{model_id}.onnx", dynamo=kind == "dynamo_onnx")
    return path, label


@pytest.mark.parametrize("model_id,kind", CELLS)
def test_conformance_cell(model_id, kind, tmp_path):
    from headpose.convert.pipeline import convert
    need_shared(VIDEO)
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src, label = _write(model_id, kind, src_dir)
    if kind == "dynamo_onnx":
        assert (src_dir / f"{src.name}.data").is_file(), "the dynamo exporter writes weights as external data"
    d = convert(model_id, src, fmt="tflite", precision="fp32", calib=VIDEO, out_dir=tmp_path / "out")
    m = load_manifest(d)
    p = m.parity
    assert p["passed"] and p["geodesic_max_deg"] < 0.05
    assert max(p["reference_euler_std_deg"].values()) > 0.5, "reference angles vary across real faces"
    want_head = "mlp" if model_id.startswith("mobilenetv3") else "linear"
    if kind in ("state_dict", "training_checkpoint"):
        ck = m.source["checkpoint"]
        assert m.source["kind"] == "pose_checkpoint" and ck["kind"] == kind and ck["head"] == want_head
        if kind == "training_checkpoint":
            assert ck["epoch"] == 31 and ck["args"]["network"] == model_id and ck["entry"] == "model"
    else:
        assert m.source["kind"] == "pose_onnx" and m.source["source_outputs"] == ["rotation_matrix"]
        assert m.source["head"] == want_head
        assert p["reference"] == "source ONNX in onnxruntime"
        ext = m.source.get("external_data", [])
        assert [e["file"] for e in ext] == ([f"{src.name}.data"] if kind == "dynamo_onnx" else [])
    # the artifact takes any batch (upstream exports a fixed batch of 1)
    from headpose.runtime.interpreter import TFLiteModel
    tfl = TFLiteModel(m)
    assert tfl(np.zeros((3, 224, 224, 3), np.float32))[m.outputs[0].name].shape == (3, 6)
    out = os.environ.get("HEADPOSE_CONFORMANCE_OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{model_id}-{kind}.json").write_text(json.dumps(
            {"model": model_id, "kind": kind, "weights": label, "geodesic_max_deg": p["geodesic_max_deg"],
             "geodesic_mean_deg": p["geodesic_mean_deg"], "crops": p["samples"], "source": m.source}, indent=1))


def test_dynamo_onnx_without_its_data_file_is_named(tmp_path):
    from headpose.convert.pipeline import convert
    net = build_pose_model("mobilenetv3_small")
    src = upstream.export_upstream(net, tmp_path / "mobilenetv3_small.onnx", dynamo=True)
    (tmp_path / "mobilenetv3_small.onnx.data").rename(tmp_path / "elsewhere.data")
    with pytest.raises(InputError, match=r"external data file\(s\) 'mobilenetv3_small.onnx.data', not found in") as e:
        convert("mobilenetv3_small", src, fmt="tflite", precision="fp32", calib=VIDEO, out_dir=tmp_path / "out")
    assert "copy the data file next to the .onnx" in str(e.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_student_upstream_dynamo_onnx_int8_is_one_xnnpack_partition(tmp_path):
    """The current head in an upstream ONNX (native HardSwish/HardSigmoid ops) still gives ONE int8 partition."""
    from headpose.convert.pipeline import convert
    from headpose.runtime.interpreter import make_interpreter, op_names
    need_shared(VIDEO)
    src, label = _write("mobilenetv3_small", "dynamo_onnx", tmp_path)
    import onnx
    ops = {n.op_type for n in onnx.load(str(src), load_external_data=False).graph.node}
    assert {"HardSwish", "HardSigmoid"} <= ops
    d = convert("mobilenetv3_small", src, fmt="tflite", precision="int8", calib=VIDEO, out_dir=tmp_path / "out",
                max_int8_error=None)
    it = make_interpreter(load_manifest(d).model_path, num_threads=1)
    names = op_names(it)
    assert names.count("DELEGATE") == 1 and "HARD_SWISH" not in names, label


@pytest.mark.parametrize("model_id", ["mobilenetv3_small", "mobilenetv3_large"])
@pytest.mark.parametrize("kind", ["state_dict", "training_checkpoint"])
def test_coreml_conformance_cell(model_id, kind, tmp_path):
    """CoreML (fp32) from the upstream checkpoints of both MobileNetV3s (coremltools converts from PyTorch).

    Linux cannot run CoreML predictions: the figures are the traced graph handed to coremltools, and the
    network with the weights read back from the ML program, each against the checkpoint on real crops.
    """
    from headpose.convert.pipeline import convert
    need_shared(VIDEO)
    src, label = _write(model_id, kind, tmp_path)
    d = convert(model_id, src, fmt="coreml", precision="fp32", calib=VIDEO, out_dir=tmp_path / "out")
    m = load_manifest(d)
    graph = m.parity["graph_handed_to_coremltools"]["max_geodesic_deg"]
    weights = m.parity["artifact_weights_emulated"]["max_geodesic_deg"]
    assert graph < 0.05 and weights < 0.05
    ck = m.source["checkpoint"]
    assert ck["kind"] == kind and ck["head"] == "mlp"
    out = os.environ.get("HEADPOSE_CONFORMANCE_OUT")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / f"{model_id}-{kind}-coreml.json").write_text(json.dumps(
            {"model": model_id, "kind": kind, "weights": label, "graph_max_geodesic_deg": graph,
             "artifact_weights_max_geodesic_deg": weights, "crops": m.parity["data"]["crops"]}, indent=1))
