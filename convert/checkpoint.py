"""Loading pose checkpoints safely and strictly.

Accepted files: a plain ``state_dict`` (what yakhyo/head-pose-estimation releases), or a training
checkpoint holding it under ``model``, ``model_state_dict`` or ``state_dict``. Files are read with
``torch.load(..., weights_only=True)``: nothing is unpickled beyond tensors and containers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Mapping, Optional, Union

import torch
from torch import nn

from ..runtime.errors import CheckpointError
from ..runtime.registry import POSE_MODELS, get_spec
from .models import build_pose_model

log = logging.getLogger(__name__)

STATE_DICT_KEYS = ("model", "model_state_dict", "state_dict")


def read_state_dict(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """Read the tensors of a checkpoint file.

    Parameters
    ----------
    path : path
        ``.pt``/``.pth`` file: a ``state_dict`` or a training checkpoint with one of the keys
        ``model``, ``model_state_dict``, ``state_dict``.

    Raises
    ------
    CheckpointError
        Missing file, unreadable/corrupt file, or no state_dict inside.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist: expected a .pt file holding a state_dict "
                              f"(e.g. mobilenetv3_small.pt from yakhyo/head-pose-estimation)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for corrupt or unsafe files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint '{path}' could not be read as a PyTorch file with weights_only=True "
                              f"({first}); expected a state_dict saved with torch.save") from None
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if isinstance(obj.get(key), Mapping):
                log.info("checkpoint %s: using its '%s' entry", path.name, key)
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = type(obj).__name__ if not isinstance(obj, Mapping) else f"a dict with keys {list(obj)[:6]}"
        raise CheckpointError(f"checkpoint '{path}' holds {found}: expected a state_dict (name -> tensor) or a "
                              f"training checkpoint with one of the keys {', '.join(STATE_DICT_KEYS)}")
    # checkpoints saved from DataParallel/DistributedDataParallel prefix every key with 'module.'
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj)


def _fits(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> bool:
    ref = model.state_dict()
    return set(ref) == set(sd) and all(ref[k].shape == sd[k].shape for k in ref)


def suggest_backbone(sd: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The registered pose backbone whose keys and shapes ``sd`` fits exactly, if any."""
    for model_id in POSE_MODELS:
        if _fits(build_pose_model(model_id), sd):
            return model_id
    return None


def load_pose_model(model_id: str, path: Union[str, Path]) -> nn.Module:
    """Build ``model_id`` and load the checkpoint at ``path`` strictly.

    Returns
    -------
    torch.nn.Module
        In eval mode; ``forward`` maps (B, 3, 224, 224) ImageNet-normalised RGB to (B, 6).

    Raises
    ------
    CheckpointError
        Naming missing/unexpected keys and shape mismatches, and suggesting the registered
        backbone the checkpoint does fit.
    """
    get_spec(model_id)
    sd = read_state_dict(path)
    model = build_pose_model(model_id)
    ref = model.state_dict()
    missing = sorted(set(ref) - set(sd))
    unexpected = sorted(set(sd) - set(ref))
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(ref[k].shape)}"
              for k in ref if k in sd and sd[k].shape != ref[k].shape]
    if missing or unexpected or shapes:
        other = suggest_backbone(sd)
        hint = (f" The checkpoint fits '{other}': run with that model id instead." if other and other != model_id
                else " Is it a checkpoint of a 6DRepNet-style backbone with a 6-output 'linear_reg' head?")

        def few(xs):
            return ", ".join(xs[:5]) + (f" (+{len(xs) - 5} more)" if len(xs) > 5 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {few(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {few(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches: {few(shapes)}")
        raise CheckpointError(f"checkpoint '{path}' does not fit '{model_id}': {'; '.join(parts)}.{hint}")
    model.load_state_dict(sd, strict=True)
    return model.eval()


def seeded_checkpoint(model_id: str, path: Union[str, Path], seed: int = 0) -> Path:
    """Write a seeded, untrained checkpoint whose outputs vary across faces (for tests and demos).

    Batch-norm running statistics and affine parameters are randomised so that the network is not
    near-constant: parity checks on such a model measure something.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_pose_model(model_id)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                # He-normal weights keep the signal alive through the plain (non-residual) MobileNet
                # stacks; PyTorch's default init shrinks it ~3x per layer, so MobileNet outputs were
                # constant to 1e-7 across faces and every parity check passed trivially.
                m.weight.normal_(0.0, (2.0 / m.weight[0].numel()) ** 0.5, generator=g)
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.05, generator=g)
                nn.init.normal_(m.bias, 0.0, 0.5, generator=g)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path
