"""One vocabulary: an artifact directory, an artifact id or a model id, resolved by one function
(headpose.runtime.resolve.resolve_artifact) for `run`, `bench` and `convert-matrix`; `bench` measures exactly
the artifacts it is given and records their ids and sha256; a busy machine is refused or flagged."""

import json
import os
import shutil
from pathlib import Path

import pytest

from headpose.cli import main
from headpose.runtime.errors import ManifestError, UnknownModelError
from headpose.runtime.manifest import load_manifest, sha256_file
from headpose.runtime.resolve import parse_ref, resolve_artifact

from tests.conftest import VIDEO, need_shared

POSE_ID, DET_ID = "mobilenetv3_small-224-tflite-fp32", "scrfd_500m-640-tflite-fp32"


@pytest.fixture(scope="module")
def exports(artifact, tmp_path_factory):
    """A weights folder whose exports/ hold the two test artifacts under their ids."""
    w = tmp_path_factory.mktemp("weights")
    for d in (artifact("mobilenetv3_small", "fp32"), artifact("scrfd_500m", "fp32")):
        shutil.copytree(d, w / "exports" / d.name)
    return w


@pytest.fixture
def weights_env(exports, monkeypatch):
    monkeypatch.setenv("HEADPOSE_WEIGHTS_DIR", str(exports))
    return exports


def test_parse_forms():
    assert parse_ref("mobilenetv3_small").id == POSE_ID
    assert parse_ref("mobilenetv3_small", precision="int8").id == "mobilenetv3_small-224-tflite-int8"
    assert parse_ref("scrfd_500m", size=320).id == "scrfd_500m-320-tflite-fp32"
    assert parse_ref("mobilenetv2-224-tflite-dynamic-int8").precision == "dynamic-int8"
    assert parse_ref("./somewhere").is_path
    with pytest.raises(UnknownModelError, match="Did you mean 'mobilenetv3_small'"):
        parse_ref("mobilenetv3_smal")
    with pytest.raises(Exception, match="precision int8 was asked for"):
        parse_ref(POSE_ID, precision="int8")


def test_directory_id_and_model_id_resolve_to_one_artifact(weights_env):
    d = weights_env / "exports" / POSE_ID
    assert resolve_artifact(str(d), "head_pose") == d.resolve()
    assert resolve_artifact(POSE_ID, "head_pose") == d.resolve()
    assert resolve_artifact("mobilenetv3_small", "head_pose") == d.resolve()
    with pytest.raises(ManifestError, match="face_detection model, but a pose model"):
        resolve_artifact("scrfd_500m", "head_pose")
    with pytest.raises(ManifestError, match=r"no artifact mobilenetv3_small-224-tflite-int8 .*headpose convert "
                                            r"mobilenetv3_small --weights PATH --format tflite --precision int8"):
        resolve_artifact("mobilenetv3_small", "head_pose", precision="int8")
    with pytest.raises(ManifestError, match="is precision fp32, not the int8"):
        resolve_artifact(str(d), precision="int8")


def test_run_takes_ids(weights_env, tmp_path):
    img = need_shared(Path(VIDEO).parents[0] / "images")
    one = sorted(p for p in img.iterdir() if p.suffix.lower() in (".jpg", ".png"))[0]
    out = tmp_path / "faces.jsonl"
    assert main(["run", "--detector", "scrfd_500m", "--pose", POSE_ID, "--source", str(one),
                 "--jsonl", str(out)]) == 0
    assert out.read_text().strip()


def test_bench_measures_exactly_the_given_artifacts(weights_env, tmp_path):
    need_shared(VIDEO)
    pose_dir = weights_env / "exports" / POSE_ID
    assert main(["bench", str(VIDEO), "--pose", str(pose_dir), "--detector", DET_ID, "--threads", "1",
                 "--frames", "3", "--pipeline-warmup", "1", "--runs", "2", "--warmup", "1", "--allow-load",
                 "--device-name", "vocab-test", "--out", str(tmp_path)]) == 0
    (f,) = tmp_path.glob("vocab-test-*.json")
    r = json.loads(f.read_text())
    arts = {a["id"]: a for a in r["artifacts"]}
    assert set(arts) == {POSE_ID, DET_ID}
    for a in arts.values():
        m = load_manifest(a["path"])
        assert a["file_sha256"] == m.file_sha256 == sha256_file(m.model_path)
        assert a["manifest_sha256"] == sha256_file(Path(a["path"]) / "manifest.json")
    assert "accuracy" in arts[POSE_ID] and "published_ap_hard" in arts[DET_ID]["accuracy"]
    (p,) = r["pipelines"]
    assert (p["pose"], p["detector"]) == (POSE_ID, DET_ID) and p["pose_sha256"] == arts[POSE_ID]["file_sha256"]
    assert {e["artifact"] for e in r["model_latency"]} == {POSE_ID, DET_ID}
    assert r["load"]["verdict"] in ("idle", "loaded") and r["load"]["loadavg_start"] is not None
    assert main(["plan", str(f)]) in (0, 1)  # the planner reads what bench writes


def test_bench_refuses_a_busy_machine(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(os, "getloadavg", lambda: (40.0, 40.0, 40.0))
    assert main(["bench", "--no-pipelines", "--artifact", "x", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "this machine is busy: 1-minute load average 40.0" in err and "--allow-load" in err
    assert not list(tmp_path.iterdir())


def test_load_watch_flags_others(monkeypatch):
    from headpose.benchmarks import load
    monkeypatch.setattr(os, "getloadavg", lambda: (0.1, 0.1, 0.1))
    w = load.LoadWatch(cores=2)
    assert not w.busy_at_start()
    busy = iter([100.0, 160.0])  # the machine was busy 60 s of 2 cores x ~0 s wall: others' share is large
    monkeypatch.setattr(load, "_busy_seconds", lambda: next(busy))
    w = load.LoadWatch(cores=2)
    rec = w.finish()
    assert rec["verdict"] == "loaded" and "other processes used" in rec["note"]


def test_convert_matrix_takes_an_artifact(weights_env, tmp_path):
    out = tmp_path / "m"
    rc = main(["convert-matrix", "--models", POSE_ID, "--out", str(out)])
    rows = json.loads((out / "matrix.json").read_text())["rows"]
    assert rc == 0 and rows[0]["artifact"] == POSE_ID and rows[0]["weights"] == "artifact"
    assert not (out / POSE_ID).exists()  # nothing converted


def test_sweep_plan_dry_run_fits_ten_minutes_on_a_pi4(capsys):
    from headpose.benchmarks.sweep import estimate_seconds, students
    assert estimate_seconds(students(), ("fp32", "int8"), (1, 4))["total_s"] <= 600
    assert main(["bench", "--sweep", "plan", "--dry-run"]) == 0
    assert "ESTIMATE on a Raspberry Pi 4" in capsys.readouterr().out
