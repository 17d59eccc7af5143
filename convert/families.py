"""Model families: what differs between converting a head-pose network and an SCRFD detector.

The conversion pipeline (:mod:`headpose.convert.pipeline`) asks every model the same questions and
never branches on the task itself; a family answers them:

=====================  ==========================================================================
``make_onnx``          the source (checkpoint / ONNX) as a raw ONNX graph + the manifest's source facts
``data``               the real calibration and parity inputs (:mod:`headpose.convert.calibration`)
``reference``          what the source model answers on the parity inputs
``outputs``            the artifact's output tensors with their roles (and strides)
``decode``             the manifest's ``decode`` section
``parity``             the artifact against the reference (:mod:`headpose.convert.parity`)
``int8_gate``          the int8 accuracy gate and its remedies (``gates_int8``: pose only)
``summary``            one line of parity figures for logs and errors
=====================  ==========================================================================

A new family (another detector, a landmark model) is one more class here and one entry in
:data:`FAMILIES`; the pipeline does not change.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..runtime.errors import CheckpointError, ConversionError, InputError
from ..runtime.manifest import Manifest, TensorSpec
from . import calibration as calib_mod
from . import parity as parity_mod
from .steps import onnx_export

log = logging.getLogger(__name__)

SCRFD_ROLE_ORDER = {"score": 0, "bbox": 1, "kps": 2}


class ModelFamily:
    """The questions the pipeline asks about a model (see the module docstring). ``job`` is the
    pipeline's conversion job: ``spec``, ``src``, ``src_kind``, ``size``, ``fmt``, ``precision``,
    ``calib``, ``detector``, ``work``, ``data`` and ``reference`` once those steps ran."""

    task = ""

    def make_onnx(self, job, dst: Path) -> Dict:
        """Write the source model as ONNX to ``dst``; return the manifest's ``source`` facts."""
        raise NotImplementedError

    def data(self, job, need_calibration: bool):
        """Real calibration / parity inputs (an object with ``calibration``, ``parity``, ``sample_rgb01``, ``info``)."""
        raise NotImplementedError

    def reference(self, job, inputs_nhwc: np.ndarray, onnx_path: Path):
        """The source model's answers on ``inputs_nhwc`` (N, H, W, 3) float32, normalised."""
        raise NotImplementedError

    def reference_name(self, job) -> str:
        raise NotImplementedError

    def outputs(self, job, model_file: Path, inp: TensorSpec, outs) -> List[TensorSpec]:
        """The artifact's outputs ``[(name, shape, dtype)]`` as tensor specs with roles."""
        raise NotImplementedError

    def decode(self, job) -> Dict:
        """The manifest's ``decode`` section: the registry's facts."""
        return dict(job.spec.decode)

    def parity(self, runner, job) -> Dict:
        raise NotImplementedError

    def gates_int8(self, job) -> bool:
        """Whether this model's int8 conversion has an accuracy gate (:meth:`int8_gate`; the TFLite
        backend asks)."""
        return False

    def int8_gate(self, job, saved_model: Path, model_file: Path) -> Optional[Dict]:
        """Enforce the int8 gate (may replace ``model_file``); its record for the manifest."""
        raise NotImplementedError

    def summary(self, r: Dict) -> str:
        raise NotImplementedError


