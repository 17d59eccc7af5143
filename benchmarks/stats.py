"""Latency statistics and budget verdicts.

Every latency in a result file is in milliseconds. Percentiles use linear interpolation between
order statistics (NumPy's default ``linear`` method), so ``p50`` of ``[1, 2, 3, 4]`` is 2.5.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np

from ..runtime.errors import InputError

# The budget every configuration is judged against (issue #4): real time is 30 FPS or more and a
# worst-case (p99) end-to-end latency under 100 ms.
BUDGETS = {"fps_min": 30.0, "p99_ms_max": 100.0}

STAT_KEYS = ("n", "mean", "std", "min", "p50", "p90", "p99", "max")


def summarize(samples_ms: Iterable[float]) -> Dict[str, float]:
    """Summary statistics of latency samples.

    Parameters
    ----------
    samples_ms : iterable of float
        Latencies in milliseconds (>= 0), at least one.

    Returns
    -------
    dict
        ``n`` (count), ``mean``, ``std`` (population, ddof=0), ``min``, ``p50``, ``p90``, ``p99``,
        ``max``, all in ms and rounded to microseconds (3 decimals).

    Raises
    ------
    InputError
        For an empty sequence or non-finite samples.
    """
    a = np.asarray(list(samples_ms), dtype=np.float64)
    if a.size == 0:
        raise InputError("no latency samples to summarise: expected at least one measurement")
    if not np.all(np.isfinite(a)):
        raise InputError(f"latency samples must be finite, found {int((~np.isfinite(a)).sum())} non-finite")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    out = {"n": int(a.size), "mean": a.mean(), "std": a.std(), "min": a.min(), "p50": p50, "p90": p90,
           "p99": p99, "max": a.max()}
    return {k: (v if k == "n" else round(float(v), 3)) for k, v in out.items()}


def fps(frames: int, seconds: float) -> float:
    """Throughput in frames per second (0 when no time has passed)."""
    return round(frames / seconds, 3) if seconds > 0 else 0.0


def verdict(fps_value: Optional[float], p99_ms: Optional[float], budgets: Dict[str, float] = BUDGETS
            ) -> Dict[str, str]:
    """PASS/FAIL per budget and overall.

    Parameters
    ----------
    fps_value : float or None
        Measured frames per second of the pipeline (None: not measured -> ``n/a``).
    p99_ms : float or None
        99th percentile end-to-end latency in ms.

    Returns
    -------
    dict
        ``{"fps": "PASS"|"FAIL"|"n/a", "p99": ..., "overall": ...}``; overall is PASS only when both
        measured budgets pass.
    """
    v = {"fps": "n/a" if fps_value is None else ("PASS" if fps_value >= budgets["fps_min"] else "FAIL"),
         "p99": "n/a" if p99_ms is None else ("PASS" if p99_ms < budgets["p99_ms_max"] else "FAIL")}
    measured = [x for x in v.values() if x != "n/a"]
    v["overall"] = "n/a" if not measured else ("PASS" if all(x == "PASS" for x in measured) else "FAIL")
    return v


def time_calls(fn: Callable[[], object], warmup: int = 5, runs: int = 50, seconds: Optional[float] = None,
               progress: Optional[Callable[[int], None]] = None) -> List[float]:
    """Call ``fn`` ``warmup`` times untimed, then time it ``runs`` times or for ``seconds``.

    Parameters
    ----------
    fn : callable
        The work to time (no arguments).
    warmup : int
        Untimed calls first (caches, allocations, XNNPACK packing).
    runs : int
        Timed calls when ``seconds`` is not given.
    seconds : float, optional
        Time calls until this much wall time has passed instead (at least one call).
    progress : callable, optional
        Called with 1 after each timed call (a tqdm ``update``).

    Returns
    -------
    list of float
        Latency of each timed call in milliseconds (``time.perf_counter``).
    """
    if runs < 1 and not seconds:
        raise InputError(f"expected at least one timed run (--runs >= 1) or --seconds > 0, found runs={runs}")
    for _ in range(max(0, warmup)):
        fn()
    samples: List[float] = []
    t_end = time.perf_counter() + seconds if seconds else None
    while True:
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000.0)
        if progress:
            progress(1)
        if t_end is not None:
            if time.perf_counter() >= t_end:
                break
        elif len(samples) >= runs:
            break
    return samples


def ratio(baseline: Optional[float], value: Optional[float]) -> Optional[float]:
    """``baseline / value`` rounded to 3 decimals (a speed-up when both are latencies); None if undefined."""
    if baseline is None or value is None or value <= 0:
        return None
    return round(float(baseline) / float(value), 3)


def parse_duration(text: str) -> float:
    """Seconds from ``"90"``, ``"90s"``, ``"10m"``, ``"1h"`` (the ``--duration`` syntax).

    Raises
    ------
    InputError
        For anything else or a non-positive duration.
    """
    t = str(text).strip().lower()
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    mult = units.get(t[-1:], None)
    num = t[:-1] if mult else t
    try:
        value = float(num) * (mult or 1.0)
    except ValueError:
        raise InputError(f"duration '{text}' not understood: expected e.g. 90, 90s, 10m or 1h") from None
    if value <= 0:
        raise InputError(f"duration must be positive, found '{text}'")
    return value


def parse_int_list(text: str, name: str) -> List[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]`` (positive integers) for sweep options."""
    try:
        vals = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise InputError(f"--{name} expects comma-separated positive integers (e.g. 1,2), found '{text}'") from None
    if not vals or any(v < 1 for v in vals):
        raise InputError(f"--{name} expects comma-separated positive integers (e.g. 1,2), found '{text}'")
    return vals


def parse_list(text: str, name: str, allowed: Optional[Sequence[str]] = None) -> List[str]:
    """``"fp32,int8"`` -> ``["fp32", "int8"]``, checked against ``allowed`` when given."""
    vals = [v.strip() for v in str(text).split(",") if v.strip()]
    if not vals:
        raise InputError(f"--{name} expects a comma-separated list, found '{text}'")
    if allowed is not None:
        bad = [v for v in vals if v not in allowed]
        if bad:
            raise InputError(f"--{name}: {', '.join(bad)} not one of {', '.join(allowed)}")
    return vals
