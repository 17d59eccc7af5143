"""Fast unit tests of the conversion steps (no TensorFlow)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from headpose.convert.checkpoint import load_pose_model
from headpose.convert.steps import onnx_export
from headpose.runtime.errors import ConversionError, InputError
from headpose.runtime.rotation import rotation_from_6d, rotation_from_euler

from tests.conftest import WEIGHTS, need_shared
from tests.convert.upstream import export_upstream


@pytest.fixture(scope="module")
def mnv3(seeded_ckpt):
    return load_pose_model("mobilenetv3_small", seeded_ckpt("mobilenetv3_small"))


def _faces(n=3, size=224):
    # varied real-looking inputs are not needed for these graph-equivalence checks; a fixed seed
    # keeps them reproducible (conversion and parity tests use real crops)
    return np.random.default_rng(0).normal(0, 1, (n, 3, size, size)).astype(np.float32)


def test_export_pose_has_dynamic_batch_and_matches_torch(mnv3, tmp_path):
    import onnx
    path = onnx_export.export_pose(mnv3, tmp_path / "m.onnx")
    m = onnx.load(str(path))
    assert m.opset_import[0].version >= 17
    assert [i.name for i in m.graph.input] == ["input"] and [o.name for o in m.graph.output] == ["ortho6d"]
    assert m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    x = _faces(3)
    (y,) = onnx_export.run_onnx(path, x)
    with torch.no_grad():
        ref = mnv3(torch.from_numpy(x)).numpy()
    assert y.shape == (3, 6)
    np.testing.assert_allclose(y, ref, atol=1e-4, rtol=1e-4)


def test_cut_upstream_onnx_at_6d(mnv3, tmp_path):
    src = export_upstream(mnv3, tmp_path / "upstream.onnx")
    info = onnx_export.cut_pose_onnx(src, tmp_path / "cut.onnx")
    assert info["source_outputs"] == ["rotation_matrix"] and info["source_input"] == "input"
    x = _faces(2)
    # the upstream graph has a static batch of 1; the cut one takes any batch
    r_src = np.concatenate([onnx_export.run_onnx(src, x[i:i + 1])[0] for i in range(2)])
    (v6,) = onnx_export.run_onnx(tmp_path / "cut.onnx", x)
    with torch.no_grad():
        ref = mnv3(torch.from_numpy(x)).numpy()
    assert v6.shape == (2, 6)
    np.testing.assert_allclose(v6, ref, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(rotation_from_6d(v6.astype(np.float64)), r_src, atol=1e-4)


def test_find_6d_rejects_a_detector():
    import onnx
    model = onnx.load(str(need_shared(WEIGHTS / "scrfd_500m_bnkps.onnx")))
    with pytest.raises(InputError, match="6-output"):
        onnx_export.find_6d_tensor(model)


def test_load_onnx_rejects_corrupt_and_missing(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07 this is not a protobuf" * 10)
    with pytest.raises(InputError, match="ONNX"):
        onnx_export.load_onnx(bad)
    with pytest.raises(InputError, match="does not exist"):
        onnx_export.load_onnx(tmp_path / "none.onnx")


@pytest.mark.parametrize("size", [640, 320])
def test_fix_scrfd_input(tmp_path, size):
    src = need_shared(WEIGHTS / "scrfd_500m_bnkps.onnx")
    dst = onnx_export.fix_scrfd_input(src, tmp_path / "d.onnx", size)
    outs = onnx_export.run_onnx(dst, np.zeros((1, 3, size, size), np.float32))
    counts = sorted({int(np.prod(o.shape[:-1])) for o in outs})
    assert counts == sorted((size // s) ** 2 * 2 for s in (8, 16, 32))


def test_fix_scrfd_input_refuses_other_fixed_size(tmp_path):
    src = need_shared(WEIGHTS / "scrfd_500m_bnkps_640.onnx")
    with pytest.raises(InputError, match="fixed input size 640x640"):
        onnx_export.fix_scrfd_input(src, tmp_path / "d.onnx", 320)


def test_onnx2tf_sample_is_local_and_never_downloaded(tmp_path, monkeypatch):
    """onnx2tf's download helper must find our real-image file in the cwd and not touch the network."""
    from onnx2tf.utils import common_functions as cf
    from headpose.convert.steps.tflite import ONNX2TF_SAMPLE, write_onnx2tf_sample

    def no_network(*a, **k):
        raise AssertionError("onnx2tf tried to reach the network")
    monkeypatch.setattr(cf.requests, "get", no_network)
    imgs = np.random.default_rng(1).random((3, 64, 80, 3)).astype(np.float32)
    write_onnx2tf_sample(tmp_path, imgs)
    assert (tmp_path / ONNX2TF_SAMPLE).exists()
    monkeypatch.chdir(tmp_path)
    data = cf.download_test_image_data()
    assert data.shape == (20, 128, 128, 3) and data.dtype == np.float32


def test_pose_metrics_known_rotations():
    from headpose.convert.parity import pose_metrics
    pitch, yaw, roll = np.array([10.0, -20.0]), np.array([5.0, 30.0]), np.array([0.0, 15.0])
    ref = rotation_from_euler(pitch, yaw, roll)
    test = rotation_from_euler(pitch, yaw + 0.5, roll)
    v6 = np.concatenate([test[:, :, 0], test[:, :, 1]], axis=1)  # first two columns are a valid 6D input
    m = pose_metrics(ref, v6)
    assert m["per_axis_max_deg"]["yaw"] == pytest.approx(0.5, abs=1e-6)
    assert m["per_axis_max_deg"]["pitch"] < 1e-6 and m["per_axis_max_deg"]["roll"] < 1e-6
    assert m["geodesic_max_deg"] == pytest.approx(0.5, abs=1e-4)


