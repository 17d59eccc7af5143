"""The format backends of the conversion engine, and what every backend records.

The format table (:data:`headpose.runtime.formats.FORMATS`) names, for each format, the module of this
package that builds it; that module's ``BACKEND`` (a :class:`Backend`) is the only place that knows
the format. :func:`headpose.convert.pipeline.convert_options` is the one engine: it checks the
options, stages the artifact, times the steps, validates and writes the manifest once and publishes
the folder atomically, whatever the format. A backend answers two kinds of question:

* every backend: :meth:`Backend.check_source` (what it converts from);
* a backend on the ONNX route (``from_onnx``: TFLite, ONNX) is handed the simplified ONNX graph by the
  engine's route (export, simplify, real data, reference outputs, manifest, parity, all shared) and
  answers :meth:`~Backend.make_model`, :meth:`~Backend.io`, :meth:`~Backend.input_quantisation`,
  :meth:`~Backend.quantization` and :meth:`~Backend.records`;
* a backend with its own route (CoreML: PyTorch -> coremltools, which cannot read ONNX) answers
  :meth:`~Backend.build`: the staged model file(s) and the manifest, not yet written.

``job`` in the signatures below is the engine's conversion job (:class:`headpose.convert.pipeline.Job`):
the options, the model's registry spec and family, the staging and work folders, ``step(name)`` for
timed steps, and, on the ONNX route, the real data and reference outputs.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from importlib import metadata
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

TOOLS = ("torch", "onnx", "onnxruntime", "onnxsim", "onnx2tf", "tensorflow", "ai-edge-litert", "numpy",
         "headpose-edge")
# the manifest's quantization.mode of each precision of the ONNX route
QUANT_MODE = {"fp32": "none", "fp16": "float16", "int8": "full_integer", "dynamic-int8": "dynamic_range"}
TensorRows = List[Tuple[str, List[int], str]]  # (name, shape, dtype name) per tensor


def tool_versions(names: Sequence[str] = TOOLS, absent: Optional[str] = "absent") -> Dict[str, str]:
    """Installed versions of the packages a conversion uses (``absent`` when not installed; left out
    when ``absent`` is None). The manifest's ``tools`` of every format."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if absent is not None:
                out[name] = absent
    return out


@contextlib.contextmanager
def redirect_fds(log_path: Union[str, Path]) -> Iterator[None]:
    """Send fd 1 and fd 2 (Python and native writes) to ``log_path`` for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    with open(log_path, "ab") as f:
        saved = os.dup(1), os.dup(2)
        try:
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
            with open(log_path, "a") as text, contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def quantization_block(precision: str, calibration: Optional[Dict] = None, weights: str = "int8") -> Dict:
    """The manifest's ``quantization`` section of an ONNX-route artifact at ``precision``.

    ``calibration`` (int8): the real data's record; ``weights``: the stored integer type of the
    quantised weights (``int8``; ONNX Runtime's dynamic quantisation stores ``uint8``).
    """
    quant: Dict = {"mode": QUANT_MODE[precision]}
    if precision in ("int8", "dynamic-int8"):
        quant.update({"weights": weights, "per_channel": True})
    if precision == "int8":
        quant.update({"activations": "int8", "io_dtype": "float32",
                      "io_note": "float32 input/output tensors around an int8 body (quantize/dequantize in the graph)",
                      "calibration": calibration})
    elif precision == "fp16":
        quant.update({"weights": "float16", "io_dtype": "float32"})
    elif precision == "dynamic-int8":
        quant.update({"activations": "float32", "io_dtype": "float32"})
    return quant


class Backend:
    """One format's conversion step (see the module docstring); subclasses live beside this module."""

    fmt: str = ""
    from_onnx: bool = True  # built from the engine's simplified ONNX graph (False: :meth:`build`)
    layout: str = "NCHW"    # the image input's layout (ONNX route)

    # -- every backend ---------------------------------------------------------------------------
    def check_source(self, spec, weights, input_size: Optional[int]) -> Tuple[Path, int, str]:
        """Check the ``--weights`` file and ``--input-size`` for this format.

        Returns
        -------
        (path, input side, source kind): kind ``"checkpoint"`` (PyTorch) or ``"onnx"``.
        """
        raise NotImplementedError

    # -- a backend with its own route --------------------------------------------------------------
    def build(self, job):
        """Write the model file(s) into ``job.stage``; return the artifact's validated
        :class:`~headpose.runtime.manifest.Manifest` (the engine adds the timings and writes it)."""
        raise NotImplementedError

    # -- a backend on the ONNX route ---------------------------------------------------------------
    def make_model(self, job, onnx_path: Path) -> Path:
        """Build the model file in ``job.stage`` from the simplified float32 ONNX graph ``onnx_path``
        (``job.data.calibration``: the int8 calibration inputs); may set ``job.int8_gate``."""
        raise NotImplementedError

    def input_quantisation(self, job, model_file: Path) -> Optional[Dict]:
        """For a model that takes the quantised pixels directly: ``{"scale", "zero_point", ...}``."""
        return None

    def io(self, model_file: Path) -> Tuple[TensorRows, TensorRows]:
        """The model file's (inputs, outputs) rows; exactly one image input."""
        raise NotImplementedError

    def quantization(self, job, int8_input: Optional[Dict]) -> Dict:
        """The manifest's ``quantization`` section (:func:`quantization_block` by default)."""
        return quantization_block(job.precision, job.data.info if job.precision == "int8" else None)

    def records(self, model_file: Path) -> Dict:
        """Format-specific figures for the manifest's ``parity`` section, once parity has run."""
        return {}


def backend_of(fmt: str) -> Backend:
    """The :class:`Backend` of format ``fmt`` (the format table's ``step`` module's ``BACKEND``)."""
    from ...runtime.errors import InputError
    from ...runtime.formats import FORMATS
    if fmt not in FORMATS:
        raise InputError(f"format '{fmt}' is not supported: expected one of {', '.join(FORMATS)}")
    return importlib.import_module(f"{__name__}.{FORMATS[fmt].step}").BACKEND
