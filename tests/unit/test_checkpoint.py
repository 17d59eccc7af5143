"""Key compatibility of the six backbones and the loader's error messages."""

from pathlib import Path

import pytest
import torch

from headpose.convert.checkpoint import load_pose_model, read_state_dict, suggest_backbone
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
    "mobilenetv3_small": (242, 930470, {"features.1.block.1.fc1.weight": (8, 16, 1, 1),
                                        "features.12.0.weight": (576, 96, 1, 1), "linear_reg.weight": (6, 576)}),
    "mobilenetv3_large": (310, 2977718, {"features.4.block.2.fc1.weight": (24, 72, 1, 1),
                                         "features.16.0.weight": (960, 160, 1, 1), "linear_reg.weight": (6, 960)}),
}


@pytest.mark.parametrize("model_id", POSE_MODELS)
def test_state_dict_layout(model_id):
    net = build_pose_model(model_id)
    sd = net.state_dict()
    n, params, keys = UPSTREAM[model_id]
    assert len(sd) == n
    assert sum(p.numel() for p in net.parameters()) == params
    for k, shape in keys.items():
        assert tuple(sd[k].shape) == shape, k


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

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))
    evil = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, evil)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        read_state_dict(evil)
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
