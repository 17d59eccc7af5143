"""PyTorch definitions of the six 6DRepNet-style pose backbones.

The ``state_dict`` keys, shapes and every number-changing detail (batch-norm eps, activations,
squeeze-excitation widths) match yakhyo/head-pose-estimation's ``models/*.py``, so its released
checkpoints load strictly. No torchvision dependency. ``forward`` returns the raw 6-vector,
shape (B, 6); rotation and Euler angles are computed in NumPy by the runtime
(:mod:`headpose.runtime.rotation`), which keeps the exported graph in one XNNPACK partition.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

from ...runtime.errors import UnknownModelError
from ...runtime.registry import get_spec

# ----------------------------------------------------------------------------------------------
# ResNet (torchvision layout, head renamed ``linear_reg``)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNetPose(nn.Module):
    """ResNet-18/34/50 with a 6-output ``linear_reg`` head. Input (B, 3, 224, 224) -> (B, 6)."""

    def __init__(self, block: str, layers: List[int], num_outputs: int = 6):
        super().__init__()
        blk = BasicBlock if block == "basic" else Bottleneck
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self._cin = 64
        self.layer1 = self._make_layer(blk, 64, layers[0], 1)
        self.layer2 = self._make_layer(blk, 128, layers[1], 2)
        self.layer3 = self._make_layer(blk, 256, layers[2], 2)
        self.layer4 = self._make_layer(blk, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear_reg = nn.Linear(512 * blk.expansion, num_outputs)

    def _make_layer(self, blk, planes: int, n: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._cin != planes * blk.expansion:
            downsample = nn.Sequential(nn.Conv2d(self._cin, planes * blk.expansion, 1, stride, bias=False),
                                       nn.BatchNorm2d(planes * blk.expansion))
        layers = [blk(self._cin, planes, stride, downsample)]
        self._cin = planes * blk.expansion
        layers += [blk(self._cin, planes) for _ in range(1, n)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.linear_reg(torch.flatten(self.avgpool(x), 1))


# ----------------------------------------------------------------------------------------------
# MobileNet building blocks (upstream ``models/common.py``)


def make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d(eps=1e-3, momentum=0.01) + optional activation; keys 0/1/2."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, groups: int = 1,
                 act: Optional[type] = nn.ReLU):
        layers: List[nn.Module] = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
                                   nn.BatchNorm2d(cout, eps=0.001, momentum=0.01)]
        if act is not None:
            layers.append(act(inplace=True))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return s * x


# ----------------------------------------------------------------------------------------------
# MobileNetV2


class InvertedResidualV2(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = int(round(cin * expand))
        self.use_res_connect = stride == 1 and cin == cout
        layers: List[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNAct(cin, hidden, 1, act=nn.ReLU6))
        layers += [ConvBNAct(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
                   nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
                   nn.BatchNorm2d(cout)]  # upstream: default eps 1e-5 here, 1e-3 in ConvBNAct
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Pose(nn.Module):
    """MobileNetV2 (width 1.0) with a 6-output ``linear_reg``. (B, 3, 224, 224) -> (B, 6)."""

    SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
               (6, 320, 1, 1)]

    def __init__(self, num_outputs: int = 6):
        super().__init__()
        cin = 32
        features: List[nn.Module] = [ConvBNAct(3, cin, 3, 2, act=nn.ReLU6)]
        for t, c, n, s in self.SETTING:
            for i in range(n):
                features.append(InvertedResidualV2(cin, c, s if i == 0 else 1, t))
                cin = c
        features.append(ConvBNAct(cin, 1280, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.linear_reg = nn.Linear(1280, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_reg(torch.flatten(self.avgpool(self.features(x)), 1))


# ----------------------------------------------------------------------------------------------
# MobileNetV3

# (input, kernel, expanded, output, use_se, activation, stride) - Tables 1 and 2 of the paper
V3_SMALL = [(16, 3, 16, 16, True, "RE", 2), (16, 3, 72, 24, False, "RE", 2), (24, 3, 88, 24, False, "RE", 1),
            (24, 5, 96, 40, True, "HS", 2), (40, 5, 240, 40, True, "HS", 1), (40, 5, 240, 40, True, "HS", 1),
            (40, 5, 120, 48, True, "HS", 1), (48, 5, 144, 48, True, "HS", 1), (48, 5, 288, 96, True, "HS", 2),
            (96, 5, 576, 96, True, "HS", 1), (96, 5, 576, 96, True, "HS", 1)]
V3_LARGE = [(16, 3, 16, 16, False, "RE", 1), (16, 3, 64, 24, False, "RE", 2), (24, 3, 72, 24, False, "RE", 1),
            (24, 5, 72, 40, True, "RE", 2), (40, 5, 120, 40, True, "RE", 1), (40, 5, 120, 40, True, "RE", 1),
            (40, 3, 240, 80, False, "HS", 2), (80, 3, 200, 80, False, "HS", 1), (80, 3, 184, 80, False, "HS", 1),
            (80, 3, 184, 80, False, "HS", 1), (80, 3, 480, 112, True, "HS", 1), (112, 3, 672, 112, True, "HS", 1),
            (112, 5, 672, 160, True, "HS", 2), (160, 5, 960, 160, True, "HS", 1), (160, 5, 960, 160, True, "HS", 1)]


class InvertedResidualV3(nn.Module):
    def __init__(self, cin: int, k: int, exp: int, cout: int, use_se: bool, act: str, stride: int):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        a = nn.Hardswish if act == "HS" else nn.ReLU
        layers: List[nn.Module] = []
        if exp != cin:
            layers.append(ConvBNAct(cin, exp, 1, act=a))
        layers.append(ConvBNAct(exp, exp, k, stride, groups=exp, act=a))
        if use_se:
            layers.append(SqueezeExcitation(exp, make_divisible(exp // 4, 8)))
        layers.append(ConvBNAct(exp, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return y + x if self.use_res_connect else y


# The two ``linear_reg`` heads upstream MobileNetV3 has had. "mlp" is the current one (commit "Change
# regression layer for mobilenetv3", the layout its released weights were trained in):
# Linear(last conv, head_hidden) -> Hardswish -> Linear(head_hidden, 6), keys linear_reg.0/.2, no dropout.
# "linear" is the earlier single Linear(last conv, 6), keys linear_reg.weight/.bias.
HEAD_LAYOUTS = ("mlp", "linear")


class MobileNetV3Pose(nn.Module):
    """MobileNetV3 small/large with a 6-output ``linear_reg`` head. (B, 3, 224, 224) -> (B, 6).

    Parameters
    ----------
    variant : {"small", "large"}
    head_hidden : int
        Width of the current upstream head's hidden layer (1024 small, 1280 large: upstream's
        ``last_channel``).
    head : {"mlp", "linear"}
        ``"mlp"`` (default): the current upstream head; ``"linear"``: the earlier single Linear.
    """

    def __init__(self, variant: str, head_hidden: int, head: str = "mlp", num_outputs: int = 6):
        super().__init__()
        if head not in HEAD_LAYOUTS:
            raise ValueError(f"head must be one of {HEAD_LAYOUTS}, got {head!r}")
        setting = V3_SMALL if variant == "small" else V3_LARGE
        layers: List[nn.Module] = [ConvBNAct(3, setting[0][0], 3, 2, act=nn.Hardswish)]
        layers += [InvertedResidualV3(*cfg) for cfg in setting]
        last = 6 * setting[-1][3]
        layers.append(ConvBNAct(setting[-1][3], last, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.head_layout = head
        if head == "mlp":
            self.linear_reg: nn.Module = nn.Sequential(nn.Linear(last, head_hidden), nn.Hardswish(inplace=True),
                                                       nn.Linear(head_hidden, num_outputs))
        else:
            self.linear_reg = nn.Linear(last, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_reg(torch.flatten(self.avgpool(self.features(x)), 1))


def head_layouts(model_id: str) -> tuple:
    """The ``linear_reg`` layouts a backbone can have, the default (current upstream) first."""
    return HEAD_LAYOUTS if get_spec(model_id).family == "mobilenetv3" else ("linear",)


def build_pose_model(model_id: str, head: Optional[str] = None) -> nn.Module:
    """A freshly initialised pose network of a registered backbone (eval mode, 6D output).

    Parameters
    ----------
    head : str, optional
        ``linear_reg`` layout, one of :func:`head_layouts` (default: the current upstream one).
    """
    spec = get_spec(model_id)
    if spec.task != "head_pose":
        raise UnknownModelError(f"'{model_id}' is a {spec.task} model, not a pose backbone")
    layouts = head_layouts(model_id)
    if head is not None and head not in layouts:
        raise ValueError(f"'{model_id}' has no '{head}' head layout: expected one of {', '.join(layouts)}")
    if spec.family == "resnet":
        model: nn.Module = ResNetPose(**spec.arch)
    elif spec.family == "mobilenetv2":
        model = MobileNetV2Pose()
    else:
        model = MobileNetV3Pose(**spec.arch, head=head or layouts[0])
    return model.eval()


class DecomposedHardswish(nn.Module):
    """``x * (relu(x + 3) - relu(x - 3)) / 6``: the same function as ``nn.Hardswish``.

    Written as ADD/RELU, SUB and MUL ops, which XNNPACK runs in float and int8. The plain
    ``x * relu6(x + 3) / 6`` is fused back into HARD_SWISH by the TFLite converter, and LiteRT 2.1's
    XNNPACK does not take int8 HARD_SWISH: every one split the int8 graph (28 partitions, ~7x slower).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (torch.relu(x + 3.0) - torch.relu(x - 3.0)) * (1.0 / 6.0)


