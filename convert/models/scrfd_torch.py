"""SCRFD as a PyTorch module built from the ONNX file itself (the CoreML route of the detector).

coremltools has no ONNX frontend any more, so the detector reaches CoreML through PyTorch. Rather than
re-typing InsightFace's architecture and hoping it matches, :class:`ScrfdTorch` replays the ONNX graph
node by node with PyTorch operators: every ``Conv`` becomes an ``nn.Conv2d`` holding the ONNX
initialisers (weights and biases copied bit for bit), and the few other operators SCRFD uses
(``Relu``, ``Add``, ``Sigmoid``, nearest ``Resize`` and the shape arithmetic feeding it,
``Transpose``/``Reshape`` of the heads) map one to one onto PyTorch functions. An operator outside
this set raises :class:`ConversionError` naming it, so a different detector is refused rather than
silently mis-converted.

The module takes what the ONNX model takes (``[1, 3, S, S]`` float32, RGB ``(x - 127.5) / 128``) and
returns the nine raw outputs as ``[1, N, C]`` tensors in the fixed order of :data:`OUTPUT_ORDER`
(score, bbox, kps at strides 8, 16, 32), found by shape as in
:class:`headpose.convert.facedata.OnnxFaceDetector`, never by the ONNX output order. Equivalence with
ONNX Runtime on real images is checked by :func:`compare_with_onnx` (raw outputs and decoded faces)
before any conversion uses it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...runtime.errors import ConversionError, InputError
from ...runtime.registry import SCRFD_DECODE

log = logging.getLogger(__name__)

KINDS = {1: "score", 4: "bbox", 10: "kps"}
#: (role, stride) of the module's outputs, in order; CoreML names them ``{role}_{stride}``.
OUTPUT_ORDER: Tuple[Tuple[str, int], ...] = tuple((r, s) for r in ("score", "bbox", "kps")
                                                  for s in SCRFD_DECODE["strides"])
SUPPORTED_OPS = ("Conv", "Relu", "Add", "Mul", "Sigmoid", "MaxPool", "AveragePool", "Resize", "Transpose",
                 "Reshape", "Shape", "Gather", "Unsqueeze", "Slice", "Concat")


def output_name(role: str, stride: int) -> str:
    """Tensor name of one detector output in the CoreML model, e.g. ``score_8``."""
    return f"{role}_{stride}"


def _attrs(node) -> Dict:
    import onnx
    from onnx import numpy_helper
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        elif isinstance(v, bytes):
            v = v.decode()
        out[a.name] = v
    return out


class ScrfdTorch(nn.Module):
    """The SCRFD ONNX graph replayed in PyTorch.

    Parameters
    ----------
    onnx_path : path
        SCRFD with keypoints (``scrfd_500m_bnkps.onnx``, ``scrfd_2.5g_bnkps.onnx``, or a fixed-size
        variant); input ``[1, 3, H, W]``.
    input_size : int
        Square input side S used to assign the outputs to (role, stride) (640 by default).

    Raises
    ------
    ConversionError
        For an operator or attribute this replay does not implement, or outputs that are not SCRFD's
        nine score/bbox/kps tensors.
    InputError
        When the file is not an ONNX model.
    """

    def __init__(self, onnx_path: Union[str, Path], input_size: int = 640):
        super().__init__()
        import onnx
        from onnx import numpy_helper
        path = Path(onnx_path)
        if not path.is_file():
            raise InputError(f"SCRFD ONNX '{path}' does not exist: expected e.g. scrfd_500m_bnkps.onnx")
        try:
            model = onnx.load(str(path))
        except Exception as e:
            raise InputError(f"'{path}' could not be read as an ONNX model ({type(e).__name__}); "
                             f"expected an SCRFD .onnx file") from None
        g = model.graph
        inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        inputs = [i.name for i in g.input if i.name not in inits]
        if len(inputs) != 1:
            raise ConversionError(f"'{path.name}' has inputs {inputs}; expected the single image input of SCRFD")
        self.input_name = inputs[0]
        self.source = str(path)
        unknown = sorted({n.op_type for n in g.node} - set(SUPPORTED_OPS))
        if unknown:
            raise ConversionError(f"'{path.name}' uses ONNX operator(s) {', '.join(unknown)} that the SCRFD replay "
                                  f"does not implement (supported: {', '.join(SUPPORTED_OPS)}); is this an SCRFD "
                                  f"model with keypoints?")
        self.convs = nn.ModuleDict()
        self.plan: List[Tuple[str, List[str], List[str], Dict]] = []
        self.consts: Dict[str, np.ndarray] = {}
        for i, node in enumerate(g.node):
            a = _attrs(node)
            if node.op_type == "Conv":
                w = inits[node.input[1]]
                b = inits[node.input[2]] if len(node.input) > 2 and node.input[2] else None
                pads = list(a.get("pads", [0, 0, 0, 0]))
                if pads[:2] != pads[2:] or a.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET"):
                    raise ConversionError(f"Conv node {node.name or i} has asymmetric/auto padding {pads}; "
                                          f"not implemented by the SCRFD replay")
                groups = int(a.get("group", 1))
                conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), tuple(a.get("strides", [1, 1])),
                                 tuple(pads[:2]), tuple(a.get("dilations", [1, 1])), groups, bias=b is not None)
                with torch.no_grad():
                    conv.weight.copy_(torch.from_numpy(np.array(w, np.float32)))
                    if b is not None:
                        conv.bias.copy_(torch.from_numpy(np.array(b, np.float32)))
                key = f"c{len(self.convs)}"
                self.convs[key] = conv
                a = {"conv": key}
                ins = [node.input[0]]
            else:
                if node.op_type in ("MaxPool", "AveragePool"):
                    pads = list(a.get("pads", [0, 0, 0, 0]))
                    if pads[:2] != pads[2:] or a.get("auto_pad", "NOTSET") != "NOTSET" \
                            or list(a.get("dilations", [1, 1])) != [1, 1] or len(a["kernel_shape"]) != 2:
                        raise ConversionError(f"{node.op_type} node {node.name or i} ({a}) is not the symmetric 2-D "
                                              f"pooling the replay implements")
                if node.op_type == "AveragePool" and int(a.get("count_include_pad", 0)) and any(a.get("pads", [])):
                    raise ConversionError(f"AveragePool node {node.name or i} counts padding; not implemented")
                if node.op_type == "Resize":
                    mode = a.get("mode", "nearest")
                    if mode != "nearest" or a.get("coordinate_transformation_mode") != "asymmetric" \
                            or a.get("nearest_mode", "round_prefer_floor") != "floor":
                        raise ConversionError(f"Resize node {node.name or i} ({mode}, "
                                              f"{a.get('coordinate_transformation_mode')}, {a.get('nearest_mode')}) "
                                              f"is not the nearest/asymmetric/floor resize the replay implements")
                ins = list(node.input)
                for n in ins:
                    if n in inits:
                        self.consts[n] = inits[n]
            self.plan.append((node.op_type, ins, list(node.output), a))
        self.onnx_outputs = [o.name for o in g.output]
        self.input_size = int(input_size)
        self.order = self._assign_outputs()

    # -- the replay ------------------------------------------------------------------------------
    def _run(self, x: torch.Tensor) -> Dict[str, object]:
        v: Dict[str, object] = {self.input_name: x}
        for name, arr in self.consts.items():
            v[name] = arr
        for op, ins, outs, a in self.plan:
            i = [v[n] if n else None for n in ins]
            if op == "Conv":
                y = self.convs[a["conv"]](i[0])
            elif op == "Relu":
                y = F.relu(i[0])
            elif op == "Sigmoid":
                y = torch.sigmoid(i[0])
            elif op in ("Add", "Mul"):
                a0, a1 = (t if isinstance(t, torch.Tensor) else torch.from_numpy(np.array(t, np.float32)) for t in i[:2])
                y = a0 + a1 if op == "Add" else a0 * a1
            elif op in ("MaxPool", "AveragePool"):
                k = [int(v) for v in a["kernel_shape"]]
                st = [int(v) for v in a.get("strides", [1, 1])]
                pd = [int(v) for v in a.get("pads", [0, 0, 0, 0])[:2]]
                ceil = bool(a.get("ceil_mode", 0))
                y = (F.max_pool2d(i[0], k, st, pd, ceil_mode=ceil) if op == "MaxPool"
                     else F.avg_pool2d(i[0], k, st, pd, ceil_mode=ceil, count_include_pad=False))
            elif op == "Transpose":
                y = i[0].permute(*[int(p) for p in a["perm"]])
            elif op == "Reshape":
                y = i[0].reshape([int(s) for s in np.asarray(i[1]).reshape(-1)])
            elif op == "Shape":  # shape arithmetic is done on Python ints (static once traced)
                y = [int(s) for s in i[0].shape]
            elif op == "Gather":
                if int(a.get("axis", 0)) != 0:
                    raise ConversionError("Gather on an axis other than 0 is not implemented by the SCRFD replay")
                idx = np.asarray(i[1])
                y = i[0][int(idx)] if idx.ndim == 0 else [i[0][int(k)] for k in idx.reshape(-1)]
            elif op == "Unsqueeze":
                y = [i[0]] if not isinstance(i[0], list) else [i[0]]
            elif op == "Slice":
                seq = list(np.asarray(i[0]).reshape(-1)) if not isinstance(i[0], list) else i[0]
                start, end = int(np.asarray(i[1]).reshape(-1)[0]), int(np.asarray(i[2]).reshape(-1)[0])
                step = int(np.asarray(i[4]).reshape(-1)[0]) if len(i) > 4 and i[4] is not None else 1
                y = [int(s) for s in seq[start:end:step]]
            elif op == "Concat":
                y = [int(s) for part in i for s in (part if isinstance(part, list) else np.asarray(part).reshape(-1))]
            elif op == "Resize":
                sizes = i[3] if len(i) > 3 and i[3] is not None and len(np.asarray(i[3]).reshape(-1)) else None
                if sizes is not None:
                    y = F.interpolate(i[0], size=[int(s) for s in list(sizes)[2:]], mode="nearest")
                else:
                    scales = [float(s) for s in np.asarray(i[2]).reshape(-1)[2:]]
                    y = F.interpolate(i[0], scale_factor=scales, mode="nearest")
            else:  # pragma: no cover - refused in __init__
                raise ConversionError(f"ONNX operator {op} is not implemented by the SCRFD replay")
            for n in outs:
                v[n] = y
        return v

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Raw SCRFD outputs.

        Parameters
        ----------
        x : Tensor, (1, 3, S, S), float32, RGB normalised ``(pixel - 127.5) / 128``

        Returns
        -------
        tuple of 9 Tensors, ``[1, N, C]`` float32, in the order of :data:`OUTPUT_ORDER`:
        scores (sigmoid, C=1), box distances (C=4) and keypoint offsets (C=10) in stride units.
        """
        v = self._run(x)
        outs = []
        for role, stride in OUTPUT_ORDER:
            t = v[self.onnx_outputs[self.order[(role, stride)]]]
            outs.append(t.reshape(1, -1, t.shape[-1]))
        return tuple(outs)

    def _assign_outputs(self) -> Dict[Tuple[str, int], int]:
        s = self.input_size
        with torch.no_grad():
            v = self._run(torch.zeros(1, 3, s, s))
        na = SCRFD_DECODE["anchors_per_cell"]
        by_n = {(s // st) ** 2 * na: st for st in SCRFD_DECODE["strides"]}
        order = {}
        for k, name in enumerate(self.onnx_outputs):
            shape = tuple(v[name].shape)
            n, c = int(np.prod(shape[:-1])), int(shape[-1])
            if n not in by_n or c not in KINDS:
                raise ConversionError(f"ONNX output '{name}' of shape {shape} does not fit SCRFD strides "
                                      f"{SCRFD_DECODE['strides']} with {na} anchors at input {s}; is this an SCRFD "
                                      f"model with keypoints?")
            order[(KINDS[c], by_n[n])] = k
        missing = [rs for rs in OUTPUT_ORDER if rs not in order]
        if missing:
            raise ConversionError(f"SCRFD outputs {missing} were not found among {self.onnx_outputs}")
        return order


def compare_with_onnx(module: ScrfdTorch, frames: Sequence[np.ndarray], score_threshold: float = 0.5,
                      nms_threshold: float = 0.4) -> Dict[str, object]:
    """Run ``module`` and ONNX Runtime on the same real frames and compare raw outputs and faces.

    Both get the same letterboxed, normalised blob (:meth:`OnnxFaceDetector.blob`); both raw outputs
    are decoded by the runtime's :func:`~headpose.runtime.scrfd.decode_scrfd`.

    Parameters
    ----------
    frames : sequence of ndarray, (H, W, 3), uint8, BGR

    Returns
    -------
    dict
        ``max_abs_diff`` per role (over all strides and frames), ``faces_onnx`` / ``faces_torch``
        (counts summed over frames), ``min_matched_iou`` (each ONNX face against its
        best-overlapping torch face), ``max_score_diff`` and ``max_kps_diff_px`` (frame pixels) of
        those pairs, ``frames``.
    """
    from ...runtime.scrfd import box_iou, decode_scrfd
    from ..facedata import OnnxFaceDetector
    det = OnnxFaceDetector(module.source, module.input_size, score_threshold, nms_threshold)
    s = module.input_size
    diffs = {"score": 0.0, "bbox": 0.0, "kps": 0.0}
    n_onnx = n_torch = 0
    min_iou, max_sd, max_kd = 1.0, 0.0, 0.0
    for frame in frames:
        blob, scale = det.blob(frame)
        ref = det.raw(blob)
        with torch.no_grad():
            got = dict(zip(OUTPUT_ORDER, (t.numpy() for t in module(torch.from_numpy(blob)))))
        for key, arr in got.items():
            r = np.asarray(ref[key], np.float32).reshape(arr.shape)
            diffs[key[0]] = max(diffs[key[0]], float(np.abs(arr - r).max()))
        args = ((s, s), SCRFD_DECODE["strides"], SCRFD_DECODE["anchors_per_cell"], score_threshold,
                nms_threshold, scale)
        d_ref, k_ref = decode_scrfd(ref, *args)
        d_got, k_got = decode_scrfd(got, *args)
        n_onnx += len(d_ref)
        n_torch += len(d_got)
        if len(d_ref) and len(d_got):  # each ONNX face against its best-overlapping torch face
            iou = box_iou(d_ref, d_got)
            j = iou.argmax(axis=1)
            min_iou = min(min_iou, float(iou.max(axis=1).min()))
            max_sd = max(max_sd, float(np.abs(d_ref[:, 4] - d_got[j, 4]).max()))
            max_kd = max(max_kd, float(np.abs(k_ref - k_got[j]).max()))
        elif len(d_ref):
            min_iou = 0.0
    return {"frames": len(frames), "max_abs_diff": diffs, "faces_onnx": n_onnx, "faces_torch": n_torch,
            "min_matched_iou": min_iou, "max_score_diff": max_sd, "max_kps_diff_px": max_kd}
