"""Finding (and, on a development machine, building) the artifacts a benchmark run needs.

An artifact is looked up as ``<root>/<model>-<weights tag>/<model>-<size>-<format>-<precision>``
where the weights tag is the first 12 hex digits of the source file's sha256, so artifacts built
from different checkpoints never mix. Missing artifacts are built with
:func:`headpose.convert.pipeline.convert` (the ``convert`` extra) when ``build=True``.

The weights are resolved by :mod:`headpose.convert.weights` (a seeded checkpoint is fine for speed:
the cost of a network does not depend on its weights; results record which was used).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

from ..convert.weights import (DEFAULT_ROOT, DETECTOR_FILES, Weights, detector_weights,  # noqa: F401 (bench's names)
                               pose_weights, trained_pose_checkpoint)
from ..runtime.errors import ConversionError, ManifestError
from ..runtime.manifest import artifact_id, load_manifest
from ..runtime.paths import SHARED_WEIGHTS  # noqa: F401
from ..runtime.registry import get_spec

log = logging.getLogger(__name__)

def artifact_dir(weights: Weights, fmt: str, precision: str, root: Path = DEFAULT_ROOT) -> Path:
    """Where the artifact of these weights, format and precision lives (built or not)."""
    spec = get_spec(weights.model)
    return Path(root) / weights.tag / artifact_id(weights.model, spec.input_size, fmt, precision)


def ensure_artifact(weights: Weights, fmt: str, precision: str, root: Path = DEFAULT_ROOT, build: bool = True,
                    calib: Optional[Path] = None, detector_onnx: Optional[Path] = None,
                    progress: Optional[Callable[[str], None]] = None, retry_failed: bool = False) -> Path:
    """The artifact directory, built with the conversion pipeline when missing and ``build`` is set.

    Raises
    ------
    ManifestError
        Missing artifact with ``build=False``.
    ConversionError
        The conversion failed (now, or in an earlier run: a ``<artifact>.failed`` marker holds the
        error and the build is not retried unless ``retry_failed``).
    """
    d = artifact_dir(weights, fmt, precision, root)
    if (d / "manifest.json").is_file():
        load_manifest(d)
        return d
    failed = d.with_name(d.name + ".failed")
    if failed.is_file() and not retry_failed:
        raise ConversionError(f"building {d.name} failed before ({failed.read_text().strip()}); not retried "
                              f"(pass --retry-failed, or delete {failed})")
    if not build:
        raise ManifestError(f"artifact '{d}' is missing: run `headpose bench` with building allowed (the "
                            f"convert extra), or `headpose convert {weights.model} --weights {weights.path} "
                            f"--format {fmt} --precision {precision}`")
    from ..convert.pipeline import convert
    log.info("building %s from %s (%s weights)", d.name, weights.path, weights.kind)
    try:
        out = convert(weights.model, weights.path, fmt=fmt, precision=precision, calib=calib,
                      out_dir=d.parent, detector=detector_onnx, progress=progress)
    except Exception as e:
        d.parent.mkdir(parents=True, exist_ok=True)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        failed.write_text(f"{type(e).__name__}: {first}\n")
        raise ConversionError(f"building {d.name} failed: {type(e).__name__}: {first}") from e
    if failed.exists():
        failed.unlink()
    return out
