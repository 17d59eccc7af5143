"""ONNX backend (``--format onnx``, on the engine's ONNX route). Precisions: fp32 (as is), fp16 (float16 weights and activations, float32 I/O),
dynamic-int8 and int8 (ONNX Runtime quantisation, per-channel: dynamic-int8 stores uint8 weights, the
only kind ONNX Runtime's ConvInteger runs; int8 is static QDQ with int8 weights and activations
calibrated on the real calibration set)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from ...runtime.errors import ConversionError
from . import Backend, quantization_block

log = logging.getLogger(__name__)


def make(src: Union[str, Path], precision: str, dst: Union[str, Path], calibration=None,
         work: Optional[Path] = None) -> Path:
    """Write the ``precision`` ONNX model of ``src`` (simplified fp32 ONNX) to ``dst``.

    Parameters
    ----------
    calibration : sequence of (1, H, W, 3) float32 normalised NHWC inputs (int8 only)
    """
    src, dst = Path(src), Path(dst)
    if precision == "fp32":
        shutil.copyfile(src, dst)
        return dst
    import onnx
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dst))
        return dst
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    pre = (work or dst.parent) / "preprocessed.onnx"
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    if precision == "dynamic-int8":
        # ONNX Runtime's CPU ConvInteger takes uint8 weights only (int8 ones fail to load)
        quantize_dynamic(str(pre), str(dst), per_channel=True, weight_type=QuantType.QUInt8)
        return dst
    if precision != "int8":
        raise ConversionError(f"precision '{precision}' is not supported for ONNX")
    if calibration is None or len(calibration) == 0:
        raise ConversionError("int8 needs real calibration inputs; none were given")
    name = onnx.load(str(pre)).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(calibration):
                return None
            x = np.asarray(calibration[self.i:self.i + 1], np.float32).transpose(0, 3, 1, 2)
            self.i += 1
            return {name: np.ascontiguousarray(x)}
    quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return dst


class OnnxBackend(Backend):
    """``--format onnx``: the simplified graph itself (fp32) or ONNX Runtime's quantisation of it
    (:func:`make`); NCHW input, the graph's own names."""

    fmt = "onnx"
    layout = "NCHW"

    def check_source(self, spec, weights, input_size):
        from ..source_file import check_onnx_route_source
        return check_onnx_route_source(spec, weights, input_size)

    def make_model(self, job, onnx_path: Path) -> Path:
        model_file = job.stage / "model.onnx"
        with job.step(f"onnx-{job.precision}"):
            make(onnx_path, job.precision, model_file,
                 job.data.calibration if job.precision == "int8" else None, job.work)
        return model_file

    def io(self, model_file: Path):
        import onnx
        m = onnx.load(str(model_file))
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

    def quantization(self, job, int8_in) -> Dict:
        # ONNX Runtime's CPU ConvInteger (dynamic quantisation) stores uint8 weights
        return quantization_block(job.precision, job.data.info if job.precision == "int8" else None,
                                  weights="uint8" if job.precision == "dynamic-int8" else "int8")


BACKEND = OnnxBackend()