class PoseFamily(ModelFamily):
    """6DRepNet-style head-pose networks: yakhyo/head-pose-estimation checkpoints or ONNX exports."""

    task = "head_pose"

    def make_onnx(self, job, dst: Path) -> Dict:
        if job.src_kind == "onnx":
            check_pose_onnx_architecture(job.spec.model_id, job.src)
            info = onnx_export.cut_pose_onnx(job.src, dst)
            job.torch_model = None
            return {"kind": "pose_onnx", **info}
        from .checkpoint import load_pose_checkpoint
        job.torch_model, ckpt = load_pose_checkpoint(job.spec.model_id, job.src)
        onnx_export.export_pose(job.torch_model, dst, job.size)
        return {"kind": "pose_checkpoint", "opset": onnx_export.OPSET, "checkpoint": ckpt.to_dict()}

    def data(self, job, need_calibration: bool):
        return calib_mod.pose_data(job.spec, job.calib, job.size, need_calibration, job.detector, gate=job.gate_data)

    def reference(self, job, inputs_nhwc: np.ndarray, onnx_path: Path) -> np.ndarray:
        """(N, 3, 3) reference rotations."""
        nchw = np.ascontiguousarray(inputs_nhwc.transpose(0, 3, 1, 2))
        if job.src_kind == "checkpoint":
            import torch
            from ..runtime.rotation import rotation_from_6d
            with torch.no_grad():
                v6 = job.torch_model(torch.from_numpy(nchw)).numpy()
            return rotation_from_6d(v6.astype(np.float64))
        return onnx_pose_reference(job.src, nchw)

    def reference_name(self, job) -> str:
        return "source PyTorch model" if job.src_kind == "checkpoint" else "source ONNX in onnxruntime"

    def outputs(self, job, model_file: Path, inp: TensorSpec, outs) -> List[TensorSpec]:
        if len(outs) != 1:
            raise ConversionError(f"pose model has {len(outs)} outputs; expected the 6-vector only")
        (name, shape, dtype), = outs
        return [TensorSpec(name=name, shape=shape, dtype=dtype, role="ortho6d")]

    def parity(self, runner, job) -> Dict:
        return parity_mod.pose_parity(runner, job.data.parity, job.reference, job.precision)

    def gates_int8(self, job) -> bool:
        return job.precision == "int8"  # asked by backends that have the gate (TFLite); max_int8_error None: recorded

    def int8_gate(self, job, saved_model: Path, model_file: Path) -> Optional[Dict]:
        from .int8_gate import enforce
        calib_ref = self.reference(job, np.asarray(job.data.calibration, np.float32), None)  # figures per set
        return enforce(saved_model, model_file, job.data.calibration, job.data.parity, job.reference,
                       job.max_int8_error, job.max_int8_p99, work=job.work,
                       allow_slower_than_float=job.allow_slow_int8, calibration_reference=calib_ref,
                       first=job.int8_remedy)

    def summary(self, r: Dict) -> str:
        return (f"rotation (geodesic) max {r['geodesic_max_deg']:.4f} deg, mean {r['geodesic_mean_deg']:.4f} deg; "
                f"Euler max {r['euler_max_deg']:.4f} deg (at reference yaw {r['euler_worst_yaw_deg']:.0f}), mean "
                f"{r['euler_mean_deg']:.4f} deg; on {r['samples']} real face crops, batch4-vs-single "
                f"{r['batch4_vs_single_max_abs']:.2e}")


class DetectorFamily(ModelFamily):
    """SCRFD face detectors (InsightFace ONNX, any input size; fixed to the artifact's)."""

    task = "face_detection"

    def make_onnx(self, job, dst: Path) -> Dict:
        det = onnx_export.fix_scrfd_input(job.src, dst, job.size)
        # validates the outputs (score/bbox/kps at strides 8/16/32) on the fixed input size
        from .facedata import OnnxFaceDetector
        OnnxFaceDetector(det, job.size, model_id=job.spec.model_id)
        return {"kind": "scrfd_onnx"}

    def data(self, job, need_calibration: bool):
        return calib_mod.detector_data(job.spec, job.calib, job.size, need_calibration)

    def reference(self, job, inputs_nhwc: np.ndarray, onnx_path: Path) -> list:
        """Raw ``{(role, stride): array}`` of the source ONNX per parity frame."""
        from .facedata import OnnxFaceDetector
        nchw = np.ascontiguousarray(inputs_nhwc.transpose(0, 3, 1, 2))
        det = OnnxFaceDetector(job.work / "source.onnx", job.size, model_id=job.spec.model_id)
        return [det.raw(nchw[i:i + 1]) for i in range(len(nchw))]

    def reference_name(self, job) -> str:
        return "source ONNX in onnxruntime (input fixed to the artifact size)"

    def decode(self, job) -> Dict:
        return {**job.spec.decode, "input_size": [job.size, job.size]}

    def outputs(self, job, model_file: Path, inp: TensorSpec, outs) -> List[TensorSpec]:
        """(role, stride) of every artifact output, by comparing values with the reference."""
        probe = Manifest(id="probe", model=job.spec.model_id, task=self.task, format=job.fmt,
                         precision=job.precision, file=model_file.name, input=inp,
                         outputs=[TensorSpec(name=n, shape=s, dtype=d, role="raw") for n, s, d in outs],
                         decode=self.decode(job), directory=model_file.parent)
        runner = parity_mod.ArtifactRunner(probe)
        # the parity frame with the most reference detections is the most telling
        counts = [len(parity_mod.decode(r, probe)) for r in job.reference]
        i = int(np.argmax(counts))
        mapping = parity_mod.map_outputs_by_values(runner(job.data.parity[i:i + 1]), job.reference[i])
        return [TensorSpec(name=n, shape=s, dtype=d, role=mapping[n][0], stride=mapping[n][1])
                for n, s, d in sorted(outs, key=lambda o: (SCRFD_ROLE_ORDER[mapping[o[0]][0]], mapping[o[0]][1]))]

    def parity(self, runner, job) -> Dict:
        return parity_mod.detector_parity(runner, job.data.parity, job.reference, job.precision)

    def summary(self, r: Dict) -> str:
        return (f"mean IoU {r['mean_iou']:.4f}, min IoU {r['min_iou']:.4f}, matched {r['matched']}/"
                f"{r['reference_faces']} faces (recall {r['recall']:.3f}), {r['extra_detections']} extra, "
                f"on {r['frames']} real frames")


