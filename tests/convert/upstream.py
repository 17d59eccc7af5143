"""An ONNX in the style of yakhyo/head-pose-estimation's own export: the backbone's 6-vector, then
Gram-Schmidt in the graph, output ``rotation_matrix`` (B, 3, 3), input ``input``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class UpstreamStyle(nn.Module):
    """Backbone -> 6D -> rotation matrix (columns x, y, z as in that repository's utils)."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.backbone(x)
        a1, a2 = v[:, 0:3], v[:, 3:6]
        bx = a1 / torch.clamp(a1.norm(dim=1, keepdim=True), min=1e-8)
        bz = torch.cross(bx, a2, dim=1)
        bz = bz / torch.clamp(bz.norm(dim=1, keepdim=True), min=1e-8)
        by = torch.cross(bz, bx, dim=1)
        return torch.stack([bx, by, bz], dim=2)


def export_upstream(backbone: nn.Module, path: Path, size: int = 224, batch: int = 1) -> Path:
    """Write the upstream-style ONNX (static batch, as that repository exports)."""
    model = UpstreamStyle(backbone).eval()
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(batch, 3, size, size),), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["rotation_matrix"])
    return path
