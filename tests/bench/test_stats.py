"""Statistics, verdicts and option parsing of the benchmark harness (logic only, never a speed)."""

import math

import numpy as np
import pytest

from headpose.benchmarks.stats import (BUDGETS, fps, parse_duration, parse_int_list, parse_list, ratio, summarize,
                                       time_calls, verdict)
from headpose.runtime.errors import InputError


def test_summarize_small_known_array():
    s = summarize([4.0, 1.0, 3.0, 2.0])
    assert s["n"] == 4
    assert s["mean"] == 2.5 and s["min"] == 1.0 and s["max"] == 4.0
    assert s["std"] == pytest.approx(math.sqrt(1.25), abs=1e-3)
    assert s["p50"] == 2.5            # linear interpolation between 2 and 3
    assert s["p90"] == pytest.approx(3.7)
    assert s["p99"] == pytest.approx(3.97)


def test_summarize_one_to_hundred():
    s = summarize(np.arange(1, 101, dtype=float))
    assert s["p50"] == 50.5 and s["p90"] == pytest.approx(90.1) and s["p99"] == pytest.approx(99.01)
    assert s["mean"] == 50.5 and s["n"] == 100


def test_summarize_single_sample_and_rounding():
    s = summarize([1.23456789])
    assert s["std"] == 0.0 and s["p99"] == s["p50"] == s["min"] == s["max"] == 1.235


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")]])
def test_summarize_rejects_empty_and_non_finite(bad):
    with pytest.raises(InputError):
        summarize(bad)


def test_verdict_budgets():
    assert BUDGETS == {"fps_min": 30.0, "p99_ms_max": 100.0}
    assert verdict(30.0, 99.9) == {"fps": "PASS", "p99": "PASS", "overall": "PASS"}
    assert verdict(29.9, 50.0)["overall"] == "FAIL"
    v = verdict(45.0, 100.0)  # p99 must be strictly under 100 ms
    assert v["p99"] == "FAIL" and v["fps"] == "PASS" and v["overall"] == "FAIL"
    assert verdict(None, None)["overall"] == "n/a"
    assert verdict(None, 20.0) == {"fps": "n/a", "p99": "PASS", "overall": "PASS"}


def test_fps_and_ratio():
    assert fps(100, 4.0) == 25.0 and fps(10, 0.0) == 0.0
    assert ratio(30.0, 10.0) == 3.0
    assert ratio(None, 1.0) is None and ratio(1.0, 0.0) is None


def test_time_calls_counts_warmup_and_runs():
    calls = []
    samples = time_calls(lambda: calls.append(1), warmup=3, runs=7)
    assert len(calls) == 10 and len(samples) == 7 and all(s >= 0 for s in samples)
    ticks = []
    samples = time_calls(lambda: None, warmup=0, runs=0, seconds=0.01, progress=ticks.append)
    assert len(samples) >= 1 and len(ticks) == len(samples)
    with pytest.raises(InputError):
        time_calls(lambda: None, runs=0)


@pytest.mark.parametrize("text,seconds", [("90", 90.0), ("90s", 90.0), ("10m", 600.0), ("1h", 3600.0), ("0.5m", 30.0)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["ten minutes", "-5m", "0", "m"])
def test_parse_duration_rejects(bad):
    with pytest.raises(InputError):
        parse_duration(bad)


def test_parse_lists():
    assert parse_int_list("1,2,4", "threads") == [1, 2, 4]
    with pytest.raises(InputError, match="--threads"):
        parse_int_list("1,0", "threads")
    with pytest.raises(InputError):
        parse_int_list("two", "threads")
    assert parse_list("fp32, int8", "precision", ("fp32", "int8")) == ["fp32", "int8"]
    with pytest.raises(InputError, match="int4"):
        parse_list("fp32,int4", "precision", ("fp32", "int8"))
