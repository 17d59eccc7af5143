"""headpose plan: budget check, accuracy ranking, the run command, bottleneck and marked estimates.

On a hand-made two-device set (tests/bench/plan_results: a Pi 5 where three configurations meet the
budget, a Pi 4 where none does and the detector is the bottleneck) and on the real results of
benchmarks/results (flagged when taken under load).
"""

import json
import shlex
from pathlib import Path

import pytest

from headpose.benchmarks.plan import format_plan, make_plan, pose_accuracy
from headpose.benchmarks.schema import ResultError
from headpose.cli import main

HERE = Path(__file__).resolve().parent / "plan_results"
PI4, PI5 = HERE / "pi4-handmade-20261201T120000Z.json", HERE / "pi5-handmade-20261201T120000Z.json"
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def _device(plan, name):
    return next(d for d in plan["devices"] if d["device"] == name)


def test_two_devices_are_planned_separately():
    plan = make_plan([PI5, PI4], fps=30, p99=100)
    assert [d["device"] for d in plan["devices"]] == ["pi5-handmade", "pi4-handmade"]
    pi5 = _device(plan, "pi5-handmade")
    # three of four meet the budget; ranked by held-out error (int8 adds its gate's error vs float)
    assert [(r["model"], r["detect_every"]) for r in pi5["meeting"]] == [
        ("mobilenetv3_large", 3), ("mobilenetv3_small", 1), ("mobilenetv2", 1)]
    assert [r["pose_error_bound_deg"] for r in pi5["meeting"]] == [3.36, 3.69, 4.37]
    best = pi5["best"]
    assert best["key"] == "litert|mobilenetv3_large|fp32|t4|de3|xnn" and not best["estimate"]
    words = shlex.split(best["command"])
    assert words[:2] == ["headpose", "run"]
    assert dict(zip(words[2::2], words[3::2])) == {
        "--detector": "scrfd_500m-640-tflite-fp32", "--pose": "mobilenetv3_large-224-tflite-fp32",
        "--threads": "4", "--detect-every": "3"}
    assert pi5["bottlenecks"] == [] and pi5["best_estimate"] is None


def test_no_configuration_meets_the_budget_names_the_bottleneck_and_estimates():
    plan = make_plan([PI4], fps=30, p99=100)
    (d,) = plan["devices"]
    assert d["meeting"] == [] and d["best"] is None
    (b,) = d["bottlenecks"]
    assert b["stage"] == "detector" and b["stage_ms"] == 44.0
    assert b["fps_short_ms"] == pytest.approx(1000 / 16 - 1000 / 30, abs=0.1) and b["p99_over_ms"] == 0.0
    est = {e["change"]: e for e in d["estimates"]}
    assert all(e["estimate"] for e in est.values())
    # detector per call 47 ms (preprocess 2 + detector 44 + decode 1), the rest 62.5 - 47 = 15.5 ms:
    # every 3 frames -> 15.5 + 47/3 = 31.2 ms per frame; the p99 keeps the detection frame
    de = est["detect every 3"]
    assert de["fps"] == pytest.approx(1000 / (62.5 - 47 + 47 / 3), abs=0.1) and de["p99_ms"] == 95.0 and de["meets"]
    small = est["detector input 320x320 (cost x0.25)"]
    assert small["fps"] == pytest.approx(1000 / (62.5 - 47 * 0.75), abs=0.1) and small["needs_artifact"]
    assert "scrfd_500m-320-tflite-fp32" in small["command"]
    two = est["2 threads"]  # from the model-only ratio t2/t4 of detector (60/44) and pose (2.6/2.0)
    assert two["fps"] == pytest.approx(1000 / (62.5 + 44 * (60 / 44 - 1) + 8 * 0.3), abs=0.1) and not two["meets"]
    # the best estimate needs no new artifact
    assert d["best_estimate"]["change"] == "detect every 3"
    text = format_plan(plan)
    assert "bottleneck detector 44.0 ms" in text and "ESTIMATES" in text and "best estimate" in text
    assert "--detect-every 3" in text


