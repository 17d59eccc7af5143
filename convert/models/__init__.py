"""PyTorch model definitions used by the converter (pose backbones)."""

from .pose import build_pose_model, head_layouts

__all__ = ["build_pose_model", "head_layouts"]
