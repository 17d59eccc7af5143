"""Simplify step: onnx-simplifier (constant folding, shape inference) with a numeric check."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Union

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
    onnx.save(simplified, str(dst))
    log.info("simplified %s: %d -> %d nodes (%d padded MaxPool after ReLU given an explicit zero Pad, "
             "%d nearest 2x Resize as an identity ConvTranspose, %d AveragePool as a depthwise Conv)",
             Path(src).name, before, after, pools, resizes, avgpools)
    return Path(dst)


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
    import onnx
    from onnx import helper, numpy_helper
    import numpy as np

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    done, nodes = 0, []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        pads = list(attrs.get("pads", []))
        src = producer.get(node.input[0]) if node.op_type == "MaxPool" else None
        auto = attrs.get("auto_pad", b"NOTSET")
        if src is None or src.op_type != "Relu" or not any(pads) or auto not in (b"NOTSET", "NOTSET"):
            nodes.append(node)
            continue
        k = len(pads) // 2
        name = f"{node.name or node.output[0]}_zero_pad"
        pads_const = numpy_helper.from_array(np.array([0, 0] + pads[:k] + [0, 0] + pads[k:], np.int64),
                                             f"{name}_pads")
        graph.initializer.append(pads_const)
        padded = f"{name}_out"
        nodes.append(helper.make_node("Pad", [node.input[0], pads_const.name], [padded], name=name, mode="constant"))
        del node.attribute[:]
        node.attribute.extend(helper.make_attribute(key, [0] * len(pads) if key == "pads" else value)
                              for key, value in attrs.items())
        node.input[0] = padded
        nodes.append(node)
        done += 1
    if done:
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.checker.check_model(model)
    return done


def _static_shapes(model) -> dict:
    import onnx
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in vi.type.tensor_type.shape.dim]
    return shapes


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
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    shapes = _static_shapes(model)
    done, nodes = 0, []
    for node in model.graph.node:
        shape = shapes.get(node.input[0]) if node.op_type == "AveragePool" else None
        if shape is None or len(shape) != 4 or None in shape[1:]:
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        k, st = list(attrs.get("kernel_shape", [])), list(attrs.get("strides", [1, 1]))
        exact = (len(k) == 2 and not any(attrs.get("pads", [0])) and attrs.get("auto_pad", b"NOTSET") == b"NOTSET"
                 and all((n - kk) % ss == 0 for n, kk, ss in zip(shape[2:], k, st)))
        if not exact:
            nodes.append(node)
            continue
        c = shape[1]
        name = node.name or node.output[0]
        w = numpy_helper.from_array(np.full((c, 1, k[0], k[1]), 1.0 / (k[0] * k[1]), np.float32), f"{name}_mean_taps")
        model.graph.initializer.append(w)
        nodes.append(helper.make_node("Conv", [node.input[0], w.name], [node.output[0]], name=f"{name}_dw",
                                      kernel_shape=k, strides=st, group=c))
        done += 1
    if done:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        onnx.checker.check_model(model)
    return done


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
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    shapes = _static_shapes(model)
    consts = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    done, nodes = 0, []
    for node in model.graph.node:
        shape = shapes.get(node.input[0]) if node.op_type == "Resize" else None
        if shape is None or len(shape) != 4 or None in shape[1:]:
            nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        scales = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        sizes = consts.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        twice = [shape[1], 2 * shape[2], 2 * shape[3]]
        is_2x = ((sizes is not None and sizes.size == 4 and list(sizes[1:]) == twice)
                 or ((sizes is None or sizes.size == 0) and scales is not None and list(scales) == [1, 1, 2, 2]))
        plain = (attrs.get("mode") == b"nearest" and attrs.get("coordinate_transformation_mode") == b"asymmetric"
                 and attrs.get("nearest_mode", b"round_prefer_floor") == b"floor")
        if not (is_2x and plain):
            nodes.append(node)
            continue
        c = shape[1]
        weight = np.zeros((c, c, 2, 2), np.float32)  # ONNX ConvTranspose: (C_in, C_out / group, kH, kW)
        weight[np.arange(c), np.arange(c)] = 1.0
        name = node.name or node.output[0]
        w = numpy_helper.from_array(weight, f"{name}_identity_taps")
        model.graph.initializer.append(w)
        nodes.append(helper.make_node("ConvTranspose", [node.input[0], w.name], [node.output[0]], name=f"{name}_up2",
                                      kernel_shape=[2, 2], strides=[2, 2]))
        done += 1
    if done:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        onnx.checker.check_model(model)
    return done
