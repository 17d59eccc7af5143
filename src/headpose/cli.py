"""``headpose`` command line: one entry point, one sub-command per stage.

Each stage's module exposes ``add_parser(subparsers)``, which registers its sub-command with
``set_defaults(func=...)``; those modules import their heavy dependencies (torch, TensorFlow)
only inside the function that runs, so ``headpose --help`` and the device runtime stay light.
Errors of the :class:`~headpose.runtime.errors.HeadposeError` family print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import List, Optional

# Modules that register sub-commands, in the order they appear in --help.
STAGES = (
    "headpose.runtime.cli",
    "headpose.convert.cli",
    "headpose.convert.matrix",
    "headpose.benchmarks.cli",
    "headpose.distill.cli",
)


def _models(args: argparse.Namespace) -> int:
    from headpose.runtime.registry import format_registry
    print(format_registry())
    return 0


def _build_run_defaults(args: argparse.Namespace) -> None:
    """``headpose run`` without --detector/--pose: build the default artifacts on first use.

    Lives here, above both stages, because the runtime never imports the converter. Where the
    convert extra is not installed (a device), the runtime's own message says how to build them.
    """
    if getattr(args, "detector", None) and getattr(args, "pose", None):
        return
    from headpose.runtime.cli import default_artifacts
    from headpose.runtime.errors import ManifestError
    try:
        default_artifacts()
        return
    except ManifestError:
        try:
            import onnx2tf  # noqa: F401  (the convert extra; a device install lacks it)
            import torch  # noqa: F401
        except ImportError:
            return
    from headpose.convert.defaults import ensure_default_artifacts
    logging.getLogger("headpose").info("building the default artifacts (first use; a few minutes)")
    ensure_default_artifacts()


def build_parser() -> argparse.ArgumentParser:
    from headpose import __version__
    parser = argparse.ArgumentParser(prog="headpose", description="Real-time head pose estimation on the edge.")
    parser.add_argument("--version", action="version", version=f"headpose-edge {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("models", help="list every model the toolkit knows (the registry)")
    p.set_defaults(func=_models)
    for name in STAGES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):
                continue  # a stage this install does not have
            raise
        module.add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    from headpose.runtime.errors import HeadposeError
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # what was parsed: results record it as the command that repeats the run
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if args.command == "run":
            _build_run_defaults(args)
        return int(args.func(args) or 0)
    except HeadposeError as e:
        print(f"headpose {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # a conversion stopped by SIGTERM carries its signal: exit 143
        print(f"headpose {args.command}: interrupted", file=sys.stderr)
        return 128 + getattr(e, "signum", 2)


if __name__ == "__main__":
    sys.exit(main())
