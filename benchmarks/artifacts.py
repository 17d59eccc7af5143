"""Finding (and, on a development machine, building) the artifacts a benchmark run needs.

An artifact is looked up as ``<root>/<model>-<weights tag>/<model>-<size>-<format>-<precision>``
where the weights tag is the first 12 hex digits of the source file's sha256, so artifacts built
from different checkpoints never mix. Missing artifacts are built with
:func:`headpose.convert.pipeline.convert` (the ``convert`` extra) when ``build=True``.

Pose weights: a trained checkpoint ``weights/<model>.pt`` or ``weights/<model>_*.pt`` of the project
when one exists (newest first), else a seeded, untrained checkpoint (fine for speed: the cost of a
network does not depend on its weights; results record which was used). Detector weights: the SCRFD
ONNX files of ``../shared/weights`` or ``weights/``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional

from ..runtime.errors import ConversionError, InputError, ManifestError
from ..runtime.manifest import artifact_id, load_manifest, sha256_file
from ..runtime.registry import get_spec

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS_DIR = PROJECT_ROOT / "weights"
SHARED_WEIGHTS = Path(os.environ.get("HEADPOSE_SHARED", PROJECT_ROOT.parent / "shared")) / "weights"
DEFAULT_ROOT = WEIGHTS_DIR / "cache" / "bench"

# Which SCRFD ONNX file holds which registered detector.
DETECTOR_FILES = {"scrfd_500m": "scrfd_500m_bnkps.onnx", "scrfd_2.5g": "scrfd_2.5g_bnkps.onnx",
                  "scrfd_10g": "scrfd_10g_bnkps.onnx"}


@dataclass
class Weights:
    """The source of one model's artifacts: ``path``, ``kind`` (trained / seeded / released), ``sha256``."""

    model: str
    path: Path
    kind: str
    sha256: str

    @property
    def tag(self) -> str:
        return f"{self.model}-{self.sha256[:12]}"

    def to_dict(self) -> Dict[str, str]:
        return {"model": self.model, "path": str(self.path), "kind": self.kind, "sha256": self.sha256}


def trained_pose_checkpoint(model_id: str, weights_dir: Path = WEIGHTS_DIR) -> Optional[Path]:
    """The project's trained checkpoint of ``model_id`` (``<model>.pt`` or newest ``<model>_*.pt``), if any."""
    exact = weights_dir / f"{model_id}.pt"
    if exact.is_file():
        return exact
    cands = sorted(weights_dir.glob(f"{model_id}_*.pt"), key=lambda p: p.stat().st_mtime, reverse=True)
    return cands[0] if cands else None


def pose_weights(model_id: str, explicit: Optional[Path] = None, root: Path = DEFAULT_ROOT,
                 allow_seeded: bool = True, prefer_seeded: bool = False, seed: int = 0) -> Weights:
    """Resolve the checkpoint a pose model's artifacts are built from.

    Parameters
    ----------
    explicit : path, optional
        A checkpoint given on the command line (wins).
    allow_seeded : bool
        Write a seeded checkpoint (seed 0) under ``root/seeded`` when no trained one exists.
    prefer_seeded : bool
        Use the seeded checkpoint even when a trained one exists (``--seeded``: the cost of a
        network does not depend on its weights, and existing artifacts are reused).
    seed : int
        Seed of a seeded checkpoint (written as ``root/seeded/<model>.pt``, or ``<model>-seed<N>.pt``).

    Raises
    ------
    InputError
        When nothing is found and seeded checkpoints are not allowed.
    """
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise InputError(f"pose weights '{p}' do not exist: expected a .pt checkpoint of {model_id}")
        return Weights(model_id, p, "given", sha256_file(p))
    p = None if prefer_seeded else trained_pose_checkpoint(model_id)
    if p is not None:
        return Weights(model_id, p, "trained", sha256_file(p))
    if not allow_seeded:
        raise InputError(f"no trained checkpoint of {model_id} in {WEIGHTS_DIR} (expected {model_id}.pt or "
                         f"{model_id}_*.pt); pass --pose-weights or allow seeded weights")
    p = root / "seeded" / (f"{model_id}.pt" if seed == 0 else f"{model_id}-seed{seed}.pt")
    if not p.is_file():
        from ..convert.checkpoint import seeded_checkpoint
        p.parent.mkdir(parents=True, exist_ok=True)
        seeded_checkpoint(model_id, p, seed=seed)
    return Weights(model_id, p, "seeded", sha256_file(p))


def detector_weights(model_id: str, explicit: Optional[Path] = None) -> Weights:
    """Resolve the SCRFD ONNX file of a registered detector (``--detector-weights`` wins)."""
    if get_spec(model_id).task != "face_detection":
        raise InputError(f"'{model_id}' is not a face detector: expected one of {', '.join(DETECTOR_FILES)}")
    if explicit is not None:
        p = Path(explicit)
        if not p.is_file():
            raise InputError(f"detector weights '{p}' do not exist: expected an SCRFD .onnx file")
        return Weights(model_id, p, "given", sha256_file(p))
    name = DETECTOR_FILES.get(model_id)
    for d in (WEIGHTS_DIR, SHARED_WEIGHTS):
        if name and (d / name).is_file():
            return Weights(model_id, d / name, "released", sha256_file(d / name))
    raise InputError(f"no ONNX file for detector {model_id}: looked for {name} in {WEIGHTS_DIR} and "
                     f"{SHARED_WEIGHTS}; pass --detector-weights PATH")


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
