"""6D rotation representation, rotation matrices and Euler angles, in NumPy.

Conventions (those of 6DRepNet and yakhyo/head-pose-estimation):

* ``rotation_from_6d``: the two 3-vectors ``a1 = v[:3]``, ``a2 = v[3:]`` are orthonormalised by
  Gram-Schmidt into the *columns* of ``R``: ``x = a1/|a1|``, ``z = (x × a2)/|x × a2|``, ``y = z × x``.
* ``euler_from_rotation``: ``pitch = atan2(R21, R22)`` (about x), ``yaw = atan2(-R20, sqrt(R00²+R10²))``
  (about y), ``roll = atan2(R10, R00)`` (about z), degrees; the inverse of
  ``R = Rz(roll) · Ry(yaw) · Rx(pitch)`` (:func:`rotation_from_euler`).
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-8


def _normalise(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)


def rotation_from_6d(v6: np.ndarray) -> np.ndarray:
    """Gram-Schmidt the 6D representation into rotation matrices.

    Parameters
    ----------
    v6 : ndarray, shape (B, 6) or (6,), float
        Raw network output, any scale.

    Returns
    -------
    ndarray, shape (B, 3, 3) (or (3, 3)), float64
        Proper rotation matrices (orthonormal, det = +1).
    """
    v6 = np.asarray(v6, dtype=np.float64)
    single = v6.ndim == 1
    v6 = v6.reshape(-1, 6)
    x = _normalise(v6[:, 0:3])
    z = _normalise(np.cross(x, v6[:, 3:6]))
    y = np.cross(z, x)
    r = np.stack([x, y, z], axis=2)
    return r[0] if single else r


def euler_from_rotation(r: np.ndarray) -> np.ndarray:
    """Rotation matrices to (pitch, yaw, roll) in degrees.

    Parameters
    ----------
    r : ndarray, shape (B, 3, 3) or (3, 3)

    Returns
    -------
    ndarray, shape (B, 3) (or (3,)), float64
        ``[pitch, yaw, roll]`` in degrees; pitch and roll in (-180, 180], yaw in [-90, 90].
        At gimbal lock (``sqrt(R00²+R10²) < 1e-6``) roll is 0 and pitch absorbs it, as upstream.
    """
    r = np.asarray(r, dtype=np.float64)
    single = r.ndim == 2
    r = r.reshape(-1, 3, 3)
    sy = np.sqrt(r[:, 0, 0] ** 2 + r[:, 1, 0] ** 2)
    singular = sy < 1e-6
    pitch = np.where(singular, np.arctan2(-r[:, 1, 2], r[:, 1, 1]), np.arctan2(r[:, 2, 1], r[:, 2, 2]))
    yaw = np.arctan2(-r[:, 2, 0], sy)
    roll = np.where(singular, 0.0, np.arctan2(r[:, 1, 0], r[:, 0, 0]))
    out = np.degrees(np.stack([pitch, yaw, roll], axis=1))
    return out[0] if single else out


def rotation_from_euler(pitch: np.ndarray, yaw: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """``R = Rz(roll) · Ry(yaw) · Rx(pitch)`` from angles in degrees.

    Parameters
    ----------
    pitch, yaw, roll : array_like, shape (B,) or scalars, degrees

    Returns
    -------
    ndarray, shape (B, 3, 3) (or (3, 3) for scalars), float64
    """
    p, y, r = (np.radians(np.asarray(a, dtype=np.float64)) for a in (pitch, yaw, roll))
    scalar = p.ndim == 0
    p, y, r = np.atleast_1d(p), np.atleast_1d(y), np.atleast_1d(r)
    cp, sp, cy, sy, cr, sr = np.cos(p), np.sin(p), np.cos(y), np.sin(y), np.cos(r), np.sin(r)
    one, zero = np.ones_like(p), np.zeros_like(p)
    rx = np.stack([one, zero, zero, zero, cp, -sp, zero, sp, cp], -1).reshape(-1, 3, 3)
    ry = np.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).reshape(-1, 3, 3)
    rz = np.stack([cr, -sr, zero, sr, cr, zero, zero, zero, one], -1).reshape(-1, 3, 3)
    out = rz @ ry @ rx
    return out[0] if scalar else out


def euler_from_6d(v6: np.ndarray) -> np.ndarray:
    """(pitch, yaw, roll) in degrees straight from the 6D output; shape (B, 3)."""
    return euler_from_rotation(rotation_from_6d(np.asarray(v6).reshape(-1, 6)))


def _relative_angle(d: np.ndarray) -> np.ndarray:
    """Angle in radians of rotations ``d`` (B, 3, 3): ``2·atan2(sin(θ/2), cos(θ/2))``.

    ``sin(θ/2) = ‖d − I‖_F / (2√2)`` and ``cos(θ/2) = √(tr d + 1) / 2``. Unlike ``arccos((tr − 1) / 2)``
    it stays accurate for small angles: rotations rounded to float32 are orthonormal to ~1e-7, which
    moved the arccos form by up to 0.03 deg for identical rotations (a noise floor near the 0.05 deg
    fp32 parity gate).
    """
    eye = np.eye(3)
    s = np.linalg.norm((d - eye).reshape(-1, 9), axis=1) / (2.0 * np.sqrt(2.0))
    c = np.sqrt(np.maximum(np.trace(d, axis1=1, axis2=2) + 1.0, 0.0)) / 2.0
    return 2.0 * np.arctan2(s, c)


def geodesic_deg(r1: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Angle of ``r1ᵀ·r2`` in degrees, shape (B,): the rotation distance, 0..180."""
    r1 = np.asarray(r1, dtype=np.float64).reshape(-1, 3, 3)
    r2 = np.asarray(r2, dtype=np.float64).reshape(-1, 3, 3)
    return np.degrees(_relative_angle(np.swapaxes(r1, 1, 2) @ r2))


def rotation_error_deg(r_ref: np.ndarray, r_test: np.ndarray) -> np.ndarray:
    """Rotation vector of ``r_test·r_refᵀ`` in degrees, shape (B, 3): the error about the camera's
    x (pitch), y (yaw) and z (roll) axes.

    Unlike Euler differences it is defined everywhere: near |yaw| = 90 deg pitch and roll are
    degenerate, and a small rotation error can move them by tens of degrees. Its norm is
    :func:`geodesic_deg`; for small errors of a frontal face its components match the Euler
    differences.
    """
    r_ref = np.asarray(r_ref, dtype=np.float64).reshape(-1, 3, 3)
    r_test = np.asarray(r_test, dtype=np.float64).reshape(-1, 3, 3)
    d = r_test @ np.swapaxes(r_ref, 1, 2)
    v = 0.5 * np.stack([d[:, 2, 1] - d[:, 1, 2], d[:, 0, 2] - d[:, 2, 0], d[:, 1, 0] - d[:, 0, 1]], axis=1)
    sin = np.linalg.norm(v, axis=1)
    angle = _relative_angle(d)
    scale = np.where(sin > 1e-12, angle / np.maximum(sin, 1e-12), 1.0)  # theta / sin(theta) -> 1
    return np.degrees(v * scale[:, None])


def angle_difference_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise wrapped difference ``|a - b|`` of angles in degrees, in 0..180."""
    d = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64) + 180.0) % 360.0 - 180.0
    return np.abs(d)
