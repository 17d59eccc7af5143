"""The conversion engine: one model -> one artifact directory, whatever the format.

``convert(model_id, weights, fmt, precision, ...)`` builds one artifact directory
``<out_dir>/<model>-<size>-<format>-<precision>/`` holding the model file and ``manifest.json``.
The format table (:data:`headpose.runtime.formats.FORMATS`) names each format's backend
(:mod:`headpose.convert.steps`); this module checks the options, stages the artifact in a temporary
directory inside ``out_dir``, times the steps, validates and writes the manifest once and renames the
directory into place only when the parity gate passed, for every format.

The ONNX route (TFLite, ONNX backends): source model -> raw ONNX -> simplified ONNX -> real data and
the source's reference outputs -> the backend's model file -> manifest -> parity. Sources: a pose
checkpoint (``.pt``, yakhyo/head-pose-estimation layout), a pose ONNX exported by that repository (its
graph ends in the rotation matrix; it is cut at the 6-vector), or an SCRFD ONNX. Every model-specific
answer comes from the model's family (:mod:`headpose.convert.families`). CoreML builds from PyTorch
itself (:meth:`headpose.convert.steps.coreml.CoreMLBackend.build`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Union

from ..runtime.errors import ConversionError, InputError
from ..runtime.formats import FORMATS
from ..runtime.manifest import MANIFEST_NAME, Manifest, TensorSpec, artifact_id, write_json_atomic
from ..runtime.registry import ModelSpec, get_spec
from . import staging
from . import parity as parity_mod
from .families import family_of
from .options import DEFAULT_MAX_INT8_ERROR, DEFAULT_MAX_INT8_P99, ConvertOptions
from .steps import Backend, backend_of, onnx_export, redirect_fds, simplify as simplify_mod, tool_versions

log = logging.getLogger(__name__)


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
    fmt : {"tflite", "onnx", "coreml"}
        A format of :data:`headpose.runtime.formats.FORMATS`.
    precision : str
        One of the format's precisions (TFLite/ONNX: fp32, fp16, int8, dynamic-int8; CoreML: fp32,
        fp16, int8, palettize6).
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
    out_dir = Path(opts.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out '{out_dir}' is a file: expected the folder that receives the artifact directory "
                         f"(created when missing); pass another --out")
    backend = backend_of(opts.fmt)
    spec = get_spec(opts.model)
    precisions = FORMATS[opts.fmt].precisions
    if opts.precision not in precisions:
        raise InputError(f"precision '{opts.precision}' is not supported by --format {opts.fmt}: expected one of "
                         f"{', '.join(precisions)}")
    src, size, src_kind = backend.check_source(spec, opts.weights, opts.input_size)
    aid = artifact_id(spec.model_id, size, opts.fmt, opts.precision)
    final = out_dir / aid
    if final.exists() and not opts.force:
        raise ConversionError(f"artifact '{final}' already exists: pass --force to replace it")
    out_dir.mkdir(parents=True, exist_ok=True)
    staging.sweep(out_dir)  # leftovers of conversions killed with -9
    timings: Dict[str, float] = {}
    t_start = time.perf_counter()
    stage = staging.stage_folder(out_dir, aid)
    work = staging.stage_folder(out_dir, aid, "work")
    keep_work = os.environ.get("HEADPOSE_KEEP_WORK") == "1"
    try:
        job = Job(opts, spec, backend, src, src_kind, size, stage, work, timings, progress)
        manifest = job.run() if backend.from_onnx else backend.build(job)
        manifest.parity["conversion_seconds"] = round(time.perf_counter() - t_start, 1)
        manifest.parity["step_seconds"] = timings
        write_json_atomic(stage / MANIFEST_NAME, manifest.to_dict())
        staging.publish(stage, final, opts.force)
    finally:
        if stage.exists():
            shutil.rmtree(stage, ignore_errors=True)
        if keep_work:
            log.info("work directory kept: %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    log.info("artifact %s written in %.1f s", final, time.perf_counter() - t_start)
    return final


class Job:
    """One conversion: its options, the model's spec and family, the format's backend, the staging
    (``stage``) and work folders, the step timings; :meth:`run` is the ONNX route (backends with
    ``from_onnx``), and other backends read the same job in their ``build``."""

    def __init__(self, opts: ConvertOptions, spec: ModelSpec, backend: Backend, src: Path, src_kind: str, size: int,
                 stage: Path, work: Path, timings: Dict[str, float], progress: Optional[Callable[[str], None]] = None):
        self.opts, self.spec, self.backend = opts, spec, backend
        self.src, self.src_kind, self.size = src, src_kind, size
        self.fmt, self.precision, self.calib, self.detector = opts.fmt, opts.precision, opts.calib, opts.detector
        self.max_int8_error, self.max_int8_p99 = opts.max_int8_error, opts.max_int8_p99
        self.allow_slow_int8, self.gate_data = opts.allow_slow_int8, opts.gate_data  # int8 gate sources
        self.int8_remedy = opts.int8_remedy  # the int8 model judged first (int8_gate.enforce's ``first``)
        self.stage, self.work, self.timings, self.progress = stage, work, timings, progress
        self.family = family_of(spec)
        self.int8_gate: Optional[Dict] = None
        self.source_info: Dict = {}

    def step(self, name: str):
        """A timed step (``with job.step("name"):``): its seconds go to the manifest, a line to ``progress``."""
        return staging.timed_step(name, self.timings, self.progress)

    # -- the ONNX route ------------------------------------------------------------------------
    def run(self) -> Manifest:
        """All steps up to a passing parity gate; the manifest (not yet written) of the staged artifact."""
        fam, backend = self.family, self.backend
        raw_onnx = self.work / "source.onnx"
        onnx_path = self.work / "model.onnx"
        with self.step("onnx"):
            self.source_info = fam.make_onnx(self, raw_onnx)
        with self.step("simplify"):
            with redirect_fds(self.work / "onnxsim.log"):
                simplify_mod.simplify(raw_onnx, onnx_path)
        with self.step("data"):
            self.data = fam.data(self, self.precision == "int8")
            log.info("data: %s", {k: v for k, v in self.data.info.items() if k not in ("sha256", "sets", "source")})
        with self.step("reference"):
            self.reference = fam.reference(self, self.data.parity, onnx_path)
        model_file = backend.make_model(self, onnx_path)
        with self.step("manifest"):
            manifest = self._manifest(model_file)
        with self.step("parity"):
            result = fam.parity(parity_mod.ArtifactRunner(manifest), self)
        manifest.parity = {"reference": fam.reference_name(self), "data": "parity" if self.data.info.get(
            "parity_disjoint") else "parity (overlaps calibration)", **result, **backend.records(model_file)}
        self._report(result)
        if not result["passed"]:
            raise ConversionError(f"parity gate failed for {manifest.id}: {fam.summary(result)}; "
                                  f"gate {result.get('gate')} ({result.get('failure', 'figures above')}); "
                                  f"no artifact was written")
        return manifest

    def _manifest(self, model_file: Path) -> Manifest:
        spec, backend = self.spec, self.backend
        int8_in = backend.input_quantisation(self, model_file)
        ins, outs = backend.io(model_file)
        if len(ins) != 1:
            raise ConversionError(f"the {self.fmt} model has {len(ins)} inputs; expected one image input")
        (in_name, in_shape, in_dtype), = ins
        inp = TensorSpec(name=in_name, shape=in_shape, dtype=in_dtype, role="image", layout=backend.layout,
                         color=spec.color, mean=list(spec.mean), std=list(spec.std))
        if int8_in:
            inp.quantization = {"scale": int8_in["scale"], "zero_point": int8_in["zero_point"]}
            inp.normalisation = "input_quantisation"
        outputs = self.family.outputs(self, model_file, inp, outs)
        from .calibration import file_sha256
        made = Manifest(
            id=artifact_id(spec.model_id, self.size, self.fmt, self.precision), model=spec.model_id,
            task=spec.task, format=self.fmt, precision=self.precision, file=model_file.name,
            file_sha256=file_sha256(model_file), file_bytes=model_file.stat().st_size, input=inp,
            outputs=outputs, decode=self.family.decode(self), quantization=backend.quantization(self, int8_in),
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