def test_map_outputs_by_values_ignores_order():
    from headpose.convert.parity import map_outputs_by_values
    rng = np.random.default_rng(2)
    ref = {("score", 8): rng.random((128, 1)), ("bbox", 16): rng.random((32, 4)) * 5,
           ("score", 16): rng.random((32, 1)), ("bbox", 8): rng.random((128, 4)) * 5}
    named = {"out_a": ref[("bbox", 16)][None] + 1e-4, "out_b": ref[("score", 16)][None],
             "out_c": ref[("score", 8)][None], "out_d": ref[("bbox", 8)][None]}
    assert map_outputs_by_values(named, ref) == {"out_a": ("bbox", 16), "out_b": ("score", 16),
                                                 "out_c": ("score", 8), "out_d": ("bbox", 8)}
    with pytest.raises(ConversionError, match="one-to-one"):
        map_outputs_by_values({"x": ref[("score", 8)], "y": ref[("score", 8)]}, ref)


def test_match_faces():
    from headpose.convert.parity import match_faces
    ref = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    test = np.array([[21, 20, 30, 30], [0, 0, 10, 10], [50, 50, 60, 60]], float)
    m = match_faces(ref, test)
    assert m[0] == pytest.approx(1.0) and m[1] == pytest.approx(0.9)
    assert match_faces(ref, test[2:]).tolist() == [0.0, 0.0]


def test_upstream_onnx_of_another_backbone_is_refused(seeded_ckpt, tmp_path):
    from headpose.convert.families import check_pose_onnx_architecture as _check_pose_onnx_architecture
    from headpose.runtime.errors import CheckpointError
    src = export_upstream(load_pose_model("mobilenetv2", seeded_ckpt("mobilenetv2")), tmp_path / "m.onnx")
    _check_pose_onnx_architecture("mobilenetv2", src)  # fits
    with pytest.raises(CheckpointError, match="those of 'mobilenetv2'"):
        _check_pose_onnx_architecture("mobilenetv3_small", src)


def test_padded_maxpool_after_relu_gets_a_zero_pad(seeded_ckpt, tmp_path):
    """The ResNet stem's MaxPool(pad 1) would reach TFLite as PADV2(-FLT_MAX): int8 scale 1.3e36, unloadable."""
    import onnx
    from onnx import helper, numpy_helper
    from headpose.convert.steps.simplify import simplify
    src = onnx_export.export_pose(load_pose_model("resnet18", seeded_ckpt("resnet18")), tmp_path / "r.onnx")
    dst = simplify(src, tmp_path / "s.onnx")
    nodes = onnx.load(str(dst)).graph.node
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(dst)).graph.initializer}
    pools = [n for n in nodes if n.op_type == "MaxPool"]
    assert len(pools) == 1
    attrs = {a.name: helper.get_attribute_value(a) for a in pools[0].attribute}
    assert attrs["pads"] == [0, 0, 0, 0]
    (pad,) = [n for n in nodes if n.output[0] == pools[0].input[0]]
    assert pad.op_type == "Pad" and inits[pad.input[1]].tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
    x = _faces(2)
    np.testing.assert_array_equal(onnx_export.run_onnx(src, x)[0], onnx_export.run_onnx(dst, x)[0])


def test_padded_maxpool_not_after_relu_is_left_alone():
    import onnx
    from onnx import TensorProto, helper
    from headpose.convert.steps.simplify import zero_pad_maxpool
    g = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["n"]),
         helper.make_node("MaxPool", ["n"], ["y"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    m = helper.make_model(g)
    assert zero_pad_maxpool(m) == 0 and [n.op_type for n in m.graph.node] == ["Neg", "MaxPool"]


@pytest.mark.parametrize("onnx_file", ["scrfd_500m_bnkps.onnx", "scrfd_2.5g_bnkps.onnx"])
def test_scrfd_ops_xnnpack_lacks_are_rewritten_exactly(tmp_path, onnx_file):
    """Not XNNPACK ops: RESIZE_NEAREST_NEIGHBOR (any precision) and int8 AVERAGE_POOL_2D. SCRFD's FPN
    upsampling becomes an identity ConvTranspose, 2.5G's average pools depthwise convs, exactly."""
    import onnx
    from headpose.convert.steps.simplify import simplify
    fixed = onnx_export.fix_scrfd_input(need_shared(WEIGHTS / onnx_file), tmp_path / "f.onnx", 320)
    before = [n.op_type for n in onnx.load(str(fixed)).graph.node]
    dst = simplify(fixed, tmp_path / "s.onnx")
    ops = [n.op_type for n in onnx.load(str(dst)).graph.node]
    assert "Resize" not in ops and "AveragePool" not in ops and ops.count("ConvTranspose") == 2
    assert ops.count("Conv") == before.count("Conv") + before.count("AveragePool")
    x = np.random.default_rng(0).uniform(-1, 1, (1, 3, 320, 320)).astype(np.float32)
    for a, b in zip(onnx_export.run_onnx(fixed, x), onnx_export.run_onnx(dst, x)):
        np.testing.assert_allclose(a, b, atol=1e-5)
