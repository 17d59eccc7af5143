"""The files a yakhyo/head-pose-estimation user holds, written without the project's model code.

Written from reading the newest upstream files (``models/resnet.py``, ``mobilenetv2.py``,
``mobilenetv3.py``, ``common.py``, ``main.py``, ``onnx_export.py``), not copied. :class:`UpstreamNet`
walks each network functionally (``torch.nn.functional`` over a ``state_dict``): once to *make* a
state_dict with upstream's keys, shapes and batch-norm eps, and again to *run* one. The tests compare
both with the project's ``nn.Module`` definitions.

- ``write_state_dict``: what upstream releases (``resnet18.pt``, ...): a plain ``state_dict``.
- ``write_training_checkpoint``: what upstream ``main.py`` saves each epoch:
  ``{"epoch", "model", "optimizer", "lr_scheduler", "args"}``, ``args`` an ``argparse.Namespace``.
- ``export_upstream``: upstream ``onnx_export.py``: the network ends in the rotation matrix (its
  ``compute_rotation_matrix_from_ortho6d``), input ``input``, output ``rotation_matrix``, opset 20;
  ``dynamo=True`` writes the weights as external data (``model.onnx`` + ``model.onnx.data``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

# MobileNetV3 bneck rows (in, kernel, expanded, out, SE, activation, stride), mobilenetv3.py
# _mobilenet_v3_conf, and the head's hidden width (`last_channel`: 1024 small, 1280 large)
V3 = {
    "small": ([(16, 3, 16, 16, 1, "RE", 2), (16, 3, 72, 24, 0, "RE", 2), (24, 3, 88, 24, 0, "RE", 1),
               (24, 5, 96, 40, 1, "HS", 2), (40, 5, 240, 40, 1, "HS", 1), (40, 5, 240, 40, 1, "HS", 1),
               (40, 5, 120, 48, 1, "HS", 1), (48, 5, 144, 48, 1, "HS", 1), (48, 5, 288, 96, 1, "HS", 2),
               (96, 5, 576, 96, 1, "HS", 1), (96, 5, 576, 96, 1, "HS", 1)], 1024),
    "large": ([(16, 3, 16, 16, 0, "RE", 1), (16, 3, 64, 24, 0, "RE", 2), (24, 3, 72, 24, 0, "RE", 1),
               (24, 5, 72, 40, 1, "RE", 2), (40, 5, 120, 40, 1, "RE", 1), (40, 5, 120, 40, 1, "RE", 1),
               (40, 3, 240, 80, 0, "HS", 2), (80, 3, 200, 80, 0, "HS", 1), (80, 3, 184, 80, 0, "HS", 1),
               (80, 3, 184, 80, 0, "HS", 1), (80, 3, 480, 112, 1, "HS", 1), (112, 3, 672, 112, 1, "HS", 1),
               (112, 5, 672, 160, 1, "HS", 2), (160, 5, 960, 160, 1, "HS", 1), (160, 5, 960, 160, 1, "HS", 1)],
              1280),
}
V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
RESNET = {"resnet18": ("basic", [2, 2, 2, 2]), "resnet34": ("basic", [3, 4, 6, 3]),
          "resnet50": ("bottleneck", [3, 4, 6, 3])}
EPS_COMMON = 1e-3  # common.Conv2dNormActivation: BatchNorm2d(eps=0.001, momentum=0.01)
EPS_TORCH = 1e-5   # a bare nn.BatchNorm2d (ResNets; MobileNetV2's pw-linear projection)


def divisible8(v: float) -> int:
    """common._make_divisible(v, 8)."""
    new = max(8, int(v + 4) // 8 * 8)
    return new + 8 if new < 0.9 * v else new


class UpstreamNet:
    """Walk an upstream network over a state_dict: ``make`` its tensors, or ``run`` them.

    Parameters
    ----------
    sd : dict, optional
        The state_dict to run; None makes one (random values, upstream keys and shapes).
    seed : int
        For made tensors. Batch-norm statistics are randomised so that eps and every layer matter.
    """

    def __init__(self, sd: Optional[Dict[str, torch.Tensor]] = None, seed: int = 0):
        self.make = sd is None
        self.sd: Dict[str, torch.Tensor] = {} if sd is None else sd
        self.eps: Dict[str, float] = {}  # BN prefix -> eps used
        self.g = torch.Generator().manual_seed(seed)

    def _t(self, key: str, shape, kind: str) -> torch.Tensor:
        if self.make:
            g, n = self.g, torch.Size(shape)
            fan_in = max(1, int(torch.tensor(shape[1:]).prod())) if len(shape) > 1 else 1
            self.sd[key] = {"w": lambda: torch.randn(n, generator=g) * (2.0 / fan_in) ** 0.5,
                            "b": lambda: torch.randn(n, generator=g) * 0.1,
                            "gamma": lambda: torch.rand(n, generator=g) * 0.5 + 0.75,
                            "var": lambda: torch.rand(n, generator=g) * 0.5 + 0.75,
                            "count": lambda: torch.tensor(0, dtype=torch.long)}[kind]()
        v = self.sd[key]
        assert tuple(v.shape) == tuple(shape), f"{key}: {tuple(v.shape)} != {tuple(shape)}"
        return v

    def conv(self, key, x, cin, cout, k, stride=1, groups=1, bias=False):
        w = self._t(f"{key}.weight", (cout, cin // groups, k, k), "w")
        b = self._t(f"{key}.bias", (cout,), "b") if bias else None
        return F.conv2d(x, w, b, stride, (k - 1) // 2, 1, groups)

    def bn(self, key, x, c, eps):
        self.eps[key] = eps
        w, b = self._t(f"{key}.weight", (c,), "gamma"), self._t(f"{key}.bias", (c,), "b")
        mean, var = self._t(f"{key}.running_mean", (c,), "b"), self._t(f"{key}.running_var", (c,), "var")
        self._t(f"{key}.num_batches_tracked", (), "count")
        return F.batch_norm(x, mean, var, w, b, False, 0.0, eps)

    def linear(self, key, x, cin, cout):
        return F.linear(x, self._t(f"{key}.weight", (cout, cin), "w"), self._t(f"{key}.bias", (cout,), "b"))

    def cna(self, key, x, cin, cout, k, stride=1, groups=1, act=None):
        """common.Conv2dNormActivation: keys .0 (conv, no bias), .1 (BN eps 1e-3), .2 (activation)."""
        x = self.bn(f"{key}.1", self.conv(f"{key}.0", x, cin, cout, k, stride, groups), cout, EPS_COMMON)
        return act(x) if act else x

    # -- the three families ------------------------------------------------------------------------
    def resnet(self, x, block, layers):
        x = F.relu(self.bn("bn1", self.conv("conv1", x, 3, 64, 7, 2), 64, EPS_TORCH))
        x = F.max_pool2d(x, 3, 2, 1)
        exp, cin = (1 if block == "basic" else 4), 64
        for li, (planes, n) in enumerate(zip((64, 128, 256, 512), layers)):
            for bi in range(n):
                p, stride = f"layer{li + 1}.{bi}", (1 if li == 0 or bi else 2)
                if block == "basic":
                    out = F.relu(self.bn(f"{p}.bn1", self.conv(f"{p}.conv1", x, cin, planes, 3, stride), planes, EPS_TORCH))
                    out = self.bn(f"{p}.bn2", self.conv(f"{p}.conv2", out, planes, planes, 3), planes, EPS_TORCH)
                else:  # torchvision v1.5: the 3x3 conv strides
                    out = F.relu(self.bn(f"{p}.bn1", self.conv(f"{p}.conv1", x, cin, planes, 1), planes, EPS_TORCH))
                    out = F.relu(self.bn(f"{p}.bn2", self.conv(f"{p}.conv2", out, planes, planes, 3, stride), planes,
                                         EPS_TORCH))
                    out = self.bn(f"{p}.bn3", self.conv(f"{p}.conv3", out, planes, planes * 4, 1), planes * 4, EPS_TORCH)
                if stride != 1 or cin != planes * exp:
                    x = self.bn(f"{p}.downsample.1", self.conv(f"{p}.downsample.0", x, cin, planes * exp, 1, stride),
                                planes * exp, EPS_TORCH)
                x, cin = F.relu(out + x), planes * exp
        return self.linear("linear_reg", torch.flatten(F.adaptive_avg_pool2d(x, 1), 1), 512 * exp, 6)

    def mobilenetv2(self, x):
        x, cin, i = self.cna("features.0", x, 3, 32, 3, 2, act=F.relu6), 32, 1
        for t, c, n, s in V2:
            for j in range(n):
                p, hidden, stride, k = f"features.{i}.conv", int(round(cin * t)), (s if j == 0 else 1), 0
                y = x
                if t != 1:
                    y, k = self.cna(f"{p}.0", y, cin, hidden, 1, act=F.relu6), 1
                y = self.cna(f"{p}.{k}", y, hidden, hidden, 3, stride, hidden, act=F.relu6)
                y = self.bn(f"{p}.{k + 2}", self.conv(f"{p}.{k + 1}", y, hidden, c, 1), c, EPS_TORCH)
                x, cin, i = (x + y if stride == 1 and cin == c else y), c, i + 1
        x = self.cna(f"features.{i}", x, cin, 1280, 1, act=F.relu6)
        return self.linear("linear_reg", torch.flatten(F.adaptive_avg_pool2d(x, 1), 1), 1280, 6)

    def mobilenetv3(self, x, variant):
        rows, hidden = V3[variant]
        x = self.cna("features.0", x, 3, rows[0][0], 3, 2, act=F.hardswish)
        for i, (cin, k, exp, cout, se, a, stride) in enumerate(rows, start=1):
            act, p, j, y = (F.hardswish if a == "HS" else F.relu), f"features.{i}.block", 0, x
            if exp != cin:
                y, j = self.cna(f"{p}.0", y, cin, exp, 1, act=act), 1
            y, j = self.cna(f"{p}.{j}", y, exp, exp, k, stride, exp, act=act), j + 1
            if se:
                sq = divisible8(exp // 4)
                s = F.relu(self.conv(f"{p}.{j}.fc1", F.adaptive_avg_pool2d(y, 1), exp, sq, 1, bias=True))
                y, j = y * F.hardsigmoid(self.conv(f"{p}.{j}.fc2", s, sq, exp, 1, bias=True)), j + 1
            y = self.cna(f"{p}.{j}", y, exp, cout, 1)
            x = y + x if stride == 1 and cin == cout else y
        last = 6 * rows[-1][3]
        x = self.cna(f"features.{len(rows) + 1}", x, rows[-1][3], last, 1, act=F.hardswish)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        # linear_reg = Sequential(Linear(last, last_channel), Hardswish, Linear(last_channel, 6)): no dropout
        return self.linear("linear_reg.2", F.hardswish(self.linear("linear_reg.0", x, last, hidden)), hidden, 6)

    def forward(self, model_id: str, x: torch.Tensor) -> torch.Tensor:
        """The raw 6-vector (B, 6) of ``model_id`` on (B, 3, S, S) ImageNet-normalised RGB."""
        if model_id in RESNET:
            return self.resnet(x, *RESNET[model_id])
        if model_id == "mobilenetv2":
            return self.mobilenetv2(x)
        return self.mobilenetv3(x, model_id.split("_")[1])


def upstream_state_dict(model_id: str, seed: int = 0) -> Dict[str, torch.Tensor]:
    """A state_dict in upstream's layout (keys in upstream's order, random values)."""
    net = UpstreamNet(seed=seed)
    with torch.no_grad():
        net.forward(model_id, torch.zeros(1, 3, 64, 64))
    return net.sd


def upstream_forward(model_id: str, sd: Dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return UpstreamNet(sd).forward(model_id, x)


def write_state_dict(model_id: str, path: Path, seed: int = 0) -> Path:
    torch.save(upstream_state_dict(model_id, seed), path)
    return path


def write_training_checkpoint(model_id: str, path: Path, seed: int = 0, epoch: int = 7,
                              sd: Optional[Dict[str, torch.Tensor]] = None) -> Path:
    """What upstream main.py saves: model, Adam optimizer, MultiStepLR scheduler, epoch and the argparse args.

    ``sd`` (upstream layout) is the model's state_dict; by default a seeded one.
    """
    sd = upstream_state_dict(model_id, seed) if sd is None else sd
    params = [nn.Parameter(v.clone()) for v in sd.values() if v.is_floating_point()]
    optimizer = torch.optim.Adam(params, 1e-4)
    sum((p * p).sum() for p in params).backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[10, 20], gamma=0.5)
    args = argparse.Namespace(data="data", epochs=80, batch_size=128, network=model_id, lr=0.0001, num_workers=8,
                              checkpoint=None, lr_scheduler="MultiStepLR", step_size=10, gamma=0.5,
                              milestones=[10, 20], print_freq=100, world_size=1, local_rank=0, save_path="weights",
                              distributed=False)
    torch.save({"epoch": epoch, "model": sd, "optimizer": optimizer.state_dict(),
                "lr_scheduler": scheduler.state_dict(), "args": args}, path)
    return path


def rotation_from_ortho6d(v: torch.Tensor) -> torch.Tensor:
    """utils/general.compute_rotation_matrix_from_ortho6d: columns x, y, z."""
    x = v[:, 0:3] / torch.clamp(torch.norm(v[:, 0:3], p=2, dim=1, keepdim=True), min=1e-8)
    z = torch.cross(x, v[:, 3:6], dim=1)
    z = z / torch.clamp(torch.norm(z, p=2, dim=1, keepdim=True), min=1e-8)
    y = torch.cross(z, x, dim=1)
    return torch.cat((x.view(-1, 3, 1), y.view(-1, 3, 1), z.view(-1, 3, 1)), dim=2)


class UpstreamStyle(nn.Module):
    """Backbone -> 6D -> rotation matrix, as upstream networks' ``forward`` end."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rotation_from_ortho6d(self.backbone(x))


def export_upstream(backbone: nn.Module, path: Path, size: int = 224, batch: int = 1, dynamo: bool = False,
                    opset: int = 20, dynamic: bool = False) -> Path:
    """upstream onnx_export.py: input ``input`` (1, 3, 224, 224), output ``rotation_matrix``, opset 20.

    ``backbone`` must hold the network with its native ``nn.Hardswish`` (as upstream's does).
    ``dynamo=True`` is what torch >= 2.9 does by default, weights as external data.
    """
    model = UpstreamStyle(backbone).eval()
    axes = {"input": {0: "batch_size"}, "rotation_matrix": {0: "batch_size"}} if dynamic else None
    kwargs = {"dynamo": True, "external_data": True} if dynamo else {"dynamo": False}
    with torch.no_grad():
        torch.onnx.export(model, (torch.randn(batch, 3, size, size),), str(path), export_params=True,
                          opset_version=opset, do_constant_folding=True, input_names=["input"],
                          output_names=["rotation_matrix"], dynamic_axes=axes, **kwargs)
    return path
