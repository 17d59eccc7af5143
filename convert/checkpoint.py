"""Loading pose checkpoints safely and strictly.

Accepted files: a plain ``state_dict`` (what yakhyo/head-pose-estimation releases), or a training
checkpoint holding it under ``model``, ``model_state_dict`` or ``state_dict`` — among them what
upstream ``main.py`` writes: ``{"epoch", "model", "optimizer", "lr_scheduler", "args"}`` with
``args`` an ``argparse.Namespace``. Files are read with ``torch.load(..., weights_only=True)``:
nothing is unpickled beyond tensors, containers and, through torch's own allow-list scoped to this
one load, ``argparse.Namespace``. Any other global, or a ``__reduce__`` payload, is refused unrun.

MobileNetV3 checkpoints come in two head layouts (:data:`~headpose.convert.models.pose.HEAD_LAYOUTS`):
the current upstream ``linear_reg`` (Linear -> Hardswish -> Linear) and the earlier single Linear.
The layout is recognised from the keys; both load strictly.
"""

from __future__ import annotations

import argparse
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from ..runtime.errors import CheckpointError
from ..runtime.registry import POSE_MODELS, get_spec
from .models import build_pose_model, head_layouts

log = logging.getLogger(__name__)

STATE_DICT_KEYS = ("model", "model_state_dict", "state_dict")
# The only non-tensor globals a training checkpoint of upstream main.py holds (its `args`).
TRAINING_GLOBALS = (argparse.Namespace,)


