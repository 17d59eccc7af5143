"""bench-report: merging real result files, the regression/improvement diff, CSV and PNG output."""

import csv
import io
import json
import shlex
from pathlib import Path

import pytest

from headpose.benchmarks.report import (build_report, diff_rows, latency_rows, pipeline_rows, plotting_available,
                                        render_csv, render_markdown)
from headpose.benchmarks.schema import load_result
from headpose.cli import main

from tests.conftest import VIDEO, need_shared

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def two_runs(artifact, tmp_path_factory):
    """Two real `headpose bench --artifact` runs of one ONNX artifact on this machine, same device name."""
    need_shared(VIDEO)
    onnx = artifact("mobilenetv3_small", "fp32", fmt="onnx")
    out = tmp_path_factory.mktemp("runs")
    for _ in range(2):
        assert main(["bench", str(VIDEO), "--artifact", str(onnx), "--threads", "1", "--runs", "5", "--warmup", "1",
                     "--device-name", "bench-test", "--out", str(out), "--allow-load"]) == 0
    files = sorted(out.glob("*.json"))
    assert len(files) == 2, files  # a second run in the same second gets its own file name
    return files


def test_runs_are_valid_results(two_runs):
    for f in two_runs:
        r = load_result(f)
        assert r["device"]["name"] == "bench-test"
        (e,) = r["model_latency"]
        assert e["runtime"] == "onnxruntime" and e["threads"] == 1 and e["stats"]["n"] == 5
        assert len(e["samples_ms"]) == 5 and e["stats"]["min"] <= e["stats"]["p50"] <= e["stats"]["max"]
        assert e["file_sha256"] and r["artifacts"][0]["id"] == e["artifact"]
        # the command that repeats the run is what headpose parsed, not this process's argv (pytest's)
        words = shlex.split(r["tool"]["command"])
        assert words[:3] == ["headpose", "bench", str(VIDEO)] and "--device-name" in words, words
    ids = {load_result(f)["run_id"] for f in two_runs}
    assert len(ids) == 2


def test_report_merges_and_diffs_two_runs(two_runs, tmp_path):
    rep = build_report(two_runs, tmp_path, threshold_pct=10.0)
    a, b = (load_result(f) for f in two_runs)
    old, new = sorted([a, b], key=lambda r: (r["created_utc"], r["run_id"]))
    (d,) = rep["diffs"]
    p_old, p_new = old["model_latency"][0]["stats"]["p50"], new["model_latency"][0]["stats"]["p50"]
    assert (d["old_p50"], d["new_p50"]) == (p_old, p_new)
    assert d["change_pct"] == pytest.approx(round(100 * (p_new - p_old) / p_old, 1))
    want = "regression" if d["change_pct"] > 10 else "improvement" if d["change_pct"] < -10 else "same"
    assert d["status"] == want
    md = rep["markdown"].read_text()
    assert md.count("| bench-test | onnxruntime | mobilenetv3_small | fp32 | 1 | - | 1 |") == 2
    assert "## Regressions and improvements" in md and want in md
    rows = list(csv.DictReader(io.StringIO(rep["csv"].read_text())))
    assert len(rows) == 2 and {r["kind"] for r in rows} == {"model"}
    assert {float(r["p50_ms"]) for r in rows} == {p_old, p_new}
    if plotting_available():
        (png,) = rep["plots"]
        assert png.name == "model_latency_bench-test.png" and png.read_bytes()[:8] == PNG_MAGIC
        assert "![model_latency_bench-test](model_latency_bench-test.png)" in md


def test_report_without_plots(two_runs, tmp_path):
    rep = build_report(two_runs, tmp_path, plots=False)
    assert rep["plots"] == [] and not list(tmp_path.glob("*.png"))


def _row(device, key, run, created, p50, kind="pipeline"):
    return {"device": device, "kind": kind, "key": key, "run": run, "created": created, "p50_ms": p50,
            "p99_ms": p50 * 2, "fps": 1000.0 / p50}


