"""The versioned result schema: the device-only subset phones write, full runs, and every rejection."""

import copy
import json
from pathlib import Path

import pytest

from headpose.benchmarks.schema import SCHEMA_NAME, SCHEMA_VERSION, ResultError, check, load_result, validate

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"

DEVICE_ONLY = {
    "schema": "headpose-bench", "schema_version": 1,
    "device": {"name": "pixel-7", "os": "Android 14", "arch": "arm64-v8a"},
    "model_latency": [{"model": "mobilenetv3_small", "precision": "int8", "format": "tflite", "runtime": "litert",
                       "threads": 4, "stats": {"p50": 3.1, "p99": 5.2}}],
}


def test_device_only_subset_is_valid():
    assert (SCHEMA_NAME, SCHEMA_VERSION) == ("headpose-bench", 1)
    assert validate(DEVICE_ONLY) == []
    assert check(DEVICE_ONLY) is DEVICE_ONLY


@pytest.mark.parametrize("mutate,expected", [
    (lambda r: r.update(schema="other"), "schema: expected 'headpose-bench'"),
    (lambda r: r.update(schema_version=2), "schema_version: expected 1"),
    (lambda r: r.pop("device"), "device: expected an object"),
    (lambda r: r["device"].pop("arch"), "device.arch"),
    (lambda r: r["model_latency"][0].pop("runtime"), "missing 'runtime'"),
    (lambda r: r["model_latency"][0].update(threads=0), "threads: expected a positive integer"),
    (lambda r: r["model_latency"][0]["stats"].pop("p99"), "stats.p99"),
    (lambda r: r["model_latency"][0]["stats"].update(p50="fast"), "stats.p50"),
    (lambda r: r.update(model_latency=[]), "at least one model_latency or pipelines"),
    (lambda r: r.update(sustained={"windows": [{"t_s": 1.0}]}), "sustained.windows[0]"),
    (lambda r: r.update(comparisons=[{"baseline": "a", "candidate": "b"}]), "comparisons[0].baseline"),
])
def test_violations_are_named(mutate, expected):
    r = copy.deepcopy(DEVICE_ONLY)
    mutate(r)
    errors = validate(r)
    assert any(expected in e for e in errors), errors
    with pytest.raises(ResultError, match="not a valid headpose-bench v1 result"):
        check(r)


def test_pipeline_entries_are_checked():
    r = copy.deepcopy(DEVICE_ONLY)
    pipe = {"key": "litert|m|fp32|t1|de1|xnn", "backend": "litert", "model": "m", "precision": "fp32", "threads": 1,
            "detect_every": 1, "frames": 10, "end_to_end": {"p50": 20.0, "p99": 40.0}, "fps": 45.0,
            "verdict": {"fps": "PASS", "p99": "PASS", "overall": "PASS"}}
    r["pipelines"] = [pipe]
    r["comparisons"] = [{"baseline": pipe["key"], "candidate": pipe["key"], "speedup_p50": 1.0}]
    assert validate(r) == []
    pipe["verdict"]["overall"] = "OK"
    pipe.pop("fps")
    errors = validate(r)
    assert any("verdict.overall" in e for e in errors) and any("missing 'fps'" in e for e in errors)


def test_load_result_errors(tmp_path):
    with pytest.raises(ResultError, match="could not be read"):
        load_result(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ResultError, match="not valid JSON"):
        load_result(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(DEVICE_ONLY))
    assert load_result(good)["device"]["name"] == "pixel-7"


def test_committed_results_follow_the_schema():
    files = sorted(RESULTS.glob("*.json"))
    if not files:
        pytest.skip("no result files committed under benchmarks/results yet")
    for f in files:
        r = load_result(f)
        assert r["pipelines"] or r["model_latency"]
        for p in r.get("pipelines", []):
            assert p["verdict"]["overall"] in ("PASS", "FAIL")


def test_schema_document_matches_the_code():
    from headpose.benchmarks import schema
    doc = (Path(__file__).resolve().parents[2] / "benchmarks" / "SCHEMA.md").read_text()
    assert f"version {schema.SCHEMA_VERSION}" in doc and f'"schema_version": {schema.SCHEMA_VERSION}' in doc
    for field in schema.DEVICE_REQUIRED + schema.LATENCY_REQUIRED + schema.PIPELINE_REQUIRED:
        assert f"`{field}`" in doc or f"device.{field}" in doc, field
    sample = json.loads(doc.split("```json", 1)[1].split("```", 1)[0])
    assert validate(sample) == []


def test_bound_and_efficiency_fields():
    r = copy.deepcopy(DEVICE_ONLY)
    pipe = {"key": "litert|m|int8|t2|de1|xnn|pipe", "backend": "litert", "model": "m", "precision": "int8",
            "threads": 2, "detect_every": 1, "frames": 10, "end_to_end": {"p50": 30.0, "p99": 45.0}, "fps": 70.0,
            "pipelined": True, "bound": {"ms_per_frame": 16.0}, "efficiency": 1.12}
    r["pipelines"] = [pipe]
    r["gil"] = {"sequential_ms": 200.0, "threaded_ms": 110.0, "overlap": 1.82}
    assert validate(r) == []
    for drop in (("efficiency",), ("pipelined",), ("bound", "efficiency", "pipelined")):  # optional: results
        assert validate({**r, "pipelines": [{x: v for x, v in pipe.items() if x not in drop}]}) == []  # before them
    bad = [dict(pipe, bound={"ms": 1}), dict(pipe, efficiency=-1), dict(pipe, pipelined="yes"),
           {x: v for x, v in pipe.items() if x != "bound"}]
    msgs = ["bound: expected an object with ms_per_frame", "efficiency: expected a number >= 0",
            "pipelined: expected true or false", "efficiency: given without the bound"]
    for p, msg in zip(bad, msgs):
        errors = validate({**r, "pipelines": [p]})
        assert any(msg in e for e in errors), (msg, errors)
    assert any("gil: expected" in e for e in validate({**r, "gil": {"overlap": "x"}}))
