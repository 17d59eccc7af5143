"""Simplify step: onnx-simplifier (constant folding, shape inference) with a numeric check."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from ...runtime.errors import ConversionError

log = logging.getLogger(__name__)


def simplify(src: Union[str, Path], dst: Union[str, Path]) -> Path:
    """Simplify ``src`` into ``dst`` with onnxsim; onnxsim compares outputs on random inputs itself.

    Dynamic dimensions (the pose batch) stay dynamic.

    Raises
    ------
    ConversionError
        When onnxsim fails or its own output check fails.
    """
    import onnx
    import onnxsim
    model = onnx.load(str(src))
    try:
        simplified, ok = onnxsim.simplify(model, check_n=1)
    except Exception as e:
        raise ConversionError(f"onnx-simplifier failed on '{Path(src).name}' ({type(e).__name__}: {e}); "
                              f"the ONNX graph may use an unsupported operator") from None
    if not ok:
        raise ConversionError(f"onnx-simplifier changed the outputs of '{Path(src).name}'; the simplified graph "
                              f"is not equivalent (report this model)")
    before, after = len(model.graph.node), len(simplified.graph.node)
    pools = zero_pad_maxpool(simplified)
    resizes = nearest_upsample_as_transposed_conv(simplified)
    avgpools = average_pool_as_depthwise_conv(simplified)
    hard = hard_activations_decomposed(simplified)
    onnx.save(simplified, str(dst))
    log.info("simplified %s: %d -> %d nodes (%d padded MaxPool after ReLU given an explicit zero Pad, "
             "%d nearest 2x Resize as an identity ConvTranspose, %d AveragePool as a depthwise Conv, "
             "%d HardSwish/HardSigmoid decomposed)", Path(src).name, before, after, pools, resizes, avgpools, hard)
    return Path(dst)


class _Graph:
    """What a rewrite needs to know about the graph: static 4-D shapes, producers, constants."""

    def __init__(self, model):
        import onnx
        from onnx import numpy_helper
        self.model = model
        inferred = onnx.shape_inference.infer_shapes(model)
        self._shapes = {vi.name: [d.dim_value if d.HasField("dim_value") else None
                                  for d in vi.type.tensor_type.shape.dim]
                        for vi in list(inferred.graph.value_info) + list(inferred.graph.input)}
        self.producer = {o: n for n in model.graph.node for o in n.output}
        self.consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}

    def shape4d(self, name: str) -> Optional[list]:
        """``[N, C, H, W]`` of a tensor whose C, H, W are static, else None."""
        shape = self._shapes.get(name)
        return shape if shape is not None and len(shape) == 4 and None not in shape[1:] else None

    def const(self, name: str):
        return self.consts.get(name) if name else None

    def add_const(self, array: np.ndarray, name: str) -> str:
        from onnx import numpy_helper
        self.model.graph.initializer.append(numpy_helper.from_array(array, name))
        return name


def _rewrite(model, op_type: str, replace: Callable) -> int:
    """Replace nodes of ``op_type`` in place: ``replace(node, attrs, graph)`` returns the nodes that stand
    for it, or None to keep it. Returns how many were replaced; the graph is checked after a change."""
    import onnx
    from onnx import helper

    if not any(n.op_type == op_type for n in model.graph.node):
        return 0
    graph = _Graph(model)
    done, nodes = 0, []
    for node in model.graph.node:
        new = None
        if node.op_type == op_type:
            new = replace(node, {a.name: helper.get_attribute_value(a) for a in node.attribute}, graph)
        nodes.extend(new if new is not None else [node])
        done += new is not None
    if done:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        onnx.checker.check_model(model)
    return done


def zero_pad_maxpool(model) -> int:
    """Give every padded ``MaxPool`` fed by a ``Relu`` an explicit zero ``Pad``, in place.

    ONNX pads MaxPool with -inf. onnx2tf writes that padding as a PADV2 with -FLT_MAX, and the int8
    quantiser then sees a range of [-3.4e38, x]: the ResNet stem got an activation scale of 1.3e36 and
    XNNPACK refused to prepare the graph. After a ReLU every value is >= 0, and every pooling window
    holds at least one real value (pad < kernel), so padding with 0 gives exactly the same maximum.

    Parameters
    ----------
    model : onnx.ModelProto
        Changed in place.

    Returns
    -------
    int
        How many MaxPool nodes were rewritten.
    """
    from onnx import helper

    def replace(node, attrs, graph):
        pads = list(attrs.get("pads", []))
        src = graph.producer.get(node.input[0])
        if src is None or src.op_type != "Relu" or not any(pads) or attrs.get("auto_pad", b"NOTSET") != b"NOTSET":
            return None
        k, name = len(pads) // 2, f"{node.name or node.output[0]}_zero_pad"
        pads_name = graph.add_const(np.array([0, 0] + pads[:k] + [0, 0] + pads[k:], np.int64), f"{name}_pads")
        pad = helper.make_node("Pad", [node.input[0], pads_name], [f"{name}_out"], name=name, mode="constant")
        pool = helper.make_node("MaxPool", [f"{name}_out"], list(node.output), name=node.name,
                                **{key: [0] * len(pads) if key == "pads" else value for key, value in attrs.items()})
        return [pad, pool]
    return _rewrite(model, "MaxPool", replace)


def average_pool_as_depthwise_conv(model) -> int:
    """Rewrite unpadded ``AveragePool`` nodes as depthwise ``Conv`` with weights 1/(kh*kw), in place.

    LiteRT's XNNPACK delegate runs AVERAGE_POOL_2D in float but not in int8: SCRFD-2.5G's three 2x2
    average pools split its int8 graph into 4 partitions. A depthwise convolution with equal weights
    is the same average (1/4 is exact in int8 per-channel weights) and runs in XNNPACK at every
    precision. Only pools without padding whose windows tile the input exactly are rewritten (there
    ``ceil_mode`` and ``count_include_pad`` change nothing).

    Returns
    -------
    int
        How many AveragePool nodes were rewritten.
    """
    from onnx import helper

    def replace(node, attrs, graph):
        shape = graph.shape4d(node.input[0])
        k, st = list(attrs.get("kernel_shape", [])), list(attrs.get("strides", [1, 1]))
        if (shape is None or len(k) != 2 or any(attrs.get("pads", [0])) or attrs.get("auto_pad", b"NOTSET") != b"NOTSET"
                or any((n - kk) % ss for n, kk, ss in zip(shape[2:], k, st))):
            return None
        c, name = shape[1], node.name or node.output[0]
        taps = graph.add_const(np.full((c, 1, k[0], k[1]), 1.0 / (k[0] * k[1]), np.float32), f"{name}_mean_taps")
        return [helper.make_node("Conv", [node.input[0], taps], list(node.output), name=f"{name}_dw",
                                 kernel_shape=k, strides=st, group=c)]
    return _rewrite(model, "AveragePool", replace)


def nearest_upsample_as_transposed_conv(model) -> int:
    """Rewrite every nearest-neighbour 2x ``Resize`` as a stride-2 ``ConvTranspose`` with identity taps, in place.

    LiteRT's XNNPACK delegate does not take RESIZE_NEAREST_NEIGHBOR (measured: a lone resize between
    two delegated ops splits the graph in two), so each of SCRFD's two FPN upsamplings split its graph:
    3 XNNPACK partitions in fp32, 6 in int8. A transposed convolution with a 2x2 kernel whose every tap
    is the C x C identity, stride 2, writes ``x[c, h, w]`` to all four ``(2h + i, 2w + j)``: exactly the
    asymmetric/floor nearest upsampling, and TRANSPOSE_CONV runs in XNNPACK (fp32 and int8). Only static
    2x resizes of a known 4-D shape are rewritten.

    Returns
    -------
    int
        How many Resize nodes were rewritten.
    """
    from onnx import helper

    def replace(node, attrs, graph):
        shape = graph.shape4d(node.input[0])
        scales = graph.const(node.input[2]) if len(node.input) > 2 else None
        sizes = graph.const(node.input[3]) if len(node.input) > 3 else None
        if shape is None:
            return None
        twice = [shape[1], 2 * shape[2], 2 * shape[3]]
        is_2x = ((sizes is not None and sizes.size == 4 and list(sizes[1:]) == twice)
                 or ((sizes is None or sizes.size == 0) and scales is not None and list(scales) == [1, 1, 2, 2]))
        plain = (attrs.get("mode") == b"nearest" and attrs.get("coordinate_transformation_mode") == b"asymmetric"
                 and attrs.get("nearest_mode", b"round_prefer_floor") == b"floor")
        if not (is_2x and plain):
            return None
        c, name = shape[1], node.name or node.output[0]
        weight = np.zeros((c, c, 2, 2), np.float32)  # ONNX ConvTranspose: (C_in, C_out / group, kH, kW)
        weight[np.arange(c), np.arange(c)] = 1.0
        taps = graph.add_const(weight, f"{name}_identity_taps")
        return [helper.make_node("ConvTranspose", [node.input[0], taps], list(node.output), name=f"{name}_up2",
                                 kernel_shape=[2, 2], strides=[2, 2])]
    return _rewrite(model, "Resize", replace)


def hard_activations_decomposed(model) -> int:
    """Rewrite ``HardSwish`` and ``HardSigmoid`` nodes as ADD/RELU/SUB/MUL (and CLIP) nodes, in place.

    The same functions, written as :class:`~headpose.convert.models.pose.DecomposedHardswish` and
    ``DecomposedHardsigmoid`` write them for checkpoints: ``x * (relu(x + 3) - relu(x - 3)) * (1/6)``
    and ``clip(alpha * x + beta, 0, 1)`` (``clip(x + 3, 0, 6) * (1/6)`` for PyTorch's alpha = 1/6,
    beta = 1/2). LiteRT's XNNPACK runs no int8 HARD_SWISH, so every one left in a MobileNetV3 graph
    (an upstream ``.onnx`` export holds them natively) split the int8 graph into its own partition.

    Returns
    -------
    int
        How many nodes were rewritten.
    """
    from onnx import helper
    names = {}

    def const(graph, value: float, tag: str) -> str:
        if tag not in names:
            names[tag] = graph.add_const(np.array(value, np.float32), f"hard_act_{tag}")
        return names[tag]

    def hardswish(node, attrs, graph):
        x, y, n = node.input[0], node.output[0], node.name or node.output[0]
        three, sixth = const(graph, 3.0, "three"), const(graph, 1.0 / 6.0, "sixth")
        return [helper.make_node("Add", [x, three], [f"{n}_p3"]),
                helper.make_node("Relu", [f"{n}_p3"], [f"{n}_r1"]),
                helper.make_node("Sub", [x, three], [f"{n}_m3"]),
                helper.make_node("Relu", [f"{n}_m3"], [f"{n}_r2"]),
                helper.make_node("Sub", [f"{n}_r1", f"{n}_r2"], [f"{n}_gate"]),
                helper.make_node("Mul", [x, f"{n}_gate"], [f"{n}_xg"]),
                helper.make_node("Mul", [f"{n}_xg", sixth], [y], name=n)]

    def hardsigmoid(node, attrs, graph):
        x, y, n = node.input[0], node.output[0], node.name or node.output[0]
        alpha, beta = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
        if abs(alpha - 1.0 / 6.0) < 1e-6 and abs(beta - 0.5) < 1e-6:
            return [helper.make_node("Add", [x, const(graph, 3.0, "three")], [f"{n}_p3"]),
                    helper.make_node("Clip", [f"{n}_p3", const(graph, 0.0, "zero"), const(graph, 6.0, "six")],
                                     [f"{n}_c"]),
                    helper.make_node("Mul", [f"{n}_c", const(graph, 1.0 / 6.0, "sixth")], [y], name=n)]
        return [helper.make_node("Mul", [x, graph.add_const(np.array(alpha, np.float32), f"{n}_alpha")], [f"{n}_ax"]),
                helper.make_node("Add", [f"{n}_ax", graph.add_const(np.array(beta, np.float32), f"{n}_beta")],
                                 [f"{n}_axb"]),
                helper.make_node("Clip", [f"{n}_axb", const(graph, 0.0, "zero"), const(graph, 1.0, "one")], [y],
                                 name=n)]
    return _rewrite(model, "HardSwish", hardswish) + _rewrite(model, "HardSigmoid", hardsigmoid)
