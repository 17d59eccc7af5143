"""Key compatibility of the six backbones and the loader's error messages."""

import argparse
import json
from pathlib import Path

import pytest
import torch

from headpose.convert.checkpoint import load_pose_checkpoint, load_pose_model, read_state_dict, suggest_backbone
from headpose.convert.models import build_pose_model
from headpose.runtime.errors import CheckpointError, UnknownModelError
from headpose.runtime.registry import POSE_MODELS

# Facts of yakhyo/head-pose-estimation's networks (torchvision layouts, 6-output linear_reg):
# (number of state_dict entries, parameter count, a few keys with shapes)
UPSTREAM = {
    "resnet18": (122, 11179590, {"conv1.weight": (64, 3, 7, 7), "layer4.1.bn2.running_var": (512,),
                                 "layer2.0.downsample.0.weight": (128, 64, 1, 1), "linear_reg.weight": (6, 512)}),
    "resnet34": (218, 21287750, {"layer3.5.conv2.weight": (256, 256, 3, 3), "linear_reg.weight": (6, 512)}),
    "resnet50": (320, 23520326, {"layer4.2.conv3.weight": (2048, 512, 1, 1), "linear_reg.weight": (6, 2048)}),
    "mobilenetv2": (314, 2231558, {"features.0.0.weight": (32, 3, 3, 3), "features.1.conv.0.0.weight": (32, 1, 3, 3),
                                   "features.17.conv.3.weight": (320,), "features.18.0.weight": (1280, 320, 1, 1),
                                   "linear_reg.weight": (6, 1280)}),
    # the current upstream head: linear_reg = Sequential(Linear(576|960, 1024|1280), Hardswish, Linear(., 6))
    "mobilenetv3_small": (244, 1524006, {"features.1.block.1.fc1.weight": (8, 16, 1, 1),
                                         "features.12.0.weight": (576, 96, 1, 1), "linear_reg.0.weight": (1024, 576),
                                         "linear_reg.2.weight": (6, 1024)}),
    "mobilenetv3_large": (312, 4209718, {"features.4.block.2.fc1.weight": (24, 72, 1, 1),
                                         "features.16.0.weight": (960, 160, 1, 1), "linear_reg.0.weight": (1280, 960),
                                         "linear_reg.2.weight": (6, 1280)}),
}
# the earlier single-Linear MobileNetV3 head (before upstream's "Change regression layer for mobilenetv3")
LEGACY_V3 = {"mobilenetv3_small": (242, 930470, (6, 576)), "mobilenetv3_large": (310, 2977718, (6, 960))}


@pytest.mark.parametrize("model_id", POSE_MODELS)
def test_state_dict_layout(model_id):
    net = build_pose_model(model_id)
    sd = net.state_dict()
    n, params, keys = UPSTREAM[model_id]
    assert len(sd) == n
    assert sum(p.numel() for p in net.parameters()) == params
    for k, shape in keys.items():
        assert tuple(sd[k].shape) == shape, k


@pytest.mark.parametrize("model_id", sorted(LEGACY_V3))
def test_both_mobilenetv3_heads_load_strictly_and_say_which(model_id, tmp_path, caplog):
    n, params, shape = LEGACY_V3[model_id]
    old = build_pose_model(model_id, head="linear")
    assert len(old.state_dict()) == n and sum(p.numel() for p in old.parameters()) == params
    assert tuple(old.state_dict()["linear_reg.weight"].shape) == shape
    for head, net in (("linear", old), ("mlp", build_pose_model(model_id))):
        p = tmp_path / f"{head}.pt"
        torch.save(net.state_dict(), p)
        with caplog.at_level("INFO", logger="headpose.convert.checkpoint"):
            model, info = load_pose_checkpoint(model_id, p)
        assert info.head == head and f"head layout '{head}'" in caplog.text
        assert set(model.state_dict()) == set(net.state_dict())
        assert suggest_backbone(net.state_dict()) == model_id
    # the current head: Linear -> Hardswish -> Linear, no dropout (eval and train give the same output)
    head = build_pose_model(model_id).linear_reg
    assert [type(m).__name__ for m in head] == ["Linear", "Hardswish", "Linear"]


def test_batchnorm_eps_as_upstream():
    v2 = build_pose_model("mobilenetv2")
    assert v2.features[0][1].eps == 1e-3 and v2.features[2].conv[3].eps == 1e-5  # pw-linear BN keeps 1e-5
    v3 = build_pose_model("mobilenetv3_small")
    assert v3.features[0][1].eps == 1e-3
    assert build_pose_model("resnet18").bn1.eps == 1e-5


def test_loads_plain_and_training_checkpoints(tmp_path, seeded_ckpt):
    path = seeded_ckpt("mobilenetv3_small")
    sd = torch.load(path, weights_only=True)
    for key in ("model", "model_state_dict"):
        p = tmp_path / f"{key}.pt"
        torch.save({key: sd, "optimizer": {"lr": 1e-3}, "epoch": 3}, p)
        m = load_pose_model("mobilenetv3_small", p)
        x = torch.randn(2, 3, 224, 224)
        ref = load_pose_model("mobilenetv3_small", path)
        torch.testing.assert_close(m(x), ref(x))
    ddp = tmp_path / "ddp.pt"
    torch.save({f"module.{k}": v for k, v in sd.items()}, ddp)
    assert read_state_dict(ddp).keys() == sd.keys()


def test_wrong_architecture_names_keys_and_suggests(seeded_ckpt):
    path = seeded_ckpt("mobilenetv2")
    with pytest.raises(CheckpointError) as e:
        load_pose_model("mobilenetv3_small", path)
    msg = str(e.value)
    assert "missing keys" in msg and "unexpected keys" in msg and "fits 'mobilenetv2'" in msg
    assert suggest_backbone(torch.load(path, weights_only=True)) == "mobilenetv2"


