"""A tiny real distillation run: loadable upstream-format checkpoint, sidecar, determinism, resume."""

import json

import numpy as np
import pytest
import torch

from headpose.distill.distill import Augment, DistillConfig, distill
from headpose.distill.labels import flip_labels, rotate_labels
from headpose.runtime.errors import CheckpointError, InputError, UnknownModelError

CFG = dict(student="mobilenetv3_small", epochs=2, batch=4, lr=1e-3, max_steps=2, val_limit=4, train_size=64,
           full_size_epochs=1, seed=3)


def _run(cs, tmp_path, name, **kw):
    cfg = DistillConfig(**{**CFG, **kw.pop("cfg", {})})
    return distill(cfg, cs, cs.subset(np.arange(4)), tmp_path / f"{name}.pt", tmp_path / f"{name}.work",
                   progress=False, **kw)


def test_tiny_run_loadable_and_sidecar(small_cropset, tmp_path):
    from headpose.convert.checkpoint import load_pose_model
    side = _run(small_cropset, tmp_path, "a")
    model = load_pose_model("mobilenetv3_small", tmp_path / "a.pt")  # plain state_dict, strict
    sd = torch.load(tmp_path / "a.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in sd.values())
    on_disk = json.loads((tmp_path / "a.json").read_text())
    assert on_disk == json.loads(json.dumps(side))
    for key in ("model", "sha256", "teacher", "train", "held_out", "config", "history", "train_seconds", "labels"):
        assert key in side
    assert side["config"]["seed"] == 3 and len(side["history"]) == 2
    assert [h["size"] for h in side["history"]] == [64, 224]
    assert "val_mae_deg" in side["history"][-1]
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 224, 224))
    assert out.shape == (2, 6) and torch.isfinite(out).all()


def test_deterministic_and_resumable(small_cropset, tmp_path):
    _run(small_cropset, tmp_path, "full")
    stopped = _run(small_cropset, tmp_path, "part", stop_after_epoch=1)
    assert stopped is None and (tmp_path / "part.work" / "last.pt").is_file()
    assert not (tmp_path / "part.pt").exists()
    side = _run(small_cropset, tmp_path, "part")  # resumes at epoch 2
    assert [h["epoch"] for h in side["history"]] == [1, 2]
    a = torch.load(tmp_path / "full.pt", weights_only=True)
    b = torch.load(tmp_path / "part.pt", weights_only=True)
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # another seed gives other weights
    _run(small_cropset, tmp_path, "other", cfg={"seed": 4})
    c = torch.load(tmp_path / "other.pt", weights_only=True)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].dtype.is_floating_point)


def test_resume_refuses_other_config(small_cropset, tmp_path):
    _run(small_cropset, tmp_path, "x", stop_after_epoch=1)
    with pytest.raises(CheckpointError, match="another configuration"):
        _run(small_cropset, tmp_path, "x", cfg={"lr": 5e-4})


def test_errors(small_cropset, tmp_path):
    with pytest.raises(InputError, match="pose backbone"):
        distill(DistillConfig("scrfd_500m"), small_cropset, None, tmp_path / "s.pt", progress=False)
    with pytest.raises(UnknownModelError):
        distill(DistillConfig("mobilenetv5"), small_cropset, None, tmp_path / "s.pt", progress=False)
    with pytest.raises(InputError, match="no batch"):
        distill(DistillConfig("mobilenetv3_small", batch=10_000), small_cropset, None, tmp_path / "s.pt",
                progress=False)


def test_augment_labels_are_exact_transforms(small_cropset):
    """Every augmented sample's label is the teacher label moved by the sampled rotation/flip only."""
    cs = small_cropset
    aug = Augment(plain_prob=0.0)
    rng = np.random.default_rng(0)
    for i in range(len(cs)):
        img, r = aug.sample(cs, i, rng)
        assert img.shape == (224, 224, 3) and img.dtype == np.uint8
        # the label differs from the teacher's by a rotation about the optical axis (and maybe a flip)
        for cand in (r, flip_labels(r)):
            d = cand @ np.asarray(cs.R[i]).T
            if abs(d[2, 2] - 1) < 1e-9:
                theta = -np.degrees(np.arctan2(d[1, 0], d[0, 0]))
                assert abs(theta) <= aug.max_rotate + 1e-6
                np.testing.assert_allclose(rotate_labels(cs.R[i], theta), cand, atol=1e-9)
                break
        else:
            pytest.fail("augmented label is not an in-plane rotation/flip of the teacher label")


def test_init_from_a_checkpoint(small_cropset, tmp_path):
    """--init starts from given weights (fine-tuning a lower-resolution student at 224 px) and says so."""
    _run(small_cropset, tmp_path, "first")
    side = _run(small_cropset, tmp_path, "second", init=tmp_path / "first.pt", cfg={"train_size": None,
                                                                                   "full_size_epochs": 0})
    assert side["init"]["file"].endswith("first.pt") and side["init"]["sidecar"]["model"] == "mobilenetv3_small"
    with pytest.raises(CheckpointError):
        _run(small_cropset, tmp_path, "third", init=tmp_path / "first.json")


def test_batchnorm_recalibration_is_recorded(small_cropset, tmp_path):
    import torch
    from headpose.convert.checkpoint import load_pose_model
    from headpose.distill.distill import recalibrate_batchnorm
    from headpose.runtime.registry import get_spec
    side = _run(small_cropset, tmp_path, "bn", bn_crops=8)
    assert "re-estimated" in side["batchnorm"] and "8 " in side["batchnorm"]
    plain = _run(small_cropset, tmp_path, "nobn")
    assert "momentum" in plain["batchnorm"]
    model = load_pose_model("mobilenetv3_small", tmp_path / "nobn.pt")
    before = model.features[0][1].running_mean.clone()
    recalibrate_batchnorm(model, np.asarray(small_cropset.base[:8]), get_spec("mobilenetv3_small"), batch=4)
    assert not torch.equal(before, model.features[0][1].running_mean)
    assert not model.training and model.features[0][1].momentum == 0.01


def test_length_penalty():
    from headpose.distill.distill import length_penalty
    v = torch.tensor([[2.0, 0, 0, 0, 3.0, 0], [0.5, 0, 0, 0, 0, 0.1]])
    # first row: both vectors long enough (0); second: (1-0.5)^2 + (1-0.1)^2 over 4 entries
    assert float(length_penalty(v)) == pytest.approx((0.25 + 0.81) / 4)
