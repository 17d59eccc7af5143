"""The ``--weights`` file and ``--input-size`` checks of every format (what a backend converts from).

Imports nothing of the conversion room, so that every backend may use it.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Optional, Tuple

from ..runtime.errors import InputError
from ..runtime.registry import ModelSpec


def check_source(spec: ModelSpec, weights, input_size: Optional[int],
                 pose_source: str = "a .pt checkpoint or a pose .onnx") -> Tuple[Path, int]:
    """The argument checks of every format: ``--weights`` is a file (``pose_source``: what a pose model
    converts from), ``--input-size`` a multiple of 32. Returns the weights path and the input size."""
    model_id = spec.model_id
    if weights is None:
        raise InputError(f"{model_id} needs --weights PATH (a .pt checkpoint for pose models, an .onnx for SCRFD)")
    path = Path(weights)
    if not path.is_file():
        kind = "an SCRFD .onnx file" if spec.task == "face_detection" else pose_source
        raise InputError(f"weights file '{path}' does not exist: expected {kind}")
    size = int(input_size or spec.input_size)
    if size < 32 or size % 32:
        raise InputError(f"--input-size {size} is not usable: expected a multiple of 32 (e.g. "
                         f"{spec.input_size}{' or 320' if spec.task == 'face_detection' else ''})")
    return path, size


def is_onnx_file(path: Path) -> bool:
    """Whether ``path`` is an ONNX protobuf (by suffix, else by its first byte; a zip is a torch.save file)."""
    if path.suffix.lower() == ".onnx":
        return True
    if zipfile.is_zipfile(path):  # torch.save's format
        return False
    with open(path, "rb") as f:
        head = f.read(2)
    return bool(head) and head[0] == 0x08  # ONNX protobuf starts with field 1 (ir_version), varint


def check_onnx_route_source(spec: ModelSpec, weights, input_size: Optional[int]) -> Tuple[Path, int, str]:
    """:func:`check_source` for the formats built from ONNX (TFLite, ONNX): a pose model converts from a
    checkpoint or a pose ONNX, an SCRFD detector from its ONNX. Returns (path, size, ``"onnx"`` or
    ``"checkpoint"``)."""
    path, size = check_source(spec, weights, input_size)
    is_onnx = is_onnx_file(path)
    if spec.task == "face_detection" and not is_onnx:
        raise InputError(f"{spec.model_id} converts from an SCRFD ONNX file (e.g. scrfd_500m_bnkps.onnx); "
                         f"'{path.name}' is not an ONNX file (a PyTorch checkpoint?)")
    return path, size, "onnx" if is_onnx else "checkpoint"
