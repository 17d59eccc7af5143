"""``headpose convert``: one model -> one artifact directory (printed as the last line of stdout).

Per-step timing lines and the parity figures go to stderr (logging); errors of the
HeadposeError family become one line and exit status 2 (see ``headpose.cli``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..runtime.formats import FORMAT_NAMES as FORMATS, PRECISIONS  # the one table (palettize6: coreml only)
from .options import DEFAULT_MAX_INT8_ERROR, DEFAULT_MAX_INT8_P99


def add_parser(subparsers) -> None:
    from ..runtime.registry import REGISTRY
    p = subparsers.add_parser(
        "convert", help="convert a pose checkpoint or an SCRFD ONNX into a TFLite/ONNX artifact",
        description="Convert one model into weights/exports/<model>-<size>-<format>-<precision>/ (model file + "
                    "manifest.json), with a parity gate on real face crops / frames. Prints the artifact "
                    "directory as the last line of stdout.")
    p.add_argument("model", metavar="MODEL", help=f"registry id: {', '.join(REGISTRY)}")
    p.add_argument("--weights", required=True, metavar="PATH",
                   help="pose: .pt checkpoint (yakhyo/head-pose-estimation layout) or that repo's .onnx; "
                        "SCRFD: the *_bnkps.onnx file")
    p.add_argument("--format", default="tflite", dest="fmt", metavar="{" + ",".join(FORMATS) + "}",
                   help="artifact format (default tflite; coreml: .mlpackage for iOS 16+, see ios_notes/)")
    p.add_argument("--precision", default="fp32", metavar="{" + ",".join(PRECISIONS) + "}",
                   help="fp32 (default), fp16 weights, int8 (full-integer, calibrated on --calib) or "
                        "dynamic-int8 (int8 weights, float activations); coreml: fp32, fp16, int8 (int8 "
                        "weights, fp16 compute), palettize6 (6-bit k-means weights)")
    p.add_argument("--calib", metavar="PATH", default=None, action="append",
                   help="video, image, folder of real images with faces, or a .txt list of such paths: int8 "
                        "calibration and parity data; repeatable. Several sources are split by source into a "
                        "calibration part and a gate part (never frames of one video on both sides); one source "
                        "is split by its frames (default $HEADPOSE_DATA or ../shared/data/in_video.mp4)")
    p.add_argument("--gate-data", metavar="PATH", default=None, action="append",
                   help="sources (as --calib; repeatable) of the int8 gate and parity checks, kept apart from "
                        "calibration: then every --calib source calibrates")
    p.add_argument("--input-size", type=int, default=None, metavar="N",
                   help="square input side (default: 224 pose, 640 SCRFD; 320 works for SCRFD)")
    p.add_argument("--out", default="weights/exports", metavar="DIR", help="parent directory (default weights/exports)")
    p.add_argument("--detector", default=None, metavar="PATH",
                   help="SCRFD ONNX that finds faces for pose calibration (default weights/ or ../shared)")
    p.add_argument("--force", action="store_true", help="replace an existing artifact")
    p.add_argument("--max-int8-error", type=float, default=DEFAULT_MAX_INT8_ERROR, metavar="DEG",
                   help="int8 pose gate: mean geodesic angle between the int8 and the float model's rotations on "
                        "the gate crops (default 1.0, the strictness of the former 0.5 deg per-axis mean; "
                        "negative: no gate); failing models get an automatic remedy (TFLite only: refused with "
                        "--format coreml)")
    p.add_argument("--max-int8-p99", type=float, default=DEFAULT_MAX_INT8_P99, metavar="DEG",
                   help="int8 pose gate: 99th percentile of that geodesic angle (default 3.0)")
    p.add_argument("--int8-remedy", default="plain", metavar="NAME",
                   help="int8 pose: the model judged first, kept when it passes (or recorded without a gate): "
                        "plain (default), float_head (the FULLY_CONNECTED head in float32), calibration+mirror, "
                        "float_layers:K, int16_activations; the other remedies follow when it fails")
    p.add_argument("--allow-slow-int8", action="store_true",
                   help="let the int8 gate take a remedy slower than the float32 model (int16 activations: "
                        "accurate, but XNNPACK does not run them); refused by default (not with --format coreml)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..runtime.errors import InputError
    if args.fmt not in FORMATS:
        raise InputError(f"--format '{args.fmt}' is not supported: expected one of {', '.join(FORMATS)}")
    if args.precision not in PRECISIONS:
        raise InputError(f"--precision '{args.precision}' is not supported: expected one of {', '.join(PRECISIONS)}")
    from ..runtime.registry import get_spec
    get_spec(args.model)  # unknown ids fail before the heavy imports
    from .options import ConvertOptions
    opts = ConvertOptions.from_args(args)  # one field per flag
    opts.check()  # e.g. the int8-gate flags with --format coreml, before the heavy imports
    from .pipeline import convert_options

    def progress(line: str) -> None:
        print(f"[convert] {line}", file=sys.stderr, flush=True)
    from .staging import stop_on_signals
    with stop_on_signals():  # SIGINT/SIGTERM: stop, remove the temporary folders, exit 130/143
        out = convert_options(opts, progress)
    print(Path(out))
    return 0