class DecomposedHardsigmoid(nn.Module):
    """``relu6(x + 3) / 6`` as ADD, RELU6, MUL ops: the same function as ``nn.Hardsigmoid``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x + 3.0, 0.0, 6.0) * (1.0 / 6.0)


def fold_paired_head(model: nn.Module) -> bool:
    """Fold a ``linear_reg = (Linear, Hardswish, Linear)`` head whose hidden units come in exact +/- pairs
    back into one Linear, in place; True when folded.

    Such a head is what :func:`headpose.convert.checkpoint.current_head_from_linear` writes (the
    project's students in the current upstream layout): units ``2p`` and ``2p + 1`` compute ``u_p`` and
    ``-u_p``, their output weights are opposite, every other unit has zero output weight, so by
    ``hardswish(u) - hardswish(-u) = u`` the head is exactly ``sum_p w2_p (W1_p x + b1_p) + b2``. In an
    int8 graph the decomposed hard-swish of such units costs accuracy (the student's int8 gate: mean
    0.74 deg unfolded, as its trained single Linear folded). Any other head (real upstream weights) is
    left alone.
    """
    head = getattr(model, "linear_reg", None)
    if not (isinstance(head, nn.Sequential) and len(head) == 3 and isinstance(head[0], nn.Linear)
            and isinstance(head[2], nn.Linear)):
        return False
    w1, b1 = head[0].weight.detach().double(), head[0].bias.detach().double()
    w2, b2 = head[2].weight.detach().double(), head[2].bias.detach().double()
    hidden = w1.shape[0]
    even, odd = torch.arange(0, hidden - 1, 2), torch.arange(1, hidden, 2)
    live = w2.abs().sum(dim=0) > 0
    paired = (torch.equal(w1[even], -w1[odd]) and torch.equal(b1[even], -b1[odd])
              and torch.equal(w2[:, even], -w2[:, odd]))
    if not paired or (hidden % 2 and bool(live[-1])):
        return False
    w = w2[:, even] @ w1[even]
    b = w2[:, even] @ b1[even] + b2
    folded = nn.Linear(w1.shape[1], w2.shape[0])
    with torch.no_grad():
        folded.weight.copy_(w.to(head[0].weight.dtype))
        folded.bias.copy_(b.to(head[0].bias.dtype))
    model.linear_reg = folded
    return True


def xnnpack_friendly(model: nn.Module) -> nn.Module:
    """Replace hard-swish/hard-sigmoid modules (parameter-free) by their decomposed forms, in place.

    The state_dict is unchanged; outputs are equal up to float rounding.
    """
    for name, child in list(model.named_children()):
        if isinstance(child, nn.Hardswish):
            setattr(model, name, DecomposedHardswish())
        elif isinstance(child, nn.Hardsigmoid):
            setattr(model, name, DecomposedHardsigmoid())
        else:
            xnnpack_friendly(child)
    return model