def test_resnet_depth_mismatch(seeded_ckpt):
    with pytest.raises(CheckpointError, match="fits 'resnet18'"):
        load_pose_model("resnet34", seeded_ckpt("resnet18"))


def test_head_shape_mismatch(tmp_path):
    sd = build_pose_model("resnet18").state_dict()
    sd["linear_reg.weight"] = torch.zeros(3, 512)
    sd["linear_reg.bias"] = torch.zeros(3)
    p = tmp_path / "three.pt"
    torch.save(sd, p)
    with pytest.raises(CheckpointError, match=r"shape mismatches: linear_reg.weight: checkpoint \(3, 512\)"):
        load_pose_model("resnet18", p)


def test_missing_corrupt_and_unsafe_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pose_model("resnet18", tmp_path / "nope.pt")
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="could not be read"):
        load_pose_model("resnet18", bad)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))
    sd = build_pose_model("resnet18").state_dict()
    for name, payload in (("reduce", {"model": Evil()}),
                          ("reduce-in-args", {"model": sd, "args": Evil()}),
                          ("other-global", {"model": sd, "args": Path("/etc/passwd")}),
                          ("namespace-holding-other-global", {"model": sd, "args": argparse.Namespace(p=Path("/x"))})):
        evil = tmp_path / f"{name}.pt"
        torch.save(payload, evil)
        with pytest.raises(CheckpointError, match="weights_only=True"):
            read_state_dict(evil)
        assert not marker.exists(), f"{name}: the payload ran"
    notsd = tmp_path / "list.pt"
    torch.save([1, 2, 3], notsd)
    with pytest.raises(CheckpointError, match="expected a state_dict"):
        read_state_dict(notsd)


def test_unknown_model_id(seeded_ckpt):
    with pytest.raises(UnknownModelError, match="Did you mean 'resnet18'"):
        load_pose_model("resnet19", seeded_ckpt("resnet18"))


@pytest.mark.parametrize("student", sorted(p.name for p in (Path(__file__).resolve().parents[2] / "weights")
                                           .glob("*_fsanet.pt")))
def test_shipped_students_match_their_sidecars(student):
    """Every shipped student: sha256 as its sidecar says, loads strictly, held-out error recorded (<= 6 deg)."""
    import hashlib
    import json
    path = Path(__file__).resolve().parents[2] / "weights" / student
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["file"] == student and side["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    load_pose_model(side["model"], path)
    assert side["validation"]["vs_teacher"]["unseen_people"]["mae_mean"] <= 6.0


def test_upstream_training_checkpoint_loads_with_epoch_and_args(tmp_path):
    """upstream main.py's {'epoch', 'model', 'optimizer', 'lr_scheduler', 'args'}: args is an argparse.Namespace."""
    from tests.convert.upstream import upstream_state_dict, write_training_checkpoint
    p = write_training_checkpoint("mobilenetv3_small", tmp_path / "last_checkpoint.ckpt", seed=3, epoch=12)
    with pytest.raises(Exception, match="Namespace"):  # plain weights_only rejects it: the loader must allow it
        torch.load(p, weights_only=True)
    model, info = load_pose_checkpoint("mobilenetv3_small", p)
    assert info.kind == "training_checkpoint" and info.entry == "model" and info.epoch == 12 and info.head == "mlp"
    assert info.args["network"] == "mobilenetv3_small" and info.args["milestones"] == [10, 20]
    assert info.other_keys == ["args", "epoch", "lr_scheduler", "optimizer"]
    json.dumps(info.to_dict())  # JSON-safe, for the manifest
    sd = upstream_state_dict("mobilenetv3_small", seed=3)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in sd.items())
    # the allow-list was scoped to that load: torch's global list is unchanged
    assert argparse.Namespace not in torch.serialization.get_safe_globals()
    with pytest.raises(Exception, match="Namespace"):
        torch.load(p, weights_only=True)


@pytest.mark.parametrize("model_id", sorted(LEGACY_V3))
def test_single_linear_head_re_expressed_exactly_and_folded_back_at_export(model_id, tmp_path):
    """current_head_from_linear writes the current upstream layout with the same function; the export folds
    its +/- paired hidden units back into the one Linear (so its int8 graph is the trained head's)."""
    import copy

    from headpose.convert.checkpoint import current_head_from_linear
    from headpose.convert.models.pose import fold_paired_head
    torch.manual_seed(0)
    old = build_pose_model(model_id, head="linear")
    with torch.no_grad():
        old.linear_reg.weight.normal_(0, 0.05)
        old.linear_reg.bias.normal_(0, 0.5)
    new = build_pose_model(model_id)
    new.load_state_dict(current_head_from_linear(model_id, old.state_dict()), strict=True)
    assert (new.linear_reg[2].weight != 0).sum() == 12, "six +/- pairs, every other unit unused"
    assert (new.linear_reg[0].weight.abs().sum(dim=1) > 0).all(), "no all-zero weight channel"
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(new(x), old(x), atol=2e-6, rtol=1e-5)
        folded = copy.deepcopy(new)
        assert fold_paired_head(folded) and isinstance(folded.linear_reg, torch.nn.Linear)
        torch.testing.assert_close(folded.linear_reg.weight, old.linear_reg.weight, atol=1e-7, rtol=0)
        torch.testing.assert_close(folded(x), old(x), atol=2e-6, rtol=1e-5)
    assert not fold_paired_head(build_pose_model(model_id)), "a real (unpaired) head is left alone"
    with pytest.raises(CheckpointError, match="single-Linear head"):
        current_head_from_linear(model_id, new.state_dict())
