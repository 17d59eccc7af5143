"""One-Euro filter maths and the rotation smoother (no artifacts needed)."""

import math

import numpy as np
import pytest

from headpose.runtime.errors import InputError
from headpose.runtime.rotation import angle_difference_deg, euler_from_rotation, geodesic_deg, rotation_from_euler
from headpose.runtime.smoothing import OneEuroFilter, RotationSmoother, jitter_deg_per_frame


def reference_one_euro(xs, ts, min_cutoff, beta, d_cutoff):
    """Straight transcription of the docstring maths, one sample at a time, in plain Python floats."""
    out, x_hat, dx_hat, t_prev = [], None, None, None
    for x, t in zip(xs, ts):
        x = [float(v) for v in x]
        if x_hat is None:
            x_hat, dx_hat, t_prev = x, [0.0] * len(x), t
            out.append(list(x))
            continue
        dt = t - t_prev
        a_d = 1.0 / (1.0 + 1.0 / (2 * math.pi * d_cutoff * dt))
        dx = [(xi - hi) / dt for xi, hi in zip(x, x_hat)]
        dx_hat = [p + a_d * (d - p) for p, d in zip(dx_hat, dx)]
        cutoff = min_cutoff + beta * math.sqrt(sum(v * v for v in dx_hat))
        a = 1.0 / (1.0 + 1.0 / (2 * math.pi * cutoff * dt))
        x_hat = [h + a * (xi - h) for h, xi in zip(x_hat, x)]
        t_prev = t
        out.append(list(x_hat))
    return np.array(out)


def test_first_step_closed_form():
    f = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    np.testing.assert_allclose(f([0.0], 0.0), [0.0])
    alpha = 1.0 / (1.0 + 1.0 / (2 * math.pi * 1.0 * 0.1))
    np.testing.assert_allclose(f([1.0], 0.1), [alpha], rtol=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.7, 5.0])
def test_matches_docstring_maths(beta):
    rng = np.random.default_rng(3)
    ts = np.cumsum(rng.uniform(0.02, 0.05, 60))
    xs = np.cumsum(rng.normal(size=(60, 6)), axis=0)
    f = OneEuroFilter(min_cutoff=1.3, beta=beta, d_cutoff=0.8)
    got = np.stack([f(x, t) for x, t in zip(xs, ts)])
    np.testing.assert_allclose(got, reference_one_euro(xs, ts, 1.3, beta, 0.8), rtol=1e-10, atol=1e-12)


def test_beta_trades_jitter_for_lag():
    ts = np.arange(100) / 30.0
    ramp = np.linspace(0, 10, 100)[:, None]
    lag = {}
    for beta in (0.0, 1.0):
        f = OneEuroFilter(min_cutoff=1.0, beta=beta)
        lag[beta] = abs(ramp[-1, 0] - np.stack([f(x, t) for x, t in zip(ramp, ts)])[-1, 0])
    assert lag[1.0] < lag[0.0] / 3  # the speed-adaptive cutoff follows a moving signal


def test_non_increasing_time_and_reset():
    f = OneEuroFilter()
    f([1.0, 2.0], 5.0)
    y = f([1.0, 2.0], 5.0)  # dt = 0 -> default dt, no division by zero
    assert np.all(np.isfinite(y))
    f.reset()
    np.testing.assert_array_equal(f([7.0, 8.0], 0.0), [7.0, 8.0])


def test_bad_parameters():
    with pytest.raises(InputError, match="min_cutoff"):
        OneEuroFilter(min_cutoff=0)


def test_rotation_smoother_crosses_the_roll_wrap():
    """Roll 176..184 deg (wraps to -176): filtering the rotation stays near 180, wrapped angles would not."""
    rolls = np.linspace(176, 184, 30)
    truth = rotation_from_euler(np.full(30, 10.0), np.full(30, 20.0), rolls)
    s = RotationSmoother()
    out = np.stack([s(r, i / 30) for i, r in enumerate(truth)])
    np.testing.assert_allclose(out @ np.transpose(out, (0, 2, 1)), np.broadcast_to(np.eye(3), out.shape), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(out), 1.0, atol=1e-9)
    assert np.max(geodesic_deg(out, truth)) < 3.0
    assert np.max(angle_difference_deg(euler_from_rotation(out)[:, 2], 180.0)) < 8.0


def test_rotation_smoother_reduces_jitter_of_a_static_head():
    rng = np.random.default_rng(0)
    base = np.array([5.0, -30.0, 12.0])
    noisy = rotation_from_euler(*(base[:, None] + rng.normal(scale=1.5, size=(3, 150))))
    s = RotationSmoother()
    smooth = np.stack([s(r, i / 25) for i, r in enumerate(noisy)])
    raw_j, smooth_j = jitter_deg_per_frame(noisy), jitter_deg_per_frame(smooth)
    assert smooth_j < raw_j / 3, (raw_j, smooth_j)
    # and it does not drift away from the static pose
    assert np.mean(geodesic_deg(smooth[20:], rotation_from_euler(*base))) < 1.5


def test_jitter_needs_two_frames():
    with pytest.raises(InputError):
        jitter_deg_per_frame(np.eye(3)[None])


def test_default_rotation_filter_lag_is_small_when_turning():
    """Defaults (min_cutoff 1 Hz, beta 2): a head turning at 90 deg/s (25 fps) lags < 3 deg behind."""
    n = 50
    truth = rotation_from_euler(np.zeros(n), np.arange(n) * 90.0 / 25 - 40, np.zeros(n))
    s = RotationSmoother()
    out = np.stack([s(r, i / 25) for i, r in enumerate(truth)])
    assert geodesic_deg(out[-1], truth[-1])[0] < 3.0
