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
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np

from ..runtime.errors import ConversionError, InputError
from ..runtime.formats import FORMAT_NAMES, precisions_of
from ..runtime.manifest import MANIFEST_NAME, Manifest, TensorSpec, artifact_id, write_json_atomic
from ..runtime.registry import ModelSpec, get_spec
from . import staging
from . import parity as parity_mod
from .families import family_of
from .options import DEFAULT_MAX_INT8_ERROR, DEFAULT_MAX_INT8_P99, ConvertOptions, check_source
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
            progress: Optional[Callable[[str], None]] = None, max_int8_error: Optional[float] = DEFAULT_MAX_INT8_ERROR,
            allow_slow_int8: bool = False, gate_data=None, max_int8_p99: float = DEFAULT_MAX_INT8_P99,
            int8_remedy: str = "plain") -> Path:
    """Convert one model into an artifact directory and return its path.

    Parameters
    ----------
    model_id : str
        Registry id (``mobilenetv3_small``, ``scrfd_500m``...).
    weights : path
        Pose: ``.pt`` checkpoint or a yakhyo/head-pose-estimation ``.onnx``. SCRFD: ``.onnx``.
    fmt : {"tflite", "onnx"}
    precision : {"fp32", "fp16", "int8", "dynamic-int8"}
    calib : path or sequence of paths, optional
        Videos, images, folders or ``.txt`` lists of them: int8 calibration and parity data (default
        ``$HEADPOSE_DATA`` or ``../shared/data/in_video.mp4``); several pose sources are split by
        source into a calibration and a gate part (:func:`headpose.convert.calibration.pose_data`).
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
        int8 pose models: the largest mean geodesic angle (degrees) between the int8 and the float
        model's rotations on the gate crops (``max_int8_p99`` bounds its p99); when plain int8 misses
        it, remedies are tried and the choice is recorded in the manifest
        (:mod:`headpose.convert.int8_gate`). None: no gate.
    allow_slow_int8 : bool
        Let the gate take a remedy that runs slower than the float32 model (int16 activations, which
        XNNPACK does not run); by default such a remedy is refused and the gate fails.
    gate_data : path or sequence of paths, optional
        The int8 gate's / parity check's own sources (pose; none of their files may be in ``calib``).
    max_int8_p99 : float
        int8 pose gate: the largest p99 of that geodesic angle (degrees).
    int8_remedy : str
        int8 pose: the model judged first (``plain``, ``float_head``...; :func:`headpose.convert.int8_gate.enforce`).

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
        allow_slow_int8=allow_slow_int8, gate_data=gate_data, max_int8_p99=max_int8_p99,
        int8_remedy=int8_remedy), progress)


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
                   progress, opts.max_int8_error, opts.allow_slow_int8, opts.gate_data, opts.max_int8_p99,
                   opts.int8_remedy)
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
    """One conversion (internal): holds the paths and does the steps in order; every model-specific
    answer comes from its family (:mod:`headpose.convert.families`)."""

    def __init__(self, spec: ModelSpec, src: Path, src_kind: str, size: int, fmt: str, precision: str,
                 calib, detector, stage: Path, work: Path, timings: Dict[str, float], progress,
                 max_int8_error: Optional[float], allow_slow_int8: bool, gate_data=None,
                 max_int8_p99: float = DEFAULT_MAX_INT8_P99, int8_remedy: str = "plain"):
        self.spec, self.src, self.src_kind, self.size = spec, src, src_kind, size
        self.max_int8_error, self.allow_slow_int8 = max_int8_error, allow_slow_int8
        self.gate_data, self.max_int8_p99 = gate_data, max_int8_p99  # int8 gate sources / p99 limit
        self.int8_remedy = int8_remedy  # the int8 model judged first (int8_gate.enforce's ``first``)
        self.fmt, self.precision, self.calib, self.detector = fmt, precision, calib, detector
        self.stage, self.work, self.timings, self.progress = stage, work, timings, progress
        self.family = family_of(spec)
        self.int8_gate: Optional[Dict] = None
        self.source_info: Dict = {}

    def step(self, name: str):
        return staging.timed_step(name, self.timings, self.progress)

    # -- steps ---------------------------------------------------------------------------------
    def run(self) -> Manifest:
        """All steps up to a passing parity gate; the manifest (not yet written) of the staged artifact."""
        fam = self.family
        raw_onnx = self.work / "source.onnx"
        onnx_path = self.work / "model.onnx"
        with self.step("onnx"):
            self.source_info = fam.make_onnx(self, raw_onnx)
        with self.step("simplify"):
            with tflite_mod.redirect_fds(self.work / "onnxsim.log"):
                simplify_mod.simplify(raw_onnx, onnx_path)
        need_calib = self.precision == "int8"
        with self.step("data"):
            self.data = fam.data(self, need_calib)
            log.info("data: %s", {k: v for k, v in self.data.info.items() if k not in ("sha256", "sets", "source")})
        with self.step("reference"):
            self.reference = fam.reference(self, self.data.parity, onnx_path)
        if self.fmt == "tflite":
            with self.step("onnx2tf"):
                saved = tflite_mod.cached_saved_model(onnx_path, self.data.sample_rgb01)
            model_file = self.stage / "model.tflite"
            with self.step(f"quantize-{self.precision}"):
                tflite_mod.quantize(saved, self.precision, model_file,
                                    self.data.calibration if need_calib else None, self.work / "quantize.log")
            if fam.gates_int8(self):
                with self.step("int8-gate"):
                    self.int8_gate = fam.int8_gate(self, saved, model_file)
        else:
            model_file = self.stage / "model.onnx"
            with self.step(f"onnx-{self.precision}"):
                from .steps import onnx_quantize
                onnx_quantize.make(onnx_path, self.precision, model_file,
                                   self.data.calibration if need_calib else None, self.work)
        with self.step("manifest"):
            manifest = self._manifest(model_file)
        with self.step("parity"):
            result = fam.parity(parity_mod.ArtifactRunner(manifest), self)
        manifest.parity = {"reference": fam.reference_name(self), "data": "parity" if self.data.info.get(
            "parity_disjoint") else "parity (overlaps calibration)", **result}
        if self.fmt == "tflite":  # recorded for every artifact: 1 means the whole graph runs in XNNPACK
            from ..runtime.interpreter import xnnpack_partitions
            manifest.parity["xnnpack_partitions"] = xnnpack_partitions(model_file)
        self._report(result)
        if not result["passed"]:
            raise ConversionError(f"parity gate failed for {manifest.id}: {fam.summary(result)}; "
                                  f"gate {result.get('gate')} ({result.get('failure', 'figures above')}); "
                                  f"no artifact was written")
        return manifest

    def _manifest(self, model_file: Path) -> Manifest:
        spec = self.spec
        int8_in = None
        if self.fmt == "tflite" and self.precision == "int8":
            with self.step("int8-input"):  # the pixels' int8 values in, normalisation in the input quantisation
                int8_in = tflite_mod.int8_input_step(model_file, self.data.parity, self.work)
        if self.fmt == "tflite":
            ins, outs = _tflite_io(model_file)
        else:
            ins, outs = _onnx_io(model_file)
        (in_name, in_shape, in_dtype), = ins
        layout = "NHWC" if self.fmt == "tflite" else "NCHW"
        inp = TensorSpec(name=in_name, shape=in_shape, dtype=in_dtype, role="image", layout=layout,
                         color=spec.color, mean=list(spec.mean), std=list(spec.std))
        if int8_in:
            inp.quantization = {"scale": int8_in["scale"], "zero_point": int8_in["zero_point"]}
            inp.normalisation = "input_quantisation"
        outputs = self.family.outputs(self, model_file, inp, outs)
        from .calibration import file_sha256
        quant = {"mode": QUANT_MODE[self.precision]}
        if self.precision in ("int8", "dynamic-int8"):
            weights = "uint8" if (self.fmt, self.precision) == ("onnx", "dynamic-int8") else "int8"
            quant.update({"weights": weights, "per_channel": True})
        if self.precision == "int8":
            quant.update({"activations": "int8", "io_dtype": "float32",
                          "io_note": "float32 input/output tensors around an int8 body (quantize/dequantize "
                                     "in the graph)", "calibration": self.data.info})
            if int8_in:
                quant.update({"io_dtype": "int8 input, float32 outputs",
                              "io_note": "int8 input tensor taking the quantised normalised pixels (input."
                                         "normalisation: input_quantisation), float32 outputs (dequantize in "
                                         "the graph)", "int8_input": int8_in})
            if self.int8_gate:
                quant["int8_gate"] = self.int8_gate
        elif self.precision == "fp16":
            quant.update({"weights": "float16", "io_dtype": "float32"})
        elif self.precision == "dynamic-int8":
            quant.update({"activations": "float32", "io_dtype": "float32"})
        made = Manifest(
            id=artifact_id(spec.model_id, self.size, self.fmt, self.precision), model=spec.model_id,
            task=spec.task, format=self.fmt, precision=self.precision, file=model_file.name,
            file_sha256=file_sha256(model_file), file_bytes=model_file.stat().st_size, input=inp,
            outputs=outputs, decode=self.family.decode(self), quantization=quant,
            source={"path": str(self.src.resolve()), "sha256": file_sha256(self.src), **self._external_data(),
                    **self.source_info},
            tools=tool_versions(),
            created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        # validated as every reader will read it (typed input / decode sections), before parity runs it
        manifest = Manifest.from_dict(made.to_dict(), where=f"manifest of {made.id}")
        manifest.directory = self.stage
        return manifest

    def _external_data(self) -> Dict:
        """``{"external_data": [{file, sha256, bytes}]}`` for an ONNX source whose weights live beside it."""
        from .calibration import file_sha256
        if self.src_kind != "onnx":
            return {}
        files = onnx_export.external_data_files(self.src)
        return {"external_data": [{"file": f.name, "sha256": file_sha256(f), "bytes": f.stat().st_size}
                                  for f in files]} if files else {}

    def _report(self, r: Dict) -> None:
        line = f"parity {self.spec.model_id} {self.fmt} {self.precision}: {self.family.summary(r)}"
        gate = r.get("gate")
        line += f" -> {'PASS' if r['passed'] else 'FAIL'}" + ("" if gate else " (recorded, not gated)")
        log.info(line)
        if self.progress:
            self.progress(line)


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
