"""ONNX step: export a pose backbone, cut an upstream pose ONNX at its 6-vector, fix an SCRFD size.

Every function returns an ``onnx.ModelProto`` (or writes one) whose single input is NCHW float32.
Pose graphs end in the raw 6-vector (B, 6) with a dynamic batch dimension; SCRFD graphs get a
static ``[1, 3, S, S]`` input.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from ...runtime.errors import InputError

log = logging.getLogger(__name__)

OPSET = 17
POSE_INPUT = "input"
POSE_OUTPUT = "ortho6d"


def external_data_files(path: Union[str, Path]) -> List[Path]:
    """The external weight files an ONNX file refers to (torch's dynamo exporter writes ``model.onnx.data``).

    Raises
    ------
    InputError
        When the file is not ONNX, or a referenced data file is missing beside it (naming it and what to do).
    """
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf DecodeError and friends
        raise InputError(f"'{path}' could not be read as an ONNX model ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}); expected a .onnx file") from None
    tensors = list(model.graph.initializer) + [a.t for n in model.graph.node for a in n.attribute if a.HasField("t")]
    locations = sorted({ExternalDataInfo(t).location for t in tensors if uses_external_data(t)})
    files = [path.parent / loc for loc in locations]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise InputError(f"ONNX file '{path}' keeps its weights in the external data file(s) "
                         f"{', '.join(repr(f.name) for f in missing)}, not found in '{path.parent}' (torch's dynamo "
                         f"exporter writes '<model>.onnx.data' beside '<model>.onnx'): copy the data file next to the "
                         f".onnx under the same name, or re-export with external_data=False")
    return files


def load_onnx(path: Union[str, Path]):
    """Read an ONNX file with its external data, raising :class:`InputError` (not a protobuf trace) when it
    is not one or its external data file is missing."""
    import onnx
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ONNX file '{path}' does not exist: expected a .onnx model file")
    external_data_files(path)
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf DecodeError and friends
        raise InputError(f"'{path}' could not be read as an ONNX model ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''}); expected a .onnx file") from None
    if not model.graph.node:
        raise InputError(f"'{path}' is not an ONNX model (its graph has no nodes); expected a .onnx file")
    return model


def export_pose(model, path: Union[str, Path], input_size: int = 224, opset: int = OPSET) -> Path:
    """Export a pose backbone to ONNX: input ``input`` (B, 3, S, S) -> output ``ortho6d`` (B, 6).

    Parameters
    ----------
    model : torch.nn.Module
        In eval mode, forward (B, 3, S, S) -> (B, 6).
    path : path
        Where to write the ``.onnx``.
    input_size : int
        Square input side S.
    opset : int
        ONNX opset (>= 17).

    Returns
    -------
    Path of the written file.
    """
    import copy

    import torch

    from ..models.pose import fold_paired_head, xnnpack_friendly
    path = Path(path)
    model = copy.deepcopy(model)
    if fold_paired_head(model):
        log.info("linear_reg: +/- paired hidden units folded into one Linear (exact)")
    model = xnnpack_friendly(model)  # same maths, ops XNNPACK runs in int8 too
    dummy = torch.zeros(1, 3, input_size, input_size)
    with torch.no_grad():
        torch.onnx.export(model.eval(), (dummy,), str(path), dynamo=False, opset_version=max(opset, OPSET),
                          input_names=[POSE_INPUT], output_names=[POSE_OUTPUT], do_constant_folding=True,
                          dynamic_axes={POSE_INPUT: {0: "batch"}, POSE_OUTPUT: {0: "batch"}})
    return path


def _shape_of(model, name: str) -> Optional[List]:
    for vi in list(model.graph.value_info) + list(model.graph.output) + list(model.graph.input):
        if vi.name == name:
            return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                    for d in vi.type.tensor_type.shape.dim]
    return None


def find_6d_tensor(model) -> str:
    """Name of the tensor holding the raw 6-vector in a pose ONNX graph.

    The 6-vector is the output of the last ``Gemm`` (or ``MatMul`` + ``Add``) node whose result has
    6 features: the ``linear_reg`` head of 6DRepNet-style networks. A graph that already ends in a
    (B, 6) output returns that output.

    Raises
    ------
    InputError
        When no such tensor exists (not a 6D pose graph, e.g. an SCRFD model).
    """
    import onnx
    inferred = onnx.shape_inference.infer_shapes(model)
    for out in inferred.graph.output:
        shape = _shape_of(inferred, out.name)
        if shape and len(shape) == 2 and shape[-1] == 6:
            return out.name
    candidates = []
    for node in inferred.graph.node:
        if node.op_type in ("Gemm", "MatMul", "Add") and node.output:
            shape = _shape_of(inferred, node.output[0])
            if shape and len(shape) == 2 and shape[-1] == 6:
                candidates.append(node)
    gemms = [n for n in candidates if n.op_type == "Gemm"]
    pick = (gemms or candidates)
    if not pick:
        outs = {o.name: _shape_of(inferred, o.name) for o in inferred.graph.output}
        raise InputError(f"the ONNX graph has no (B, 6) tensor from a Gemm/MatMul head (its outputs: {outs}); "
                         f"expected a 6DRepNet-style pose model (yakhyo/head-pose-estimation) ending in a "
                         f"6-output linear layer or the rotation matrix computed from it")
    # the head is the first 6-feature matmul in topological order (Gram-Schmidt adds no others)
    node = pick[0]
    if node.op_type == "MatMul":  # a MatMul followed by a bias Add: take the Add
        for n in inferred.graph.node:
            if n.op_type == "Add" and node.output[0] in n.input:
                return n.output[0]
    return node.output[0]


def cut_pose_onnx(src: Union[str, Path], dst: Union[str, Path]) -> dict:
    """Turn an upstream pose ONNX (ending in a rotation matrix) into one ending in the 6-vector.

    The graph is cut after the ``linear_reg`` head, the input is renamed ``input`` with a dynamic
    batch dimension, and the output ``ortho6d``.

    Returns
    -------
    dict: ``{"cut_at": tensor name, "source_outputs": [names], "source_input": name}``
    """
    import onnx
    from onnx import helper, utils
    model = load_onnx(src)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise InputError(f"pose ONNX '{src}' has {len(inputs)} inputs; expected one image input")
    in_name = inputs[0].name
    cut = find_6d_tensor(model)
    extracted = utils.Extractor(onnx.shape_inference.infer_shapes(model)).extract_model([in_name], [cut])
    g = extracted.graph
    # rename the input and output
    for node in g.node:
        node.input[:] = [POSE_INPUT if n == in_name else (POSE_OUTPUT if n == cut else n) for n in node.input]
        node.output[:] = [POSE_OUTPUT if n == cut else n for n in node.output]
    in_vi = g.input[0]
    in_vi.name = POSE_INPUT
    dims = in_vi.type.tensor_type.shape.dim
    dims[0].ClearField("dim_value")
    dims[0].dim_param = "batch"
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(POSE_OUTPUT, onnx.TensorProto.FLOAT, ["batch", 6]))
    del g.value_info[:]
    onnx.checker.check_model(extracted)
    onnx.save(extracted, str(dst))
    linears = sum(n.op_type in ("Gemm", "MatMul") for n in g.node)
    head = "mlp" if linears >= 2 else "linear"
    log.info("cut pose ONNX %s at '%s' (was %s); head: %d linear layer(s)", Path(src).name, cut,
             [o.name for o in model.graph.output], linears)
    return {"cut_at": cut, "source_outputs": [o.name for o in model.graph.output], "source_input": in_name,
            "head": head}


def fix_scrfd_input(src: Union[str, Path], dst: Union[str, Path], size: int) -> Path:
    """Write ``src`` with a static ``[1, 3, size, size]`` input (SCRFD); outputs keep their names.

    Raises
    ------
    InputError
        When the model is not an image model with one (1, 3, H, W) input, or its fixed input size
        differs from ``size``.
    """
    import onnx
    model = load_onnx(src)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(inputs[0].type.tensor_type.shape.dim) != 4:
        raise InputError(f"'{src}' has inputs {[i.name for i in inputs]}; expected one (1, 3, H, W) image input "
                         f"(an SCRFD face detector ONNX such as scrfd_500m_bnkps.onnx)")
    dims = inputs[0].type.tensor_type.shape.dim
    for axis, want in ((2, size), (3, size)):
        if dims[axis].HasField("dim_value") and dims[axis].dim_value not in (0, want):
            raise InputError(f"'{src}' has a fixed input size {dims[2].dim_value}x{dims[3].dim_value}; "
                             f"--input-size {size} cannot be used with it (pass --input-size {dims[2].dim_value} "
                             f"or the dynamic-size ONNX)")
    for axis, want in enumerate((1, 3, size, size)):
        dims[axis].ClearField("dim_param")
        dims[axis].dim_value = want
    for o in model.graph.output:  # drop stale output shapes; shape inference refills them
        o.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model)
    onnx.save(model, str(dst))
    return Path(dst)


def run_onnx(path: Union[str, Path], x: np.ndarray) -> List[np.ndarray]:
    """Run an ONNX file on one NCHW float32 input with ONNX Runtime (CPU); all outputs in order."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})
