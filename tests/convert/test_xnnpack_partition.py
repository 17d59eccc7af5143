"""The exported graphs stay in ONE XNNPACK partition (a split graph runs parts on slow reference kernels)."""

import numpy as np
import pytest
import torch

from headpose.convert.models.pose import DecomposedHardsigmoid, DecomposedHardswish, build_pose_model, xnnpack_friendly
from headpose.runtime.interpreter import make_interpreter
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


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_mobilenetv3_single_xnnpack_partition(artifact, precision):
    m = load_manifest(artifact("mobilenetv3_small", precision))
    interp = make_interpreter(m.model_path, num_threads=1)
    # _get_ops_details lists the execution plan after delegation: one DELEGATE node per partition,
    # plus the nodes XNNPACK did not take (QUANTIZE/DEQUANTIZE at float I/O are outside by design).
    ops = [d["op_name"] for d in interp._get_ops_details()]
    assert ops.count("DELEGATE") == 1, ops
    assert "HARD_SWISH" not in ops and "RELU_0_TO_1" not in ops
    inp = interp.get_input_details()[0]
    interp.set_tensor(inp["index"], np.zeros(inp["shape"], np.float32))
    interp.invoke()