def test_diff_classification():
    rows = [_row("pi5", "k", "r1", "2026-01-01", 20.0), _row("pi5", "k", "r2", "2026-01-02", 25.0),
            _row("pi5", "k", "r3", "2026-01-03", 21.0), _row("pi5", "k", "r4", "2026-01-04", 21.5),
            _row("pi4", "k", "r1", "2026-01-01", 50.0),                 # another device: never compared
            _row("pi5", "other", "r1", "2026-01-01", 10.0)]              # measured once: no diff
    d = diff_rows(rows, threshold_pct=10.0)
    assert [(x["old_run"], x["new_run"], x["status"]) for x in d] == [
        ("r1", "r2", "regression"), ("r2", "r3", "improvement"), ("r3", "r4", "same")]
    assert d[0]["change_pct"] == 25.0 and d[1]["change_pct"] == -16.0


def test_committed_results_render(tmp_path):
    files = sorted(RESULTS.glob("*.json"))
    if not files:
        pytest.skip("no committed result file under benchmarks/results")
    results = [load_result(f) for f in files]
    md = render_markdown(results)
    prow = pipeline_rows(results)
    assert len(prow) == sum(len(r["pipelines"]) for r in results) > 0
    assert len(latency_rows(results)) == sum(len(r["model_latency"]) for r in results)
    assert "## End-to-end pipelines" in md and "## Speed-up against the ONNX Runtime pipeline" in md
    assert len(list(csv.reader(io.StringIO(render_csv(results))))) == 1 + len(prow) + len(latency_rows(results))
    devices = {r["device"]["name"] for r in results}
    if len(files) >= 2 and len(devices) == 1:
        assert diff_rows(prow)  # the same matrix measured twice on one device is diffed


def test_report_shows_bound_efficiency_and_upstream_ratio():
    from headpose.benchmarks.report import PIPE_HEADER, pipe_cells
    base = {"key": "onnxruntime|m|fp32|t1|de1|-", "backend": "onnxruntime", "model": "m", "precision": "fp32",
            "threads": 1, "detect_every": 1, "frames": 10, "end_to_end": {"p50": 40.0, "p99": 50.0}, "fps": 25.0,
            "bound": {"ms_per_frame": 30.0}, "efficiency": 0.75}
    ours = {"key": "litert|m|int8|t2|de1|xnn|pipe", "backend": "litert", "model": "m", "precision": "int8",
            "threads": 2, "detect_every": 1, "frames": 10, "end_to_end": {"p50": 20.0, "p99": 30.0}, "fps": 70.0,
            "pipelined": True, "bound": {"ms_per_frame": 16.0}, "efficiency": 1.12}
    old = dict(ours, key="litert|m|int8|t1|de1|xnn", threads=1)
    for k in ("pipelined", "bound", "efficiency"):
        old.pop(k)
    r = {"schema": "headpose-bench", "schema_version": 1, "run_id": "x", "device": {"name": "d", "os": "o", "arch": "a"},
         "model_latency": [], "pipelines": [base, ours, old],
         "comparisons": [{"baseline": base["key"], "candidate": ours["key"], "fps_ratio": 2.8}]}
    rows = {x["key"]: x for x in pipeline_rows([r])}
    assert (rows[ours["key"]]["bound_ms"], rows[ours["key"]]["efficiency"], rows[ours["key"]]["vs_upstream"]) == \
        (16.0, 1.12, 2.8)
    assert (rows[old["key"]]["bound_ms"], rows[old["key"]]["efficiency"], rows[old["key"]]["pipelined"]) == \
        (None, None, False)
    cells = dict(zip(PIPE_HEADER, pipe_cells(rows[ours["key"]])))
    assert (cells["bound ms"], cells["efficiency"], cells["x upstream"], cells["pipelined"]) == (16.0, 1.12, 2.8, True)
    md = render_markdown([r])
    assert "| d | litert | m | int8 | 2 | 1 | on | 20.0 | 30.0 | 70.0 |" in md and "| 16.0 | 1.12 | 2.80 |" in md
    assert "| d | litert | m | int8 | 1 | 1 | off |" in md and "efficiency = bound / measured ms per frame" in md
    header = next(csv.reader(io.StringIO(render_csv([r]))))
    assert {"pipelined", "bound_ms", "efficiency", "vs_upstream"} <= set(header)
