"""The exported graphs stay in ONE XNNPACK partition (a split graph runs parts on slow reference kernels)."""

import numpy as np
import pytest
import torch

from headpose.convert.models.pose import DecomposedHardsigmoid, DecomposedHardswish, build_pose_model, xnnpack_friendly
from headpose.runtime.interpreter import make_interpreter, op_names
from headpose.runtime.manifest import load_manifest


def test_decomposed_activations_are_the_same_functions():
    x = torch.linspace(-10, 10, 20001)
    torch.testing.assert_close(DecomposedHardswish()(x), torch.nn.functional.hardswish(x), atol=1e-6, rtol=0)
    torch.testing.assert_close(DecomposedHardsigmoid()(x), torch.nn.functional.hardsigmoid(x), atol=1e-6, rtol=0)
    net = build_pose_model("mobilenetv3_small")
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    friendly = xnnpack_friendly(build_pose_model("mobilenetv3_small"))
    friendly.load_state_dict(sd)
    assert not any(isinstance(m, (torch.nn.Hardswish, torch.nn.Hardsigmoid)) for m in friendly.modules())
    x = torch.randn(2, 3, 224, 224)
    torch.testing.assert_close(friendly(x), net(x), atol=1e-4, rtol=1e-4)


def _partitions(artifact_dir):
    m = load_manifest(artifact_dir)
    interp = make_interpreter(m.model_path, num_threads=1)
    # every node of the model plus one DELEGATE node per XNNPACK partition
    ops = op_names(interp)
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))  # float32, or int8 (int8 input)
    interp.invoke()
    return ops


def test_mobilenetv3_fp32_single_xnnpack_partition(artifact):
    ops = _partitions(artifact("mobilenetv3_small", "fp32"))
    assert ops.count("DELEGATE") == 1 and "HARD_SWISH" not in ops and "RELU_0_TO_1" not in ops


@pytest.mark.parametrize("model,precision", [("scrfd_500m", "fp32"),
                                             pytest.param("scrfd_500m", "int8", marks=pytest.mark.slow),
                                             pytest.param("scrfd_2.5g", "int8", marks=pytest.mark.slow)])
def test_scrfd_single_xnnpack_partition(artifact, model, precision):
    """SCRFD's nearest upsampling is exported as TRANSPOSE_CONV (RESIZE_NEAREST_NEIGHBOR split it in 3),
    2.5G's average pools as depthwise convs (int8 AVERAGE_POOL_2D split it in 4 more)."""
    ops = _partitions(artifact(model, precision))
    assert "AVERAGE_POOL_2D" not in ops
    assert ops.count("DELEGATE") == 1 and "RESIZE_NEAREST_NEIGHBOR" not in ops and "TRANSPOSE_CONV" in ops


def test_mobilenetv3_student_int8_single_xnnpack_partition(tmp_path):
    """With trained weights (the shipped student) the int8 graph is one partition.

    (Seeded random weights can give int8 scale ratios XNNPACK declines on some ADD/MUL nodes, so
    this is checked on the real student.)
    """
    from headpose.convert.pipeline import convert
    from tests.conftest import ROOT, VIDEO, need_shared
    need_shared(VIDEO)
    out = convert("mobilenetv3_small", ROOT / "weights" / "mobilenetv3_small_fsanet.pt", precision="int8",
                  calib=VIDEO, out_dir=tmp_path, max_int8_error=None)
    ops = _partitions(out)
    assert ops.count("DELEGATE") == 1 and "HARD_SWISH" not in ops and "RELU_0_TO_1" not in ops
    # with its int8 input tensor (issue 13): still one partition, bit-equal to the float-input model
    from headpose.runtime.manifest import load_manifest
    m = load_manifest(out)
    assert m.input.dtype == "int8" and m.input.normalisation == "input_quantisation"
    assert m.quantization["int8_input"]["vs_float_input_max_abs"] == 0.0 and m.parity["xnnpack_partitions"] == 1