def test_faces_rescales_per_face_stages_and_marks_estimates():
    plan = make_plan([PI5], fps=30, p99=100, faces=12)
    (d,) = plan["devices"]
    rows = {r["key"]: r for r in d["rows"]}
    r = rows["litert|mobilenetv3_small|fp32|t4|de1|xnn"]
    per_face = (0.5 * 4 + 4.0 + 0.1 * 4) / 4  # crop + pose + smoothing of 4 measured faces
    assert r["p99_ms"] == pytest.approx(40.0 + 8 * per_face, abs=0.05)
    assert r["fps"] == pytest.approx(1000 / (1000 / 45 + 8 * per_face), abs=0.01) and r["estimate"]
    assert not rows["litert|mobilenetv3_large|fp32|t4|de3|xnn"]["meets"]  # 12 faces of the large model: too slow


def test_accuracy_from_a_sidecar_by_sha_else_same_network(tmp_path):
    (tmp_path / "mobilenetv3_small_fsanet.json").write_text(json.dumps(
        {"sha256": "ab" * 32, "validation": {"vs_teacher": {"unseen_people": {"mae_mean": 3.5}}}}))
    exact = pose_accuracy("mobilenetv3_small", "ab" * 32, tmp_path)
    assert exact["mae_mean"] == 3.5 and exact["exact"]
    other = pose_accuracy("mobilenetv3_small", "cd" * 32, tmp_path)  # e.g. a seeded run: same network's figure
    assert other["mae_mean"] == 3.5 and not other["exact"]
    assert pose_accuracy("resnet18", "ab" * 32, tmp_path)["mae_mean"] is None


def test_cli_prints_the_command_and_exits_by_outcome(capsys, tmp_path):
    assert main(["plan", str(PI5), "--fps", "30", "--p99", "100", "--json", str(tmp_path / "plan.json")]) == 0
    out = capsys.readouterr().out
    assert "best: litert|mobilenetv3_large|fp32|t4|de3|xnn" in out
    assert "headpose run --detector scrfd_500m-640-tflite-fp32 --pose mobilenetv3_large-224-tflite-fp32" in out
    assert json.loads((tmp_path / "plan.json").read_text())["devices"][0]["best"]["detect_every"] == 3
    assert main(["plan", str(PI4)]) == 1  # nothing measured meets it
    assert main(["plan", str(PI5), "--fps", "40"]) == 0
    assert "mobilenetv3_small" in capsys.readouterr().out.split("best:")[-1]


def test_malformed_result_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "headpose-bench", "schema_version": 1, "device": {"name": "x"}}))
    with pytest.raises(ResultError, match=r"bad.json is not a valid headpose-bench v1 result: device.os"):
        make_plan([bad])


@pytest.mark.parametrize("path", sorted(RESULTS.glob("dev-vm-2core-*.json")), ids=lambda p: p.stem)
def test_real_results_plan_and_load_flag(path, tmp_path):
    """The published results: planned (bottleneck named), flagged exactly when headpose bench found the
    machine loaded; the same result marked loaded is flagged (the flag reads the bench's own verdict,
    not the end-of-run load average, which counts the benchmark's own threads)."""
    data = json.loads(path.read_text())
    plan = make_plan([path], fps=30, p99=100)
    (d,) = plan["devices"]
    flagged = any("taken under load" in w for w in d["warnings"])
    assert flagged == (data["load"]["verdict"] == "loaded")
    assert len(d["rows"]) > 0 and d["bottlenecks"]
    assert all(b["stage"] in ("detector", "pose") for b in d["bottlenecks"])
    data["load"].update(verdict="loaded", note="other processes 80 % of the CPU during the run")
    loaded = tmp_path / path.name
    loaded.write_text(json.dumps(data))
    (d,) = make_plan([loaded], fps=30, p99=100)["devices"]
    assert any("taken under load" in w and "80 %" in w for w in d["warnings"])


def test_bench_report_merges_two_devices_one_plot_per_stage(tmp_path):
    from headpose.benchmarks.report import build_report, plotting_available
    rep = build_report([PI5, PI4], tmp_path, plots=True)
    md = rep["markdown"].read_text()
    assert "pi5-handmade" in md and "pi4-handmade" in md
    if plotting_available():
        names = {p.name for p in rep["plots"]}
        assert {"stage_detector.png", "stage_pose.png", "stage_capture.png", "fps_per_device.png"} <= names
    bad = tmp_path / "pi3.json"
    r = json.loads(PI4.read_text())
    r["pipelines"][0]["end_to_end"]["p99"] = "slow"
    bad.write_text(json.dumps(r))
    with pytest.raises(ResultError, match=r"pi3.json is not a valid .*pipelines\[0\].end_to_end.p99: expected a number"):
        build_report([PI5, bad], tmp_path / "x")
