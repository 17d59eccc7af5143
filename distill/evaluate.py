"""Accuracy of a pose model against a teacher on held-out real crops, and label-free consistency.

* Against the teacher: yaw/pitch/roll mean absolute error (wrapped, degrees) and the geodesic
  distance between rotation matrices, over all crops and per source.
* Label-free consistency (no teacher needed): the model's prediction on a copy of each crop rotated
  in the image plane by ``theta`` is compared with the exactly transformed prediction on the crop,
  ``Rz(-theta) · P``; on a mirrored copy with ``F · P · F``.
* The teacher's noise floor: when the crop set holds the per-model angles of an averaged ONNX teacher
  (FSA-Net pair), their disagreement.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np

from ..runtime.errors import InputError
from ..runtime.rotation import rotation_from_euler
from .cropset import CropSet, render
from .labels import flip_labels, rotate_labels, summarise

log = logging.getLogger(__name__)

ROTATE_ANGLES = (-20.0, 20.0)


def teacher_noise(cs: CropSet) -> Optional[Dict[str, float]]:
    """Disagreement between the models of an averaged ONNX teacher (the floor against this teacher)."""
    each = np.asarray(cs.each)
    if each.ndim != 3 or each.shape[0] < 2 or each.shape[1] == 0:
        return None
    rs = [rotation_from_euler(e[:, 1], e[:, 0], e[:, 2]).reshape(-1, 3, 3) for e in each]
    s = summarise(rs[0], rs[1])
    s["what"] = "model 1 against model 2 (each is half as far from their mean)"
    return s


def consistency(predictor, cs: CropSet, angles: Sequence[float] = ROTATE_ANGLES,
                base_pred: Optional[np.ndarray] = None) -> Dict[str, Dict[str, float]]:
    """Label-free consistency of ``predictor`` (``rotations(crops)``) on rotated and mirrored copies.

    Returns
    -------
    dict
        ``rotate_<theta>``: :func:`summarise` of P(rotated copy) against ``Rz(-theta) · P(crop)``;
        ``flip``: of P(mirrored copy) against ``F · P(crop) · F``.
    """
    base = np.asarray(cs.base)
    p = predictor.rotations(base) if base_pred is None else base_pred
    out = {}
    for th in angles:
        rot = np.stack([render(cs.ctx[i], cs.centre[i], cs.half[i], base.shape[1], 1.0, (0, 0), th)
                        for i in range(len(cs))])
        out[f"rotate_{th:+g}"] = summarise(predictor.rotations(rot), rotate_labels(p, th))
    out["flip"] = summarise(predictor.rotations(np.ascontiguousarray(base[:, :, ::-1])), flip_labels(p))
    return out


def held_out_split(groups: Sequence[str], same_people: Sequence[str] = ("in_video.mp4",)) -> Dict[str, np.ndarray]:
    """Masks for 'held-out frames of people seen in training' (sources naming ``same_people``) and the rest."""
    g = np.asarray(groups)
    same = np.array([any(s in x for s in same_people) for x in g], bool)
    return {"held_out_frames": same, "unseen_people": ~same}


def evaluate(predictor, cs: CropSet, teacher=None, angles: Sequence[float] = ROTATE_ANGLES,
             limit: Optional[int] = None, with_consistency: bool = True) -> Dict:
    """Full report of ``predictor`` on crop set ``cs`` (labels: ``cs.R``, the teacher's rotations).

    Parameters
    ----------
    predictor : object with ``rotations(crops_uint8_rgb) -> (N, 3, 3)``
    teacher : optional predictor
        Its own consistency is reported next to the student's (the teacher is not equivariant).
    limit : int, optional
        Evaluate on this many crops spread evenly over the set.
    """
    from ..convert.facedata import sample_evenly
    if len(cs) == 0:
        raise InputError("the evaluation crop set is empty: give --data with faces")
    if limit:
        cs = cs.subset(sample_evenly(len(cs), limit))
    pred = predictor.rotations(np.asarray(cs.base))
    ref = np.asarray(cs.R)
    report = {"crops": len(cs), "vs_teacher": {"all": summarise(pred, ref)}}
    for name, mask in held_out_split(cs.group).items():
        if mask.any():
            report["vs_teacher"][name] = summarise(pred[mask], ref[mask])
    report["vs_teacher"]["by_source"] = {g: summarise(pred[cs.group == g], ref[cs.group == g]) for g in cs.groups()}
    report["mean_predictor_baseline"] = summarise(
        np.broadcast_to(_mean_rotation(ref), ref.shape), ref)
    noise = teacher_noise(cs)
    if noise:
        report["teacher_noise"] = noise
    if with_consistency:
        report["consistency"] = consistency(predictor, cs, angles, base_pred=pred)
        if teacher is not None:
            report["teacher_consistency"] = consistency(teacher, cs, angles)
    return report


def _mean_rotation(r: np.ndarray) -> np.ndarray:
    """Chordal mean of rotations (projection of the arithmetic mean onto SO(3))."""
    u, _, vt = np.linalg.svd(np.asarray(r).mean(axis=0))
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1, 1, d]) @ vt


def load_predictor(pose: Union[str, Path], model_id: Optional[str] = None):
    """A predictor for a checkpoint (``.pt``/``.pth``) or a converted artifact folder.

    Raises
    ------
    InputError
        When ``pose`` is neither.
    """
    from .teachers import ArtifactTeacher, CheckpointTeacher
    p = Path(pose)
    if p.is_dir():
        return ArtifactTeacher(p)
    if p.is_file() and p.suffix in (".pt", ".pth", ".ckpt"):
        if not model_id:
            from ..convert.checkpoint import read_state_dict, suggest_backbone
            model_id = suggest_backbone(read_state_dict(p))
            if not model_id:
                raise InputError(f"checkpoint '{p}' fits none of the registered backbones: name it with --model")
        return CheckpointTeacher(model_id, p)
    raise InputError(f"--pose '{pose}' is neither a checkpoint (.pt) nor an artifact folder (manifest.json)")


def format_report(report: Dict) -> str:
    """Human-readable table of an :func:`evaluate` report."""
    cols = ("n", "mae_yaw", "mae_pitch", "mae_roll", "mae_mean", "geodesic_mean", "geodesic_p95")
    rows = []

    def add(name, d):
        rows.append([name] + [str(d.get(c, "")) for c in cols])
    for k, v in report["vs_teacher"].items():
        if k != "by_source":
            add(f"vs teacher: {k}", v)
    for k, v in report["vs_teacher"].get("by_source", {}).items():
        add(f"  {Path(k.split('#')[0].split('@')[0]).name}{k[len(k.split('#')[0].split('@')[0]):]}", v)
    add("predict-the-mean baseline", report["mean_predictor_baseline"])
    if "teacher_noise" in report:
        add("teacher noise (model 1 vs 2)", report["teacher_noise"])
    for key, label in (("consistency", "student"), ("teacher_consistency", "teacher")):
        for k, v in report.get(key, {}).items():
            add(f"{label} consistency {k}", v)
    widths = [max(len(r[i]) for r in rows + [["", *cols]]) for i in range(len(cols) + 1)]
    head = "  ".join(c.ljust(w) for c, w in zip(["", *cols], widths))
    return "\n".join([head] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows])
