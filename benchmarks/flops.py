"""Multiply-accumulate (MAC) counts of PyTorch models by forward hooks, for FPS estimates per device.

Counted layers: ``Conv2d`` (``out_elements * in_channels / groups * kh * kw``) and ``Linear``
(``batch * in_features * out_features``); batch norm, activations, pooling and element-wise ops
are ignored (a few percent on these networks). FLOPs are reported as ``2 * MACs``.
"""

from __future__ import annotations

from typing import Dict, Sequence


def count_macs(model, input_shape: Sequence[int]) -> Dict[str, int]:
    """MACs of one forward pass of ``model`` on a zero input of ``input_shape``.

    Parameters
    ----------
    model : torch.nn.Module
    input_shape : (N, C, H, W)

    Returns
    -------
    dict
        ``macs`` (total), ``conv_macs``, ``linear_macs``, ``params`` (parameter count), ``layers``
        (number of counted layers).
    """
    import torch
    from torch import nn
    counts = {"conv_macs": 0, "linear_macs": 0, "layers": 0}

    def conv_hook(m: nn.Conv2d, inp, out):
        kh, kw = m.kernel_size
        counts["conv_macs"] += int(out.numel()) * (m.in_channels // m.groups) * kh * kw
        counts["layers"] += 1

    def linear_hook(m: nn.Linear, inp, out):
        counts["linear_macs"] += int(out.numel()) * m.in_features
        counts["layers"] += 1

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(*input_shape))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    counts["macs"] = counts["conv_macs"] + counts["linear_macs"]
    counts["params"] = int(sum(p.numel() for p in model.parameters()))
    return counts


def pose_model_macs(model_id: str, size: int = 224) -> Dict[str, int]:
    """MACs of a registered pose backbone at ``size`` x ``size`` (batch 1)."""
    from ..convert.models import build_pose_model
    return count_macs(build_pose_model(model_id), (1, 3, size, size))


def onnx_conv_macs(path, input_shape: Sequence[int]) -> int:
    """MACs of the Conv and Gemm/MatMul nodes of an ONNX model, from ONNX shape inference.

    Used for SCRFD, whose source is an ONNX file rather than a PyTorch module.
    """
    import numpy as np
    import onnx
    from onnx import shape_inference
    model = onnx.load(str(path))
    inp = model.graph.input[0]
    dims = inp.type.tensor_type.shape.dim
    for d, v in zip(dims, input_shape):
        d.ClearField("dim_param")
        d.dim_value = int(v)
    model = shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input):
        shapes[vi.name] = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    inits = {t.name: list(t.dims) for t in model.graph.initializer}
    macs = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            w = inits.get(node.input[1])
            out = shapes.get(node.output[0])
            if w and out and all(out):
                # w: (Cout, Cin/groups, kh, kw); out: (N, Cout, H, W)
                macs += int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            w = inits.get(node.input[1])
            out = shapes.get(node.output[0])
            if w and out and all(out):
                macs += int(np.prod(out)) * int(w[0] if node.op_type == "MatMul" else w[-1])
    return macs
