"""Temporal smoothing of head rotations: a One-Euro filter applied on the rotation itself.

Angles wrap (a roll of 179° followed by -179° is a 2° change, not 358°) and Euler angles are not a
vector space, so the filter never sees yaw/pitch/roll. It filters the rotation's **6D
representation** - the first two columns of ``R``, the same 6 numbers the pose network outputs -
which changes continuously with the rotation, and re-orthonormalises the result with the same
Gram-Schmidt as the network's decoding (:func:`~headpose.runtime.rotation.rotation_from_6d`).
Euler angles are read off the smoothed matrix afterwards.

:func:`jitter_deg_per_frame` gives the jitter figure: the mean rotation angle between consecutive
frames, in degrees per frame (on a static head this is pure noise).
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from .errors import InputError
from .rotation import geodesic_deg, rotation_from_6d

#: Default parameters of the rotation filter (see :class:`OneEuroFilter`).
DEFAULT_MIN_CUTOFF = 1.0  # Hz
DEFAULT_BETA = 2.0  # Hz per (6D unit / s)
DEFAULT_D_CUTOFF = 1.0  # Hz
DEFAULT_DT = 1.0 / 30.0  # s, used when timestamps do not increase


class OneEuroFilter:
    r"""The One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) over a vector of D values.

    An adaptive exponential low-pass filter: heavy smoothing (low cutoff) when the signal is still,
    light smoothing (high cutoff) when it moves fast, so a static head stops jittering while a
    turning head does not lag.

    Maths, for samples :math:`x_i \in \mathbb{R}^D` at times :math:`t_i` (seconds)::

        first sample:  x̂_0 = x_0,  dx̂_0 = 0 (a D-vector of zeros)
        Δt_i  = t_i - t_{i-1}            (if Δt_i <= 0, Δt_i = 1/30 s is used instead)
        α(f)  = 1 / (1 + 1 / (2π · f · Δt_i))          smoothing factor of cutoff f (Hz)
        dx_i  = (x_i - x̂_{i-1}) / Δt_i                 raw derivative (per second)
        dx̂_i  = dx̂_{i-1} + α(d_cutoff) · (dx_i - dx̂_{i-1})    low-passed derivative
        f_i   = min_cutoff + beta · ‖dx̂_i‖₂            adaptive cutoff (Euclidean norm over D)
        x̂_i   = x̂_{i-1} + α(f_i) · (x_i - x̂_{i-1})     the output

    The speed is the Euclidean norm of the whole derivative vector (for D = 1 it is ``|dx̂|`` as in
    the paper), so every element is blended with the same factor α(f_i): the output is a straight
    blend of the previous output and the new sample. Computation is in float64.

    Parameters
    ----------
    min_cutoff : float
        Cutoff frequency (Hz) at zero speed; lower = less jitter, more lag at rest. > 0.
    beta : float
        Cutoff increase per unit of speed (Hz per unit/s); higher = less lag when moving. >= 0.
    d_cutoff : float
        Cutoff (Hz) of the derivative's own low-pass. > 0.

    Examples
    --------
    ``f = OneEuroFilter(min_cutoff=1.0, beta=0.0)``; ``f([0.0], 0.0)`` gives ``[0.0]``, then
    ``f([1.0], 0.1)`` gives ``[0.38587]`` (α = 1 / (1 + 1 / (2π·1·0.1)) = 0.38587).
    """

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA,
                 d_cutoff: float = DEFAULT_D_CUTOFF):
        if not (min_cutoff > 0 and d_cutoff > 0 and beta >= 0):
            raise InputError(f"One-Euro parameters must be min_cutoff > 0, d_cutoff > 0, beta >= 0; found "
                             f"min_cutoff={min_cutoff}, beta={beta}, d_cutoff={d_cutoff}")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the history; the next sample passes through unchanged."""
        self.x_prev: Optional[np.ndarray] = None
        self.dx_prev: Optional[np.ndarray] = None
        self.t_prev: Optional[float] = None

    @staticmethod
    def alpha(cutoff: float, dt: float) -> float:
        """Smoothing factor ``1 / (1 + 1 / (2π · cutoff · dt))`` in (0, 1)."""
        return 1.0 / (1.0 + 1.0 / (2.0 * math.pi * cutoff * dt))

    def __call__(self, x, t: float) -> np.ndarray:
        """Filter one sample.

        Parameters
        ----------
        x : array_like, shape (D,) (a scalar is treated as D = 1)
        t : float
            Time of the sample in seconds (any origin; only differences matter).

        Returns
        -------
        ndarray, shape (D,), float64: the filtered sample
        """
        x = np.atleast_1d(np.asarray(x, dtype=np.float64)).reshape(-1)
        t = float(t)
        if self.x_prev is None or self.x_prev.shape != x.shape:
            self.x_prev, self.dx_prev, self.t_prev = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self.t_prev
        if not dt > 0:
            dt = DEFAULT_DT
        dx = (x - self.x_prev) / dt
        dx_hat = self.dx_prev + self.alpha(self.d_cutoff, dt) * (dx - self.dx_prev)
        cutoff = self.min_cutoff + self.beta * float(np.linalg.norm(dx_hat))
        x_hat = self.x_prev + self.alpha(cutoff, dt) * (x - self.x_prev)
        self.x_prev, self.dx_prev, self.t_prev = x_hat, dx_hat, t
        return x_hat.copy()


class RotationSmoother:
    """One-Euro filter on a rotation: filter its 6D representation, then re-orthonormalise.

    ``v = [R[:, 0], R[:, 1]]`` (the first two columns, 6 numbers) goes through a
    :class:`OneEuroFilter`; the output is Gram-Schmidt-ed back into a rotation matrix with
    :func:`~headpose.runtime.rotation.rotation_from_6d` (``x = n(v1)``, ``z = n(x × v2)``, ``y = z × x``).
    The speed the filter adapts to is the norm of the 6D derivative, about the angular speed in
    rad/s (a rotation of ω rad/s about any axis moves the two columns by between ω and √2·ω).

    Parameters
    ----------
    min_cutoff, beta, d_cutoff : float
        As for :class:`OneEuroFilter`.
    """

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA,
                 d_cutoff: float = DEFAULT_D_CUTOFF):
        self.filter = OneEuroFilter(min_cutoff, beta, d_cutoff)

    def reset(self) -> None:
        self.filter.reset()

    def __call__(self, rotation: np.ndarray, t: float) -> np.ndarray:
        """Smooth one rotation.

        Parameters
        ----------
        rotation : ndarray, (3, 3), a rotation matrix
        t : float, seconds

        Returns
        -------
        ndarray, (3, 3), float64: a proper rotation matrix (orthonormal, det +1)
        """
        r = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
        v = np.concatenate([r[:, 0], r[:, 1]])
        return rotation_from_6d(self.filter(v, t))


def jitter_deg_per_frame(rotations: np.ndarray) -> float:
    """Mean rotation angle between consecutive frames, degrees per frame.

    Parameters
    ----------
    rotations : ndarray, (T, 3, 3), T >= 2: one track's rotations over consecutive frames

    Returns
    -------
    float: mean geodesic angle of ``R_{t-1}ᵀ R_t``; on a static head this is the jitter
    """
    r = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    if r.shape[0] < 2:
        raise InputError(f"jitter needs at least 2 frames of one track, found {r.shape[0]}")
    return float(np.mean(geodesic_deg(r[:-1], r[1:])))
