"""The one table of artifact formats: which precisions each has, the model file, the step that builds it.

Read by ``headpose convert`` (its choices), the conversion pipeline and its steps, the manifest
validator and ``headpose bench``; no other list of formats or precisions exists. ``step`` names the
module of ``headpose.convert.steps`` that writes the model file (the runtime never imports it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple


@dataclass(frozen=True)
class Format:
    """One artifact format: ``name``, the ``precisions`` it is built at, its ``model_file`` in the
    artifact folder, the conversion ``step`` that writes it, and whether the device runtime runs it."""

    name: str
    precisions: Tuple[str, ...]
    model_file: str
    step: str
    device: bool = False


FORMATS: Dict[str, Format] = {
    "tflite": Format("tflite", ("fp32", "fp16", "int8", "dynamic-int8"), "model.tflite", "tflite", device=True),
    "onnx": Format("onnx", ("fp32", "fp16", "int8", "dynamic-int8"), "model.onnx", "onnx_quantize"),
    "coreml": Format("coreml", ("fp32", "fp16", "int8", "palettize6"), "model.mlpackage", "coreml"),
}
FORMAT_NAMES: Tuple[str, ...] = tuple(FORMATS)
# every precision of any format, in the order tables list them
PRECISIONS: Tuple[str, ...] = tuple(dict.fromkeys(p for f in FORMATS.values() for p in f.precisions))


def precisions_of(fmt: str) -> Tuple[str, ...]:
    """The precisions ``fmt`` is built at (empty for an unknown format)."""
    return FORMATS[fmt].precisions if fmt in FORMATS else ()
