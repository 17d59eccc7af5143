"""TFLite backend: onnx2tf (ONNX NCHW -> TensorFlow NHWC) and the TFLite converter for each precision.

onnx2tf runs in-process inside a temporary working directory. It never reaches the network: the
sample file it would otherwise download (``calibration_image_sample_data_20x128x128x3_float32.npy``,
looked up in ``os.getcwd()`` by ``onnx2tf.utils.common_functions.download_test_image_data``) is
written there first, from real calibration images. Its console output (Python prints and the
TensorFlow C++ log on fd 1/2) goes to a log file, kept in the work directory.

Quantisation is done here with ``tf.lite.TFLiteConverter.from_saved_model`` on onnx2tf's
SavedModel rather than by onnx2tf, so that the int8 model holds builtin int8 kernels only (no
SELECT_TF_OPS fallback), per-channel weights, and float32 input/output around the int8 body.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from ...runtime.errors import ConversionError
from ...runtime.formats import precisions_of
from ...runtime.manifest import write_atomic
from . import Backend, quantization_block, redirect_fds

log = logging.getLogger(__name__)

ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"
PRECISIONS = precisions_of("tflite")


def write_onnx2tf_sample(work_dir: Union[str, Path], images_rgb01: np.ndarray) -> Path:
    """Write the sample file onnx2tf would download, made from real images.

    Parameters
    ----------
    images_rgb01 : ndarray, (N, H, W, 3), float32, RGB in 0..1 (N >= 1; repeated/cut to 20, resized
        to 128x128)
    """
    from ...runtime.preprocess import resize_bilinear
    imgs = [resize_bilinear(im, 128, 128) for im in images_rgb01[:20]]
    while len(imgs) < 20:
        imgs.append(imgs[len(imgs) % max(1, len(images_rgb01))])
    path = Path(work_dir) / ONNX2TF_SAMPLE
    np.save(path, np.stack(imgs).astype(np.float32))
    return path


_SAVED: dict = {}  # sha256 of the ONNX bytes -> onnx2tf output folder (this process only)
_CACHE_ROOT: Optional[Path] = None


def _cache_root() -> Path:
    global _CACHE_ROOT
    if _CACHE_ROOT is None:
        import atexit
        import shutil
        import tempfile
        from .. import staging
        tmp = Path(tempfile.gettempdir())
        staging.sweep(tmp)  # the onnx2tf folders of conversions killed with -9
        _CACHE_ROOT = Path(tempfile.mkdtemp(prefix=staging.prefix("headpose-onnx2tf", "work"), dir=tmp))
        atexit.register(shutil.rmtree, _CACHE_ROOT, True)
    return _CACHE_ROOT


def cached_saved_model(onnx_path: Union[str, Path], sample_rgb01: np.ndarray) -> Path:
    """:func:`onnx_to_saved_model`, run once per distinct ONNX graph in this process.

    Converting one model to several precisions in one process (the test session, a matrix build)
    then pays for onnx2tf once. The folders live in a temporary directory removed at exit.
    """
    import hashlib
    sha = hashlib.sha256(Path(onnx_path).read_bytes()).hexdigest()
    hit = _SAVED.get(sha)
    if hit is not None and (hit / "model_float32.tflite").exists():
        log.info("onnx2tf: reusing this process's conversion of the same graph (%s)", sha[:12])
        return hit
    out = onnx_to_saved_model(onnx_path, _cache_root() / sha[:16], sample_rgb01)
    _SAVED[sha] = out
    return out


def onnx_to_saved_model(onnx_path: Union[str, Path], work_dir: Union[str, Path],
                        sample_rgb01: np.ndarray) -> Path:
    """Run onnx2tf on ``onnx_path``; returns the output folder (SavedModel + float32/float16 .tflite).

    Parameters
    ----------
    onnx_path : path
        Simplified ONNX with one NCHW image input.
    work_dir : path
        Temporary working directory (becomes the cwd while onnx2tf runs).
    sample_rgb01 : ndarray, (N, H, W, 3), float32, RGB 0..1
        Real images for onnx2tf's internal checks (replaces its downloaded sample).

    Raises
    ------
    ConversionError
        When onnx2tf fails (its log is named in the message).
    """
    # absolute before the chdir below: a relative --out (the CLI's default weights/exports) must still be found
    onnx_path, work_dir = Path(onnx_path).resolve(), Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    write_onnx2tf_sample(work_dir, sample_rgb01)
    out = work_dir / "saved_model"
    log_path = work_dir / "onnx2tf.log"
    cwd = os.getcwd()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import onnx2tf  # heavy: TensorFlow
    try:
        os.chdir(work_dir)
        with redirect_fds(log_path):
            onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=str(out),
                            output_signaturedefs=True, copy_onnx_input_output_names_to_tflite=True,
                            not_use_onnxsim=True, non_verbose=True, verbosity="error")
    except (Exception, SystemExit) as e:
        tail = _tail(log_path)
        raise ConversionError(f"onnx2tf could not convert '{Path(onnx_path).name}' ({type(e).__name__}: {e}); "
                              f"log: {log_path}{': ' + tail if tail else ''}") from None
    finally:
        os.chdir(cwd)
    stem = Path(onnx_path).stem
    for kind in ("float32", "float16"):
        made = out / f"{stem}_{kind}.tflite"
        if not made.exists():
            raise ConversionError(f"onnx2tf wrote no {made.name} in {out}; log: {log_path}")
        os.replace(made, out / f"model_{kind}.tflite")
    return out


def _tail(path: Path, n: int = 300) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    return " ".join(text[-n:].split())


def quantize(saved_model: Union[str, Path], precision: str, dst: Union[str, Path],
             calibration: Optional[np.ndarray] = None, log_path: Optional[Union[str, Path]] = None) -> Path:
    """Write the ``precision`` TFLite model of an onnx2tf output folder to ``dst``.

    Parameters
    ----------
    saved_model : path
        onnx2tf output folder (SavedModel, ``model_float32.tflite``, ``model_float16.tflite``).
    precision : str
        ``fp32`` / ``fp16``: onnx2tf's float models. ``dynamic-int8``: int8 weights, float
        activations. ``int8``: full-integer post-training quantisation, per-channel weights,
        int8 activations calibrated on ``calibration``, float32 input and output tensors.
    calibration : ndarray (N, H, W, 3) or a sequence whose slices are such arrays
        Normalised float32 NHWC model inputs; required for ``int8``.

    Raises
    ------
    ConversionError
    """
    import shutil
    saved_model, dst = Path(saved_model), Path(dst)
    if precision == "fp32":
        shutil.copyfile(saved_model / "model_float32.tflite", dst)
        return dst
    if precision == "fp16":
        shutil.copyfile(saved_model / "model_float16.tflite", dst)
        return dst
    if precision not in PRECISIONS:
        raise ConversionError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if precision == "int8":
        if calibration is None or len(calibration) == 0:
            raise ConversionError("int8 needs real calibration inputs; none were given")
        calib = calibration  # an array or a lazy sequence (indexing a slice gives (1, H, W, 3))

        def representative():
            for i in range(len(calib)):
                yield [np.asarray(calib[i:i + 1], np.float32)]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.float32
        converter.inference_output_type = tf.float32
    try:
        with redirect_fds(log_path or os.devnull):
            data = converter.convert()
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConversionError(f"the TFLite converter failed for {precision} ({first})") from None
    return write_atomic(dst, data)


def int8_input(model_file: Union[str, Path], log_path: Optional[Union[str, Path]] = None) -> Optional[dict]:
    """Give a full-integer model an int8 input tensor: its input QUANTIZE op is removed, so the model
    takes the quantised pixels ``q = clip(round((p - mean) / std / scale) + zero_point)`` that the
    runtime writes with one 256-entry table per channel (``runtime.preprocess.pixel_lut``); the
    output stays float32. The same rewrite as ``TFLiteConverter.inference_input_type = tf.int8``
    (``tensorflow.lite.python.util.modify_model_io_type``), applied after the int8 gate chose the
    model, so that the gate and its remedies run unchanged.

    The file is rewritten in place only when the result loads in LiteRT with an int8 input and
    runs in no more XNNPACK partitions than before.

    Returns
    -------
    dict or None
        ``{"scale", "zero_point", "xnnpack_partitions"}`` of the new input; None when the model keeps
        its float32 input (its input is not quantised by a QUANTIZE op, e.g. a float first layer of
        an int8-gate remedy, or int16 activations), logged.
    """
    import tensorflow as tf
    from tensorflow.lite.python import util as tfl_util
    from ...runtime.interpreter import make_interpreter, xnnpack_partitions
    model_file = Path(model_file)
    data = model_file.read_bytes()
    try:
        with redirect_fds(log_path or os.devnull):
            new = bytes(tfl_util.modify_model_io_type(data, tf.int8, tf.float32))
    except (ValueError, RuntimeError) as e:
        log.info("int8 input: %s keeps its float32 input (%s)", model_file.name, str(e).strip().splitlines()[0])
        return None
    it = make_interpreter(new)
    inp = it.get_input_details()
    if len(inp) != 1 or np.dtype(inp[0]["dtype"]) != np.int8:
        log.info("int8 input: rewriting %s gave input %s; keeping its float32 input", model_file.name,
                 [np.dtype(d["dtype"]).name for d in inp])
        return None
    before, after = xnnpack_partitions(data), xnnpack_partitions(it)
    if after > before:
        log.warning("int8 input: the rewritten %s runs in %d XNNPACK partitions (float input: %d); keeping "
                    "its float32 input", model_file.name, after, before)
        return None
    scale, zero = inp[0]["quantization"]
    write_atomic(model_file, new)
    return {"scale": float(scale), "zero_point": int(zero), "xnnpack_partitions": int(after)}


def int8_input_step(model_file: Union[str, Path], inputs: np.ndarray, work: Union[str, Path],
                    samples: int = 8) -> Optional[dict]:
    """:func:`int8_input` on a converted int8 ``model_file``, proven against the float-input model it replaces.

    The float-input file is kept aside; both run (LiteRT + XNNPACK) on ``samples`` real model inputs
    ``inputs`` (normalised float32 NHWC): the float-input one on the floats, the int8-input one on
    their quantisation by :func:`~headpose.runtime.interpreter.quantize_input` (the formula of the
    runtime's pixel tables). Every output must be equal, bit for bit; otherwise the float-input model
    is put back (logged) and None returned.

    Returns
    -------
    dict or None
        :func:`int8_input`'s ``{"scale", "zero_point", "xnnpack_partitions"}`` plus
        ``vs_float_input_max_abs`` (0.0) and ``samples``; None when the model keeps its float input.
    """
    import shutil
    from ...runtime.interpreter import make_interpreter, quantize_input
    model_file, work = Path(model_file), Path(work)
    keep = work / "model_float_input.tflite"
    shutil.copyfile(model_file, keep)
    info = int8_input(model_file, work / "int8_input.log")
    if info is None:
        return None
    flt, q = make_interpreter(keep), make_interpreter(model_file)
    fi, qi = flt.get_input_details()[0], q.get_input_details()[0]
    f_out = {d["name"]: d["index"] for d in flt.get_output_details()}
    q_out = {d["name"]: d["index"] for d in q.get_output_details()}
    x = np.asarray(inputs[:samples], np.float32)
    worst = 0.0
    if set(f_out) != set(q_out):
        worst = float("inf")
    else:
        for i in range(len(x)):
            flt.set_tensor(fi["index"], x[i:i + 1])
            q.set_tensor(qi["index"], quantize_input(x[i:i + 1], info["scale"], info["zero_point"], np.int8))
            flt.invoke()
            q.invoke()
            for name in f_out:
                d = np.abs(flt.get_tensor(f_out[name]).astype(np.float64) - q.get_tensor(q_out[name])).max()
                worst = max(worst, float(d))
    if worst != 0.0:
        log.warning("int8 input: the int8-input model differs from the float-input one by %g on real inputs; "
                    "keeping the float32 input", worst)
        shutil.copyfile(keep, model_file)
        return None
    return {**info, "vs_float_input_max_abs": worst, "samples": int(len(x))}


class TFLiteBackend(Backend):
    """``--format tflite`` on the engine's ONNX route: onnx2tf's SavedModel (cached), the TFLite
    converter at the precision, the int8 accuracy gate (pose families), the int8 input tensor, and the
    XNNPACK partition count recorded after parity."""

    fmt = "tflite"
    layout = "NHWC"

    def check_source(self, spec, weights, input_size):
        from ..source_file import check_onnx_route_source
        return check_onnx_route_source(spec, weights, input_size)

    def make_model(self, job, onnx_path: Path) -> Path:
        int8 = job.precision == "int8"
        with job.step("onnx2tf"):
            saved = cached_saved_model(onnx_path, job.data.sample_rgb01)
        model_file = job.stage / "model.tflite"
        with job.step(f"quantize-{job.precision}"):
            quantize(saved, job.precision, model_file, job.data.calibration if int8 else None,
                     job.work / "quantize.log")
        if int8 and job.family.gates_int8(job):
            with job.step("int8-gate"):
                job.int8_gate = job.family.int8_gate(job, saved, model_file)
        return model_file

    def input_quantisation(self, job, model_file: Path) -> Optional[Dict]:
        if job.precision != "int8":
            return None
        with job.step("int8-input"):  # the pixels' int8 values in, the normalisation in the input quantisation
            return int8_input_step(model_file, job.data.parity, job.work)

    def io(self, model_file: Path):
        from ...runtime.interpreter import make_interpreter
        it = make_interpreter(model_file)

        def rows(details):
            return [(d["name"], [int(v) for v in d["shape"]], np.dtype(d["dtype"]).name) for d in details]
        return rows(it.get_input_details()), rows(it.get_output_details())

    def quantization(self, job, int8_in: Optional[Dict]) -> Dict:
        quant = quantization_block(job.precision, job.data.info if job.precision == "int8" else None)
        if int8_in:
            quant.update({"io_dtype": "int8 input, float32 outputs",
                          "io_note": "int8 input tensor taking the quantised normalised pixels (input."
                                     "normalisation: input_quantisation), float32 outputs (dequantize in "
                                     "the graph)", "int8_input": int8_in})
        if job.int8_gate:
            quant["int8_gate"] = job.int8_gate
        return quant

    def records(self, model_file: Path) -> Dict:
        from ...runtime.interpreter import xnnpack_partitions
        return {"xnnpack_partitions": xnnpack_partitions(model_file)}  # 1: the whole graph runs in XNNPACK


BACKEND = TFLiteBackend()