@dataclass
class CheckpointInfo:
    """What a checkpoint file held besides its weights (JSON-safe; goes into the manifest).

    Attributes
    ----------
    kind : {"state_dict", "training_checkpoint"}
    entry : str or None
        The key of the training checkpoint the ``state_dict`` came from (e.g. ``"model"``).
    epoch : int or None
        The training checkpoint's ``epoch``, when it has one.
    args : dict or None
        The training arguments (``argparse.Namespace`` as plain JSON values), when present.
    head : str or None
        The ``linear_reg`` layout found (set by :func:`load_pose_checkpoint`).
    """

    kind: str = "state_dict"
    entry: Optional[str] = None
    epoch: Optional[int] = None
    args: Optional[Dict[str, Any]] = None
    head: Optional[str] = None
    other_keys: list = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        d = {"kind": self.kind, "head": self.head}
        if self.kind == "training_checkpoint":
            d.update(entry=self.entry, epoch=self.epoch, args=self.args, other_keys=self.other_keys)
        return d


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` as plain JSON data: numbers, strings, booleans, None, lists and string-keyed dicts.

    Anything else (a tensor, a device, an object) becomes its ``repr`` string, cut to 200 characters;
    non-finite floats become strings too (JSON has no NaN).
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if depth < 4 and isinstance(value, (list, tuple)):
        return [json_safe(v, depth + 1) for v in value]
    if depth < 4 and isinstance(value, Mapping):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, argparse.Namespace) and depth < 4:
        return json_safe(vars(value), depth + 1)
    return repr(value)[:200]


def _torch_load(path: Path):
    """``torch.load(weights_only=True)`` with exactly :data:`TRAINING_GLOBALS` allowed, for this load only."""
    with torch.serialization.safe_globals(list(TRAINING_GLOBALS)):
        return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(path: Union[str, Path]) -> Tuple[Dict[str, torch.Tensor], CheckpointInfo]:
    """Read the tensors of a checkpoint file, and what else it says about itself.

    Parameters
    ----------
    path : path
        ``.pt``/``.pth``/``.ckpt`` file: a ``state_dict`` or a training checkpoint with one of the keys
        ``model``, ``model_state_dict``, ``state_dict``.

    Returns
    -------
    (state_dict, info) : (dict of str -> torch.Tensor, CheckpointInfo)

    Raises
    ------
    CheckpointError
        Missing file, unreadable/corrupt/unsafe file, or no state_dict inside.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist: expected a .pt file holding a state_dict "
                              f"(e.g. mobilenetv3_small.pt from yakhyo/head-pose-estimation)")
    try:
        obj = _torch_load(path)
    except Exception as e:  # torch raises many kinds for corrupt or unsafe files
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint '{path}' could not be read as a PyTorch file with weights_only=True "
                              f"({first}); expected a state_dict saved with torch.save (or a training "
                              f"checkpoint holding one, whose only other objects are argparse.Namespace)") from None
    info = CheckpointInfo()
    if isinstance(obj, Mapping):
        for key in STATE_DICT_KEYS:
            if isinstance(obj.get(key), Mapping):
                log.info("checkpoint %s: training checkpoint, using its '%s' entry", path.name, key)
                info = CheckpointInfo(kind="training_checkpoint", entry=key,
                                      other_keys=sorted(str(k) for k in obj if k != key))
                epoch = obj.get("epoch")
                info.epoch = int(epoch) if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) else None
                args = obj.get("args", obj.get("params"))
                if args is not None:
                    info.args = json_safe(vars(args) if isinstance(args, argparse.Namespace) else args)
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        found = type(obj).__name__ if not isinstance(obj, Mapping) else f"a dict with keys {list(obj)[:6]}"
        raise CheckpointError(f"checkpoint '{path}' holds {found}: expected a state_dict (name -> tensor) or a "
                              f"training checkpoint with one of the keys {', '.join(STATE_DICT_KEYS)}")
    # checkpoints saved from DataParallel/DistributedDataParallel prefix every key with 'module.'
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return dict(obj), info


def read_state_dict(path: Union[str, Path]) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (see :func:`read_checkpoint`)."""
    return read_checkpoint(path)[0]


def _fits(model: nn.Module, sd: Mapping[str, torch.Tensor]) -> bool:
    ref = model.state_dict()
    return set(ref) == set(sd) and all(ref[k].shape == sd[k].shape for k in ref)


def find_head(model_id: str, sd: Mapping[str, torch.Tensor]) -> str:
    """The ``linear_reg`` layout of ``model_id`` that ``sd``'s keys name (the default when none does)."""
    layouts = head_layouts(model_id)
    if "linear_reg.weight" in sd and "linear" in layouts:
        return "linear"
    return layouts[0]


def suggest_backbone(sd: Mapping[str, torch.Tensor]) -> Optional[str]:
    """The registered pose backbone whose keys and shapes ``sd`` fits exactly (either head layout), if any."""
    for model_id in POSE_MODELS:
        if _fits(build_pose_model(model_id, find_head(model_id, sd)), sd):
            return model_id
    return None


def load_pose_checkpoint(model_id: str, path: Union[str, Path]) -> Tuple[nn.Module, CheckpointInfo]:
    """Build ``model_id`` in the head layout the checkpoint at ``path`` has, and load it strictly.

    Returns
    -------
    (model, info) : (torch.nn.Module, CheckpointInfo)
        The model in eval mode; ``forward`` maps (B, 3, 224, 224) ImageNet-normalised RGB to (B, 6).
        ``info.head`` names the head layout found.

    Raises
    ------
    CheckpointError
        Naming missing/unexpected keys and shape mismatches, and suggesting the registered
        backbone the checkpoint does fit.
    """
    get_spec(model_id)
    sd, info = read_checkpoint(path)
    head = find_head(model_id, sd)
    model = build_pose_model(model_id, head)
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
    info.head = head
    if len(head_layouts(model_id)) > 1:
        log.info("checkpoint %s: %s head layout '%s'%s", Path(path).name, model_id, head,
                 " (current upstream: Linear-Hardswish-Linear)" if head == "mlp"
                 else " (earlier upstream: a single Linear)")
    return model.eval(), info


def load_pose_model(model_id: str, path: Union[str, Path]) -> nn.Module:
    """Build ``model_id`` and load the checkpoint at ``path`` strictly (see :func:`load_pose_checkpoint`)."""
    return load_pose_checkpoint(model_id, path)[0]


def current_head_from_linear(model_id: str, sd: Mapping[str, torch.Tensor], gain: float = 16.0
                             ) -> Dict[str, torch.Tensor]:
    """Re-express a single-Linear MobileNetV3 head exactly in the current upstream head layout.

    The current head is ``Linear(C, H) -> Hardswish -> Linear(H, 6)``. With ``z = W x + b`` the old
    6-vector, the identity ``hardswish(z) - hardswish(-z) = z`` (true for every real z) gives it exactly:
    rows ``2j`` and ``2j + 1`` of the first Linear are ``+(W_j, b_j)`` and ``-(W_j, b_j)``, and output j of
    the second is their difference. The other ``H - 12`` hidden units repeat those rows (so that no
    weight channel is all zero, which quantisers handle badly) with zero weight in the second Linear.
    The hidden units carry ``gain * z`` and the second Linear divides by ``gain``
    (``(hardswish(g z) - hardswish(-g z)) / g = z``): exact all the same, and the int8 graph keeps its
    accuracy. With ``gain = 1`` most ``z`` sit in hard-swish's curved part (-3, 3), where the decomposed
    form's ``x + 3`` tensors are quantised on a range five times wider than ``z`` (measured: the student's
    int8 parity mean 1.26 deg geodesic, against ~0.5 deg for its single-Linear original).

    Parameters
    ----------
    model_id : str
        ``mobilenetv3_small`` or ``mobilenetv3_large``.
    sd : mapping
        A state_dict in the ``"linear"`` head layout.

    Returns
    -------
    dict
        The state_dict in the ``"mlp"`` layout (current upstream): loads into upstream's own code.
    """
    if find_head(model_id, sd) != "linear" or "mlp" not in head_layouts(model_id):
        raise CheckpointError(f"current_head_from_linear needs a {model_id} state_dict with the single-Linear head "
                              f"(keys linear_reg.weight/bias); found keys {sorted(k for k in sd if 'linear_reg' in k)}")
    w, b = sd["linear_reg.weight"].double(), sd["linear_reg.bias"].double()
    hidden = get_spec(model_id).arch["head_hidden"]
    rows = torch.arange(hidden) % 12
    sign = 1.0 - 2.0 * (rows % 2).double()           # +, -, +, -, ...
    w1, b1 = w[rows // 2] * (gain * sign)[:, None], b[rows // 2] * (gain * sign)
    w2 = torch.zeros(6, hidden, dtype=torch.float64)
    w2[torch.arange(6), 2 * torch.arange(6)] = 1.0 / gain
    w2[torch.arange(6), 2 * torch.arange(6) + 1] = -1.0 / gain
    out = {k: v for k, v in sd.items() if not k.startswith("linear_reg.")}
    dtype = sd["linear_reg.weight"].dtype
    out.update({"linear_reg.0.weight": w1.to(dtype), "linear_reg.0.bias": b1.to(dtype),
                "linear_reg.2.weight": w2.to(dtype), "linear_reg.2.bias": torch.zeros(6, dtype=dtype)})
    return out


def seeded_checkpoint(model_id: str, path: Union[str, Path], seed: int = 0) -> Path:
    """Write a seeded, untrained checkpoint whose outputs vary across faces (for tests and demos).

    Batch-norm running statistics and affine parameters are randomised so that the network is not
    near-constant: parity checks on such a model measure something. MobileNetV3 checkpoints are in the
    current upstream head layout, holding a random single Linear head re-expressed exactly
    (:func:`current_head_from_linear`): a random 1024-unit hidden layer made the network so chaotic
    that resampling differences of 1e-3 moved its angles by 5 deg.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = build_pose_model(model_id, head="linear")
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
    sd = model.state_dict()
    if "mlp" in head_layouts(model_id):
        sd = current_head_from_linear(model_id, sd)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return path
