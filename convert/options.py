"""``ConvertOptions``: one conversion's arguments, one field per ``headpose convert`` flag.

The CLI builds it from its parsed arguments (:meth:`ConvertOptions.from_args`), the Python API from
keywords (:func:`headpose.convert.pipeline.convert`); both hand the same object to the one engine
(:func:`headpose.convert.pipeline.convert_options`), which hands it to the format's backend.
:meth:`ConvertOptions.check` refuses options the chosen format does not use instead of dropping them.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional, Sequence, Union

from ..runtime.errors import InputError

PathLike = Union[str, Path]
DEFAULT_MAX_INT8_ERROR = 1.0  # geodesic mean, degrees (int8_gate.MAX_MEAN_DEG)
DEFAULT_MAX_INT8_P99 = 3.0    # geodesic p99, degrees (int8_gate.MAX_P99_DEG)
Sources = Union[PathLike, Sequence[PathLike]]


@dataclass
class ConvertOptions:
    """Field ``x`` is flag ``--x`` of ``headpose convert`` (``model`` the positional MODEL, ``fmt``
    ``--format``, ``out`` ``--out``); the defaults are the CLI's."""

    model: str
    weights: Optional[PathLike]
    fmt: str = "tflite"
    precision: str = "fp32"
    calib: Optional[Sources] = None  # one path (as before), or several (--calib repeated; list files)
    input_size: Optional[int] = None
    out: PathLike = "weights/exports"
    detector: Optional[PathLike] = None
    force: bool = False
    max_int8_error: Optional[float] = DEFAULT_MAX_INT8_ERROR  # None (a negative value on the CLI): no gate
    max_int8_p99: float = DEFAULT_MAX_INT8_P99
    allow_slow_int8: bool = False
    gate_data: Optional[Sources] = None  # explicit int8-gate / parity sources (--gate-data, repeatable)
    int8_remedy: str = "plain"  # the int8 model judged first (int8_gate: plain, float_head, ...)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ConvertOptions":
        """From ``headpose convert``'s parsed arguments (a negative ``--max-int8-error``: no gate; one
        ``--calib`` / ``--gate-data`` stays one path, as before)."""
        opts = cls(**{f.name: getattr(args, f.name) for f in fields(cls)})
        if opts.max_int8_error is not None and opts.max_int8_error < 0:
            opts.max_int8_error = None
        for name in ("calib", "gate_data"):
            value = getattr(opts, name)
            if isinstance(value, list):
                setattr(opts, name, value[0] if len(value) == 1 else value or None)
        return opts

    def check(self) -> None:
        """Refuse options the format does not use (CoreML has no int8 gate: its int8 is weight-only);
        ``max_int8_error`` None (no gate) and the default say nothing that CoreML would ignore."""
        from .int8_gate import REMEDIES
        if self.int8_remedy not in REMEDIES:
            raise InputError(f"--int8-remedy '{self.int8_remedy}' is not known: expected one of {', '.join(REMEDIES)}")
        if self.fmt == "coreml":
            if self.calib is not None and not isinstance(self.calib, (str, Path)) and len(self.calib) > 1:
                raise InputError(f"--format coreml checks parity on one --calib source; {len(self.calib)} were "
                                 f"given: pass one video, image or folder")
            given = [flag for flag, on in (("--max-int8-error", self.max_int8_error not in (None, DEFAULT_MAX_INT8_ERROR)),
                                           ("--max-int8-p99", self.max_int8_p99 != DEFAULT_MAX_INT8_P99),
                                           ("--allow-slow-int8", self.allow_slow_int8),
                                           ("--gate-data", self.gate_data is not None),
                                           ("--int8-remedy", self.int8_remedy != "plain")) if on]
            if given:
                raise InputError(f"{' and '.join(given)} tune the TFLite/ONNX int8 pose gate; --format coreml has "
                                 f"no such gate (its int8 is weight-only compression, checked by the CoreML "
                                 f"parity figures): leave {'them' if len(given) > 1 else 'it'} out")
