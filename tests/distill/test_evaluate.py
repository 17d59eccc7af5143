"""Evaluation report: figures against the teacher, consistency, teacher noise; `headpose eval` CLI."""

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from headpose.distill.cropset import save_cropset
from headpose.distill.evaluate import consistency, evaluate, load_predictor, summarise
from headpose.runtime.errors import InputError
from headpose.runtime.rotation import rotation_from_euler


def test_summarise_known_offsets():
    rng = np.random.default_rng(0)
    r = rotation_from_euler(rng.uniform(-30, 30, 20), rng.uniform(-50, 50, 20), rng.uniform(-20, 20, 20))
    s = summarise(r, r)
    assert s["n"] == 20 and s["mae_mean"] == 0 and s["geodesic_mean"] == 0
    moved = rotation_from_euler(np.zeros(20), np.zeros(20), np.full(20, 10.0)) @ r  # 10 degrees about the view axis
    s = summarise(moved, r)
    assert s["geodesic_mean"] == pytest.approx(10.0, abs=0.01)
    assert s["mae_roll"] > 5
    with pytest.raises(InputError):
        summarise(r[:3], r)


class _Teacher:
    """The teacher's labels as a predictor (not equivariant: FSA-Net itself)."""

    def __init__(self, t):
        self.t = t

    def rotations(self, crops):
        return self.t.rotations(crops)


def test_report_structure(small_cropset, seeded_ckpt, fsanet):
    pred = load_predictor(seeded_ckpt("mobilenetv3_small"))
    rep = evaluate(pred, small_cropset, teacher=_Teacher(fsanet))
    assert rep["crops"] == len(small_cropset)
    vt = rep["vs_teacher"]
    assert vt["all"]["n"] == len(small_cropset)
    assert vt["held_out_frames"]["n"] + vt["unseen_people"]["n"] == len(small_cropset)
    assert set(vt["by_source"]) == set(small_cropset.groups())
    # an untrained network is far from the teacher
    assert vt["all"]["geodesic_mean"] > 10
    assert rep["teacher_noise"]["n"] == len(small_cropset) and 0 < rep["teacher_noise"]["mae_mean"] < 10
    for key in ("consistency", "teacher_consistency"):
        assert set(rep[key]) == {"rotate_-20", "rotate_+20", "flip"}
    # the teacher's labels on the base crops are the crop set's labels: it scores 0 against itself
    rep_t = evaluate(_Teacher(fsanet), small_cropset, with_consistency=False)
    assert rep_t["vs_teacher"]["all"]["geodesic_mean"] < 0.01
    assert "consistency" not in rep_t


def test_consistency_of_an_equivariant_predictor(small_cropset):
    """A predictor that reads roll from the picture exactly (the crop's own rotation) scores ~0."""
    from headpose.distill.cropset import render

    class Constant:
        def rotations(self, crops):
            return np.repeat(np.eye(3)[None], len(crops), 0)
    rep = consistency(Constant(), small_cropset.subset(np.arange(3)))
    # a constant ignores the rotation: its error is exactly |theta| on rotated copies and 0 on flips
    assert rep["rotate_+20"]["geodesic_mean"] == pytest.approx(20.0, abs=1e-6)
    assert rep["flip"]["geodesic_mean"] == pytest.approx(0.0, abs=1e-6)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "headpose.cli", *args], capture_output=True, text=True, timeout=300)


def test_eval_cli(small_cropset, seeded_ckpt, tmp_path):
    folder = save_cropset(small_cropset, tmp_path / "crops")
    out = tmp_path / "r.json"
    p = _cli("eval", "--pose", str(seeded_ckpt("mobilenetv2")), "--crops", str(folder), "--json", str(out))
    assert p.returncode == 0, p.stderr
    assert "vs teacher: all" in p.stdout and "teacher noise" in p.stdout
    rep = json.loads(out.read_text())
    assert rep["vs_teacher"]["all"]["n"] == len(small_cropset) and "consistency" in rep


def test_eval_cli_errors(tmp_path, seeded_ckpt):
    p = _cli("eval", "--pose", str(tmp_path / "none.pt"), "--crops", str(tmp_path))
    assert p.returncode == 2 and "not a crop set" in p.stderr
    p = _cli("eval", "--pose", str(seeded_ckpt("mobilenetv2")), "--data", str(tmp_path))
    assert p.returncode == 2 and "needs a teacher" in p.stderr
    (tmp_path / "x.txt").write_text("x")
    from headpose.distill.cropset import CropSet
    with pytest.raises(InputError, match="neither a checkpoint"):
        load_predictor(tmp_path / "x.txt")


def test_eval_cli_reads_the_plans_held_out_list(seeded_ckpt, tmp_path):
    """`headpose eval --data-plan` evaluates the plan's 'val' sources, never its 'train' ones."""
    from tests.conftest import IMAGES, WEIGHTS, need_shared
    need_shared(IMAGES)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"train": ["does/not/exist.mp4"], "val": ["single_face.jpg"]}))
    out = tmp_path / "r.json"
    p = _cli("eval", "--pose", str(seeded_ckpt("mobilenetv3_small")), "--data-plan", str(plan), "--data-root",
             str(IMAGES), "--teacher", str(WEIGHTS / "fsanet_1x1.onnx"), str(WEIGHTS / "fsanet_var.onnx"),
             "--detector", str(WEIGHTS / "scrfd_500m_bnkps.onnx"), "--cache", str(tmp_path / "cache"),
             "--no-consistency", "--json", str(out))
    assert p.returncode == 0, p.stderr
    rep = json.loads(out.read_text())
    assert [str(Path(k).resolve()) for k in rep["vs_teacher"]["by_source"]] == [str((IMAGES / "single_face.jpg").resolve())]
