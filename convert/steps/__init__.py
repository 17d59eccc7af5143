"""The steps of the conversion routes: PyTorch/ONNX -> simplified ONNX -> TFLite / ONNX (``pipeline``),
PyTorch -> CoreML (:mod:`.coreml`); and what every route records: the tools' versions."""

from __future__ import annotations

from importlib import metadata
from typing import Dict, Optional, Sequence

TOOLS = ("torch", "onnx", "onnxruntime", "onnxsim", "onnx2tf", "tensorflow", "ai-edge-litert", "numpy",
         "headpose-edge")


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