FAMILIES = {f.task: f for f in (PoseFamily(), DetectorFamily())}


def family_of(spec) -> ModelFamily:
    """The family converting a registry model (by its task)."""
    try:
        return FAMILIES[spec.task]
    except KeyError:
        raise InputError(f"model '{spec.model_id}' is a {spec.task} model; the converter knows the families "
                         f"{', '.join(FAMILIES)}") from None


# -- pose ONNX sources ----------------------------------------------------------------------------
def _conv_kernel_shapes(model_id: str) -> Counter:
    from torch import nn
    from .models import build_pose_model
    return Counter(tuple(m.weight.shape) for m in build_pose_model(model_id).modules() if isinstance(m, nn.Conv2d))


def check_pose_onnx_architecture(model_id: str, src: Path) -> None:
    """A pose ONNX must hold the convolution kernels of ``model_id`` (batch norm folds into them, so
    their shapes survive export). A graph that fits another registered backbone is refused with
    that backbone named; one that fits none is converted with a warning (a modified network)."""
    from ..runtime.registry import POSE_MODELS
    model = onnx_export.load_onnx(src)
    kernels = Counter(tuple(int(d) for d in i.dims) for i in model.graph.initializer if len(i.dims) == 4)
    if not kernels:  # kernels may be Constant nodes in some exports: nothing to compare
        return
    if kernels == _conv_kernel_shapes(model_id):
        return
    other = next((m for m in POSE_MODELS if m != model_id and kernels == _conv_kernel_shapes(m)), None)
    if other:
        raise CheckpointError(f"pose ONNX '{src}' does not fit '{model_id}': its {sum(kernels.values())} convolution "
                              f"kernels are those of '{other}'; run with that model id instead")
    log.warning("pose ONNX %s: its convolution kernels match no registered backbone exactly; converting it as "
                "%s all the same (a modified network?)", src.name, model_id)


def onnx_pose_reference(src: Path, nchw: np.ndarray) -> np.ndarray:
    """Rotations (N, 3, 3) of an upstream pose ONNX: its rotation-matrix (or 6-vector) output."""
    import onnxruntime as ort
    from ..runtime.rotation import rotation_from_6d
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    outs = []
    for i in range(len(nchw)):
        res = sess.run(None, {name: nchw[i:i + 1]})
        pick = next((r for r in res if r.shape[-2:] == (3, 3)), None)
        if pick is None:
            pick = next((rotation_from_6d(r.reshape(-1, 6).astype(np.float64)) for r in res if r.size == 6), None)
        if pick is None:
            raise InputError(f"pose ONNX '{src}' has no (3, 3) rotation or 6-vector output; outputs: "
                             f"{[r.shape for r in res]}")
        outs.append(np.asarray(pick, np.float64).reshape(3, 3))
    return np.stack(outs)
