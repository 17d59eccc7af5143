"""The sources artifacts are built from: a pose checkpoint or an SCRFD ONNX file, with its sha256.

Pose weights: a trained checkpoint ``weights/<model>.pt`` or ``weights/<model>_*.pt`` of the project
when one exists (newest first), else a seeded, untrained checkpoint (written under ``root/seeded``).
Detector weights: the SCRFD ONNX files of ``weights/`` or the shared folder. Used by
``convert-matrix`` and, through :mod:`headpose.benchmarks.artifacts`, by ``bench``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from ..runtime.errors import InputError
from ..runtime.manifest import sha256_file
from ..runtime.paths import SHARED_WEIGHTS, WEIGHTS_DIR
from ..runtime.registry import get_spec

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
    """The project's trained checkpoint of ``model_id`` (``<model>.pt`` or newest ``<model>_*.pt``), if any.

    Quantisation-aware fine-tunes (``<model>_*_qat.pt``, ``headpose distill --qat``: made for the int8
    artifact of ``weights/int8/``) are not candidates; name one with ``--weights``. Ties of modification
    time (a fresh clone) go by name.
    """
    exact = weights_dir / f"{model_id}.pt"
    if exact.is_file():
        return exact
    cands = sorted((p for p in weights_dir.glob(f"{model_id}_*.pt") if not p.stem.endswith("_qat")),
                   key=lambda p: (-p.stat().st_mtime, p.name))
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
        from .checkpoint import seeded_checkpoint
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
