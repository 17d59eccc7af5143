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
    rewritten = zero_pad_maxpool(simplified)
    onnx.save(simplified, str(dst))
    log.info("simplified %s: %d -> %d nodes (%d padded MaxPool after ReLU given an explicit zero Pad)",
             Path(src).name, before, after, rewritten)
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
