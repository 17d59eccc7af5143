"""Label maths of distillation and evaluation, in one place.

Labels are rotation matrices (N, 3, 3). An augmentation transforms a crop's label *exactly*: an
in-plane rotation by ``theta`` (counter-clockwise on screen, OpenCV's positive angle) gives
``R' = Rz(-theta) · R``; a horizontal flip gives ``R' = F · R · F`` with ``F = diag(-1, 1, 1)``.
:func:`summarise` gives the error figures of predicted rotations against reference ones. Training
(:mod:`.distill`) and evaluation (:mod:`.evaluate`) both read these; neither imports the other.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

from ..runtime.errors import InputError
from ..runtime.rotation import angle_difference_deg, euler_from_rotation, geodesic_deg, rotation_from_euler

FLIP = np.diag([-1.0, 1.0, 1.0])


def rotate_labels(r: np.ndarray, theta_deg) -> np.ndarray:
    """Exact label of a crop rotated by ``theta`` degrees counter-clockwise on screen: ``Rz(-theta) · R``.

    Parameters
    ----------
    r : (N, 3, 3) or (3, 3)
    theta_deg : float or (N,)
    """
    r = np.asarray(r, np.float64)
    th = np.broadcast_to(np.asarray(theta_deg, np.float64), r.shape[:-2] if r.ndim == 3 else ())
    z = np.zeros_like(th)
    rz = rotation_from_euler(z, z, -th)
    return rz @ r


def flip_labels(r: np.ndarray) -> np.ndarray:
    """Exact label of a horizontally mirrored crop: ``F · R · F``, ``F = diag(-1, 1, 1)`` (yaw, roll negated)."""
    return FLIP @ np.asarray(r, np.float64) @ FLIP


def _r2(x) -> float:
    return round(float(x), 2)


def summarise(pred: np.ndarray, ref: np.ndarray) -> Dict[str, float]:
    """Error figures of rotations ``pred`` against ``ref``, both (N, 3, 3).

    Returns
    -------
    dict
        ``n``, ``mae_yaw``, ``mae_pitch``, ``mae_roll``, ``mae_mean`` (mean of the three),
        ``geodesic_mean``, ``geodesic_median``, ``geodesic_p95`` (degrees).
    """
    pred, ref = np.asarray(pred).reshape(-1, 3, 3), np.asarray(ref).reshape(-1, 3, 3)
    if len(pred) != len(ref):
        raise InputError(f"{len(pred)} predictions against {len(ref)} references: expected as many")
    if not len(pred):
        return {"n": 0}
    e = angle_difference_deg(euler_from_rotation(pred), euler_from_rotation(ref))  # pitch, yaw, roll
    g = geodesic_deg(pred, ref)
    return {"n": int(len(pred)), "mae_yaw": _r2(e[:, 1].mean()), "mae_pitch": _r2(e[:, 0].mean()),
            "mae_roll": _r2(e[:, 2].mean()), "mae_mean": _r2(e.mean()), "geodesic_mean": _r2(g.mean()),
            "geodesic_median": _r2(np.median(g)), "geodesic_p95": _r2(np.percentile(g, 95))}
