"""The conversion pipeline: source model -> ONNX -> simplified ONNX -> (onnx2tf) -> TFLite artifact.

``convert(model_id, weights, fmt, precision, ...)`` builds one artifact directory
``<out_dir>/<model>-<size>-<format>-<precision>/`` holding the model file and ``manifest.json``.
Sources: a pose checkpoint (``.pt``, yakhyo/head-pose-estimation layout), a pose ONNX exported by
that repository (its graph ends in the rotation matrix; it is cut at the 6-vector), or an SCRFD ONNX.
Every conversion ends with a parity gate on real crops / frames; the artifact is assembled in a
temporary directory inside ``out_dir`` and renamed into place only when the gate passes.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from ..runtime.errors import CheckpointError, ConversionError, InputError
from ..runtime.formats import FORMAT_NAMES, precisions_of
from ..runtime.manifest import MANIFEST_NAME, Manifest, TensorSpec, artifact_id, write_json_atomic
from ..runtime.registry import ModelSpec, get_spec
from . import calibration as calib_mod
from . import staging
from . import parity as parity_mod
from .options import ConvertOptions, check_source
from .steps import onnx_export, simplify as simplify_mod, tflite as tflite_mod, tool_versions

log = logging.getLogger(__name__)

# the formats this pipeline builds through onnx2tf / onnxruntime (coreml: convert/steps/coreml.py, same options)
FORMATS = tuple(f for f in FORMAT_NAMES if f != "coreml")
PRECISIONS = precisions_of("tflite")
QUANT_MODE = {"fp32": "none", "fp16": "float16", "int8": "full_integer", "dynamic-int8": "dynamic_range"}


def _is_onnx_file(path: Path) -> bool:
    if path.suffix.lower() == ".onnx":
        return True
    if zipfile.is_zipfile(path):  # torch.save's format
        return False
    with open(path, "rb") as f:
        head = f.read(2)
    return bool(head) and head[0] == 0x08  # ONNX protobuf starts with field 1 (ir_version), varint


def _check_args(model_id: str, weights, fmt: str, precision: str, input_size: Optional[int]
                ) -> Tuple[ModelSpec, Path, int, str]:
    spec = get_spec(model_id)
    if fmt not in FORMATS:
        raise InputError(f"format '{fmt}' is not supported: expected one of {', '.join(FORMATS)}")
    if precision not in PRECISIONS:
        raise InputError(f"precision '{precision}' is not supported: expected one of {', '.join(PRECISIONS)}")
    path, size = check_source(spec, weights, input_size)
    is_onnx = _is_onnx_file(path)
    if spec.task == "face_detection" and not is_onnx:
        raise InputError(f"{model_id} converts from an SCRFD ONNX file (e.g. scrfd_500m_bnkps.onnx); "
                         f"'{path.name}' is not an ONNX file (a PyTorch checkpoint?)")
    return spec, path, size, "onnx" if is_onnx else "checkpoint"


def convert(model_id: str, weights: Union[str, Path], fmt: str = "tflite", precision: str = "fp32",
            calib: Optional[Union[str, Path]] = None, input_size: Optional[int] = None,
            out_dir: Union[str, Path] = "weights/exports", force: bool = False,
            detector: Optional[Union[str, Path]] = None,
            progress: Optional[Callable[[str], None]] = None, max_int8_error: Optional[float] = 0.5,
            allow_slow_int8: bool = False) -> Path:
    """Convert one model into an artifact directory and return its path.

    Parameters
    ----------
    model_id : str
        Registry id (``mobilenetv3_small``, ``scrfd_500m``...).
    weights : path
        Pose: ``.pt`` checkpoint or a yakhyo/head-pose-estimation ``.onnx``. SCRFD: ``.onnx``.
    fmt : {"tflite", "onnx"}
    precision : {"fp32", "fp16", "int8", "dynamic-int8"}
    calib : path, optional
        Video, image or folder of real images: int8 calibration and parity data (default
        ``$HEADPOSE_DATA`` or ``../shared/data/in_video.mp4``).
    input_size : int, optional
        Square input side (registry default: 224 pose, 640 SCRFD).
    out_dir : path
        Parent of the artifact directory.
    force : bool
        Replace an existing artifact.
    detector : path, optional
        SCRFD ONNX that finds faces for pose calibration/parity.
    progress : callable, optional
        Called with one line per finished step.
    max_int8_error : float or None
        int8 pose models: the largest mean pitch/yaw/roll difference (degrees) from the float model
        on real crops (p99 <= 3 degrees too); when plain int8 misses it, remedies are tried and the
        choice is recorded in the manifest (:mod:`headpose.convert.int8_gate`). None: no gate.
    allow_slow_int8 : bool
        Let the gate take a remedy that runs slower than the float32 model (int16 activations, which
        XNNPACK does not run); by default such a remedy is refused and the gate fails.

    Returns
    -------
    Path of the artifact directory ``<out_dir>/<model>-<size>-<fmt>-<precision>``.

    Raises
    ------
    InputError, CheckpointError, UnknownModelError
        Bad arguments or source files.
    ConversionError
        A failed step or parity gate; no artifact is left behind.
    """
    return convert_options(ConvertOptions(
        model=model_id, weights=weights, fmt=fmt, precision=precision, calib=calib, input_size=input_size,
        out=out_dir, detector=detector, force=force, max_int8_error=max_int8_error,
        allow_slow_int8=allow_slow_int8), progress)


def convert_options(opts: ConvertOptions, progress: Optional[Callable[[str], None]] = None) -> Path:
    """:func:`convert` with its arguments as one :class:`ConvertOptions` (what ``headpose convert`` passes)."""
    opts.check()
    out_dir = opts.out
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise InputError(f"--out '{out_dir}' is a file: expected the folder that receives the artifact directory "
                         f"(created when missing); pass another --out")
    if opts.fmt == "coreml":  # PyTorch -> coremltools (SCRFD via its ONNX graph replayed in PyTorch)
        from .steps.coreml import convert_coreml
        return convert_coreml(opts, progress)
    model_id, fmt, precision, force = opts.model, opts.fmt, opts.precision, opts.force
    spec, src, size, src_kind = _check_args(model_id, opts.weights, fmt, precision, opts.input_size)
    out_dir = Path(out_dir)
    aid = artifact_id(model_id, size, fmt, precision)
    final = out_dir / aid
    if final.exists() and not force:
        raise ConversionError(f"artifact '{final}' already exists: pass --force to replace it")
    out_dir.mkdir(parents=True, exist_ok=True)
    staging.sweep(out_dir)  # leftovers of conversions killed with -9
    timings: Dict[str, float] = {}
    t_start = time.perf_counter()
    stage = staging.stage_folder(out_dir, aid)
    work = staging.stage_folder(out_dir, aid, "work")
    keep_work = os.environ.get("HEADPOSE_KEEP_WORK") == "1"
    try:
        job = _Job(spec, src, src_kind, size, fmt, precision, opts.calib, opts.detector, stage, work, timings,
                   progress, opts.max_int8_error, opts.allow_slow_int8)
        manifest = job.run()
        manifest.parity["conversion_seconds"] = round(time.perf_counter() - t_start, 1)
        manifest.parity["step_seconds"] = timings
        write_json_atomic(stage / MANIFEST_NAME, manifest.to_dict())
        staging.publish(stage, final, force)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
        if keep_work:
            log.info("work directory kept: %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    log.info("artifact %s written in %.1f s", final, time.perf_counter() - t_start)
    return final


class _Job:
    """One conversion (internal): holds the paths and does the steps in order."""

    def __init__(self, spec: ModelSpec, src: Path, src_kind: str, size: int, fmt: str, precision: str,
                 calib, detector, stage: Path, work: Path, timings: Dict[str, float], progress,
                 max_int8_error: Optional[float], allow_slow_int8: bool):
        self.spec, self.src, self.src_kind, self.size = spec, src, src_kind, size
        self.max_int8_error, self.allow_slow_int8 = max_int8_error, allow_slow_int8
        self.int8_gate: Optional[Dict] = None
        self.fmt, self.precision, self.calib, self.detector = fmt, precision, calib, detector
        self.stage, self.work, self.timings, self.progress = stage, work, timings, progress
        self.is_pose = spec.task == "head_pose"
        self.source_info: Dict = {}

    def step(self, name: str):
        return staging.timed_step(name, self.timings, self.progress)

    # -- steps ---------------------------------------------------------------------------------
    def run(self) -> Manifest:
        raw_onnx = self.work / "source.onnx"
        onnx_path = self.work / "model.onnx"
        with self.step("onnx"):
            self._make_onnx(raw_onnx)
        with self.step("simplify"):
            with tflite_mod.redirect_fds(self.work / "onnxsim.log"):
                simplify_mod.simplify(raw_onnx, onnx_path)
        need_calib = self.precision == "int8"
        with self.step("data"):
            if self.is_pose:
                self.data = calib_mod.pose_data(self.spec, self.calib, self.size, need_calib, self.detector)
            else:
                self.data = calib_mod.detector_data(self.spec, self.calib, self.size, need_calib)
            log.info("data: %s", {k: v for k, v in self.data.info.items() if k != "sha256"})
        with self.step("reference"):
            self.reference = self._reference(self.data.parity, onnx_path)
        if self.fmt == "tflite":
            with self.step("onnx2tf"):
                saved = tflite_mod.cached_saved_model(onnx_path, self.data.sample_rgb01)
            model_file = self.stage / "model.tflite"
            with self.step(f"quantize-{self.precision}"):
                tflite_mod.quantize(saved, self.precision, model_file,
                                    self.data.calibration if need_calib else None, self.work / "quantize.log")
            if self.precision == "int8" and self.is_pose and self.max_int8_error is not None:
                with self.step("int8-gate"):
                    from .int8_gate import enforce
                    self.int8_gate = enforce(saved, model_file, self.data.calibration, self.data.parity,
                                             self.reference, self.max_int8_error, work=self.work,
                                             allow_slower_than_float=self.allow_slow_int8)
        else:
            model_file = self.stage / "model.onnx"
            with self.step(f"onnx-{self.precision}"):
                from .steps import onnx_quantize
                onnx_quantize.make(onnx_path, self.precision, model_file,
                                   self.data.calibration if need_calib else None, self.work)
        with self.step("manifest"):
            manifest = self._manifest(model_file)
            write_json_atomic(self.stage / MANIFEST_NAME, manifest.to_dict())
        with self.step("parity"):
            runner = parity_mod.ArtifactRunner(self.stage)
            if self.is_pose:
                result = parity_mod.pose_parity(runner, self.data.parity, self.reference, self.precision)
            else:
                result = parity_mod.detector_parity(runner, self.data.parity, self.reference, self.precision)
        manifest.parity = {"reference": self._reference_name(), "data": "parity" if self.data.info.get(
            "parity_disjoint") else "parity (overlaps calibration)", **result}
        self._report(result)
        if not result["passed"]:
            raise ConversionError(f"parity gate failed for {manifest.id}: {self._summary(result)}; "
                                  f"gate {result.get('gate')} ({result.get('failure', 'figures above')}); "
                                  f"no artifact was written")
        return manifest

    def _make_onnx(self, dst: Path) -> None:
        if not self.is_pose:
            det = onnx_export.fix_scrfd_input(self.src, dst, self.size)
            # validates the outputs (score/bbox/kps at strides 8/16/32) on the fixed input size
            from .facedata import OnnxFaceDetector
            OnnxFaceDetector(det, self.size, model_id=self.spec.model_id)
            self.source_info = {"kind": "scrfd_onnx"}
            return
        if self.src_kind == "onnx":
            _check_pose_onnx_architecture(self.spec.model_id, self.src)
            info = onnx_export.cut_pose_onnx(self.src, dst)
            self.source_info = {"kind": "pose_onnx", **info}
            self.torch_model = None
            return
        from .checkpoint import load_pose_checkpoint
        self.torch_model, ckpt = load_pose_checkpoint(self.spec.model_id, self.src)
        onnx_export.export_pose(self.torch_model, dst, self.size)
        self.source_info = {"kind": "pose_checkpoint", "opset": onnx_export.OPSET, "checkpoint": ckpt.to_dict()}

    def _reference_name(self) -> str:
        if not self.is_pose:
            return "source ONNX in onnxruntime (input fixed to the artifact size)"
        return "source PyTorch model" if self.src_kind == "checkpoint" else "source ONNX in onnxruntime"

    def _reference(self, inputs_nhwc: np.ndarray, onnx_path: Path):
        """Pose: (N, 3, 3) reference rotations; SCRFD: list of raw ``{(role, stride): array}``."""
        nchw = np.ascontiguousarray(inputs_nhwc.transpose(0, 3, 1, 2))
        if self.is_pose and self.src_kind == "checkpoint":
            import torch
            from ..runtime.rotation import rotation_from_6d
            with torch.no_grad():
                v6 = self.torch_model(torch.from_numpy(nchw)).numpy()
            return rotation_from_6d(v6.astype(np.float64))
        if self.is_pose:
            return _onnx_pose_reference(self.src, nchw)
        from .facedata import OnnxFaceDetector
        det = OnnxFaceDetector(self.work / "source.onnx", self.size, model_id=self.spec.model_id)
        return [det.raw(nchw[i:i + 1]) for i in range(len(nchw))]

    def _manifest(self, model_file: Path) -> Manifest:
        spec = self.spec
        if self.fmt == "tflite":
            ins, outs = _tflite_io(model_file)
        else:
            ins, outs = _onnx_io(model_file)
        (in_name, in_shape, in_dtype), = ins
        layout = "NHWC" if self.fmt == "tflite" else "NCHW"
        inp = TensorSpec(name=in_name, shape=in_shape, dtype=in_dtype, role="image", layout=layout,
                         color=spec.color, mean=list(spec.mean), std=list(spec.std))
        if self.is_pose:
            if len(outs) != 1:
                raise ConversionError(f"pose model has {len(outs)} outputs; expected the 6-vector only")
            (name, shape, dtype), = outs
            outputs = [TensorSpec(name=name, shape=shape, dtype=dtype, role="ortho6d")]
        else:
            outputs = self._map_detector_outputs(model_file, inp, outs)
        from .calibration import file_sha256
        quant = {"mode": QUANT_MODE[self.precision]}
        if self.precision in ("int8", "dynamic-int8"):
            weights = "uint8" if (self.fmt, self.precision) == ("onnx", "dynamic-int8") else "int8"
            quant.update({"weights": weights, "per_channel": True})
        if self.precision == "int8":
            quant.update({"activations": "int8", "io_dtype": "float32",
                          "io_note": "float32 input/output tensors around an int8 body (quantize/dequantize "
                                     "in the graph)", "calibration": self.data.info})
            if self.int8_gate:
                quant["int8_gate"] = self.int8_gate
        elif self.precision == "fp16":
            quant.update({"weights": "float16", "io_dtype": "float32"})
        elif self.precision == "dynamic-int8":
            quant.update({"activations": "float32", "io_dtype": "float32"})
        decode = self._decode()
        return Manifest(
            id=artifact_id(spec.model_id, self.size, self.fmt, self.precision), model=spec.model_id,
            task=spec.task, format=self.fmt, precision=self.precision, file=model_file.name,
            file_sha256=file_sha256(model_file), file_bytes=model_file.stat().st_size, input=inp,
            outputs=outputs, decode=decode, quantization=quant,
            source={"path": str(self.src.resolve()), "sha256": file_sha256(self.src), **self._external_data(),
                    **self.source_info},
            tools=tool_versions(),
            created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def _decode(self) -> Dict:
        """The artifact's ``decode`` section: the registry's facts (+ the SCRFD input size)."""
        decode = dict(self.spec.decode)
        if not self.is_pose:
            decode["input_size"] = [self.size, self.size]
        return decode

    def _external_data(self) -> Dict:
        """``{"external_data": [{file, sha256, bytes}]}`` for an ONNX source whose weights live beside it."""
        from .calibration import file_sha256
        if self.src_kind != "onnx":
            return {}
        files = onnx_export.external_data_files(self.src)
        return {"external_data": [{"file": f.name, "sha256": file_sha256(f), "bytes": f.stat().st_size}
                                  for f in files]} if files else {}

    def _map_detector_outputs(self, model_file: Path, inp: TensorSpec, outs) -> List[TensorSpec]:
        """SCRFD: (role, stride) of every artifact output, by comparing values with the reference."""
        tmp = Manifest(id="probe", model=self.spec.model_id, task=self.spec.task, format=self.fmt,
                       precision=self.precision, file=model_file.name, input=inp,
                       outputs=[TensorSpec(name=n, shape=s, dtype=d, role="raw") for n, s, d in outs],
                       decode=self._decode(), directory=model_file.parent)
        runner = parity_mod.ArtifactRunner(tmp)
        # the parity frame with the most reference detections is the most telling
        counts = [len(parity_mod.decode(r, tmp)) for r in self.reference]
        i = int(np.argmax(counts))
        named = runner(self.data.parity[i:i + 1])
        mapping = parity_mod.map_outputs_by_values(named, self.reference[i])
        return [TensorSpec(name=n, shape=s, dtype=d, role=mapping[n][0], stride=mapping[n][1])
                for n, s, d in sorted(outs, key=lambda o: (SCRFD_ROLE_ORDER[mapping[o[0]][0]], mapping[o[0]][1]))]

    def _summary(self, r: Dict) -> str:
        if self.is_pose:
            return (f"rotation (geodesic) max {r['geodesic_max_deg']:.4f} deg, mean {r['geodesic_mean_deg']:.4f} deg; "
                    f"Euler max {r['euler_max_deg']:.4f} deg (at reference yaw {r['euler_worst_yaw_deg']:.0f}), mean "
                    f"{r['euler_mean_deg']:.4f} deg; on {r['samples']} real face crops, batch4-vs-single "
                    f"{r['batch4_vs_single_max_abs']:.2e}")
        return (f"mean IoU {r['mean_iou']:.4f}, min IoU {r['min_iou']:.4f}, matched {r['matched']}/"
                f"{r['reference_faces']} faces (recall {r['recall']:.3f}), {r['extra_detections']} extra, "
                f"on {r['frames']} real frames")

    def _report(self, r: Dict) -> None:
        line = f"parity {self.spec.model_id} {self.fmt} {self.precision}: {self._summary(r)}"
        gate = r.get("gate")
        line += f" -> {'PASS' if r['passed'] else 'FAIL'}" + ("" if gate else " (recorded, not gated)")
        log.info(line)
        if self.progress:
            self.progress(line)


SCRFD_ROLE_ORDER = {"score": 0, "bbox": 1, "kps": 2}


def _tflite_io(path: Path):
    from ..runtime.interpreter import make_interpreter
    it = make_interpreter(path)

    def rows(details):
        return [(d["name"], [int(v) for v in d["shape"]], np.dtype(d["dtype"]).name) for d in details]
    ins, outs = rows(it.get_input_details()), rows(it.get_output_details())
    if len(ins) != 1:
        raise ConversionError(f"the TFLite model has {len(ins)} inputs; expected one image input")
    return ins, outs


def _onnx_io(path: Path):
    import onnx
    m = onnx.load(str(path))
    inits = {i.name for i in m.graph.initializer}

    def rows(vis):
        out = []
        for v in vis:
            if v.name in inits:
                continue
            shape = [d.dim_value if d.HasField("dim_value") else 1 for d in v.type.tensor_type.shape.dim]
            out.append((v.name, shape, onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name))
        return out
    return rows(m.graph.input), rows(m.graph.output)


def _conv_kernel_shapes(model_id: str):
    from collections import Counter
    from torch import nn
    from .models import build_pose_model
    return Counter(tuple(m.weight.shape) for m in build_pose_model(model_id).modules() if isinstance(m, nn.Conv2d))


def _check_pose_onnx_architecture(model_id: str, src: Path) -> None:
    """A pose ONNX must hold the convolution kernels of ``model_id`` (batch norm folds into them, so
    their shapes survive export). A graph that fits another registered backbone is refused with
    that backbone named; one that fits none is converted with a warning (a modified network)."""
    from collections import Counter
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


def _onnx_pose_reference(src: Path, nchw: np.ndarray) -> np.ndarray:
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
