"""Quantisation-aware fine-tuning of a trained pose student (issue 14, point 3).

A trained student (``--init``) is fine-tuned with *simulated* int8 quantisation where the TFLite
int8 graph of ``headpose convert --precision int8`` quantises, so that the post-training conversion
that follows loses less:

* weights: per output channel, symmetric, int8 in [-127, 127] (TFLite's per-channel scheme) of the
  convolution with its BatchNorm folded in (``w * gamma / sqrt(var + eps)``, BatchNorm frozen at its
  running statistics, as the converter folds it), of the SE 1x1 convolutions and of the Linear head;
* activations: per tensor, affine int8 in [-128, 127] (TFLite's activation scheme), with a
  moving-average min/max range, after: the input (the int8 input tensor), each fused
  conv + BN (+ ReLU/ReLU6), the conv + BN output *before* a hard-swish, the SUB and the output of
  the decomposed hard-swish (``convert.models.pose.DecomposedHardswish``), the ADD+RELU6 and output
  of the hard-sigmoid, the residual ADDs, the SE block (pool, its convs, its MUL), the global
  pooling and the head's
  output (the 6-vector).

The fake quantisation lives in hooks and instance-level forwards of the *unchanged* module tree:
:meth:`FakeQuantModel.remove` restores the plain float network, whose ``state_dict`` has the same
keys as the shipped students. MobileNetV3 students carry the "paired" current-upstream head that the
converter folds into one Linear (``fold_paired_head``); it is trained folded (the graph that is
quantised) and written back in the same layout (``current_head_from_linear``, gain 16, exact).

Fake quantisation uses torch's own kernels (``torch.fake_quantize_per_channel_affine``,
``torch.ao.quantization.FakeQuantize``): straight-through gradients, as torch/torchao QAT.
"""

from __future__ import annotations

import copy
import logging
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Union

import numpy as np

from ..runtime.errors import InputError
from ..runtime.manifest import sha256_file, write_json_atomic
from ..runtime.registry import get_spec
from .cropset import CropSet
from .distill import (Augment, _lr_at, _save_atomic, geodesic_loss, optimise, predict_rotations,
                      rotation_from_6d_torch)
from .labels import summarise

log = logging.getLogger(__name__)


def _torch():
    import torch
    return torch


def fake_quant_weight(w, axis: int = 0):
    """Per-channel symmetric int8 fake quantisation of a weight tensor (TFLite's scheme).

    Parameters
    ----------
    w : torch.Tensor
        (C_out, ...) float weights; channel ``axis`` 0.

    Returns
    -------
    torch.Tensor
        Same shape: ``clip(round(w / s), -127, 127) * s`` with ``s = max|w_c| / 127`` per channel;
        straight-through gradient inside the range.
    """
    torch = _torch()
    amax = w.detach().abs().flatten(1).amax(dim=1)
    scale = torch.clamp(amax / 127.0, min=1e-12).float()
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, axis, -127, 127)


def _act_fq():
    """Per-tensor affine int8 fake quantiser (moving-average min/max range, [-128, 127])."""
    from torch.ao.quantization import FakeQuantize, MovingAverageMinMaxObserver
    torch = _torch()
    return FakeQuantize(observer=MovingAverageMinMaxObserver, quant_min=-128, quant_max=127, dtype=torch.qint8,
                        qscheme=torch.per_tensor_affine, reduce_range=False, averaging_constant=0.01)


@dataclass
class QATConfig:
    """Hyper-parameters of one QAT fine-tune (recorded in the sidecar)."""

    student: str
    steps: int = 300             # optimiser steps in all
    batch: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.0
    warmup_steps: int = 20
    seed: int = 0
    threads: int = 2
    self_weight: float = 1.0     # geodesic to the float student's own rotation (the init, frozen)
    length_weight: float = 1.0   # distill.length_penalty on the fake-quantised 6-vector
    calib_crops: int = 256       # un-augmented training crops that start the activation ranges
    freeze_ranges_at: float = 0.5  # fraction of the steps after which activation ranges stop moving
    val_limit: int = 400


class FakeQuantModel:
    """A pose network with switchable simulated int8 quantisation (see the module docstring).

    Parameters
    ----------
    model : torch.nn.Module
        A pose backbone of ``convert.models.pose`` (MobileNetV2 / V3 or ResNet family); modified in
        place (instance forwards and hooks) until :meth:`remove`.

    Notes
    -----
    With quantisation disabled (:meth:`set_quant` False) every patched forward calls the original
    module's own forward: outputs equal the float model's bit for bit. Enabled, BatchNorms act as
    their frozen running statistics folded into the preceding convolution, whatever the train/eval
    mode. Call the object as the model: ``(B, 3, H, W)`` normalised float input -> ``(B, 6)``.
    """

    def __init__(self, model):
        torch = _torch()
        nn = torch.nn
        from ..convert.models.pose import (InvertedResidualV2, InvertedResidualV3, SqueezeExcitation,
                                           fold_paired_head)
        self.model = model
        self.head_folded = fold_paired_head(model)
        self.enabled = True
        self.fqs = nn.ModuleDict()
        self._hooks: List = []
        self._patched: List = []
        self._n = 0
        self.input_fq = self._new_fq("input")
        acts = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid)
        paired_bn = set()
        for parent in model.modules():
            kids = list(parent.children())
            for i, conv in enumerate(kids):
                if isinstance(conv, nn.Conv2d) and i + 1 < len(kids) and isinstance(kids[i + 1], nn.BatchNorm2d):
                    bn = kids[i + 1]
                    paired_bn.add(id(bn))
                    self._patch(conv, self._conv_bn_forward(conv, bn))
                    self._patch(bn, self._bn_forward(bn))
                    act = kids[i + 2] if i + 2 < len(kids) and isinstance(kids[i + 2], acts) else None
                    if act is None or isinstance(act, (nn.Hardswish, nn.Hardsigmoid)):
                        self._hook_output(bn, "conv_bn")  # no fused activation: the conv output is a tensor
                    if act is not None and not isinstance(act, (nn.Hardswish, nn.Hardsigmoid)):
                        self._hook_output(act, "conv_bn_relu")
        for name, m in model.named_modules():
            if isinstance(m, nn.Conv2d) and not hasattr(m, "_qat_patched"):
                self._patch(m, self._weight_forward(m, torch.nn.functional.conv2d))
                if not (isinstance(self._parent(name), SqueezeExcitation) and name.endswith("fc1")):
                    self._hook_output(m, "conv")  # SE fc1 is fused with its ReLU (quantised after it)
            elif isinstance(m, nn.Linear):
                self._patch(m, self._weight_forward(m, None))
                self._hook_output(m, "linear")
            elif isinstance(m, nn.Hardswish):
                self._patch(m, self._hardswish_forward(m))
            elif isinstance(m, nn.Hardsigmoid):
                self._patch(m, self._hardsigmoid_forward(m))
            elif isinstance(m, nn.ReLU) and isinstance(self._parent(name), SqueezeExcitation):
                self._hook_output(m, "se_relu")
            elif isinstance(m, nn.AdaptiveAvgPool2d):
                self._hook_output(m, "pool")
            elif isinstance(m, SqueezeExcitation):
                self._hook_output(m, "se_mul")
            elif isinstance(m, (InvertedResidualV2, InvertedResidualV3)) and m.use_res_connect:
                self._hook_output(m, "add")
        log.debug("fake quantisation: %d activation quantisers", len(self.fqs))

    # -- construction helpers ------------------------------------------------------------------
    def _parent(self, name: str):
        parent = self.model
        for part in name.split(".")[:-1]:
            parent = getattr(parent, part)
        return parent

    def _new_fq(self, kind: str):
        fq = _act_fq()
        self.fqs[f"{self._n}_{kind}"] = fq
        self._n += 1
        return fq

    def _patch(self, module, fwd) -> None:
        module.forward = fwd  # instance attribute: the class forward stays, the state_dict is unchanged
        module._qat_patched = True
        self._patched.append(module)

    def _hook_output(self, module, kind: str) -> None:
        fq = self._new_fq(kind)

        def hook(_m, _inp, out):
            return fq(out) if self.enabled else None
        self._hooks.append(module.register_forward_hook(hook))

    def _conv_bn_forward(self, conv, bn):
        torch = _torch()
        f = torch.nn.functional
        cls_forward = type(conv).forward

        def forward(x):
            if not self.enabled:
                return cls_forward(conv, x)
            s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            w = conv.weight * s.reshape(-1, 1, 1, 1)
            b = bn.bias - bn.running_mean * s
            if conv.bias is not None:
                b = b + conv.bias * s
            return f.conv2d(x, fake_quant_weight(w), b, conv.stride, conv.padding, conv.dilation, conv.groups)
        return forward

    def _bn_forward(self, bn):
        cls_forward = type(bn).forward

        def forward(x):
            return x if self.enabled else cls_forward(bn, x)  # folded into the conv when enabled
        return forward

    def _weight_forward(self, m, conv2d):
        torch = _torch()
        cls_forward = type(m).forward

        def forward(x):
            if not self.enabled:
                return cls_forward(m, x)
            w = fake_quant_weight(m.weight)
            if conv2d is None:
                return torch.nn.functional.linear(x, w, m.bias)
            return conv2d(x, w, m.bias, m.stride, m.padding, m.dilation, m.groups)
        return forward

    def _hardswish_forward(self, m):
        torch = _torch()
        cls_forward = type(m).forward
        q = [self._new_fq(f"hswish_{k}") for k in ("diff", "out")]

        def forward(x):  # DecomposedHardswish: x * (relu(x + 3) - relu(x - 3)) / 6
            # quantised: its SUB (in [0, 6]) and its output; the two ADD+RELU tensors (ranges of x shifted
            # by 3) and the MUL before the 1/6 scale (the output's grid times 6) are left out for speed
            if not self.enabled:
                return cls_forward(m, x)
            return q[1](x * q[0](torch.relu(x + 3.0) - torch.relu(x - 3.0)) * (1.0 / 6.0))
        return forward

    def _hardsigmoid_forward(self, m):
        torch = _torch()
        cls_forward = type(m).forward
        q = [self._new_fq(f"hsigmoid_{k}") for k in ("relu6_add", "scale")]

        def forward(x):  # DecomposedHardsigmoid: clamp(x + 3, 0, 6) / 6
            if not self.enabled:
                return cls_forward(m, x)
            return q[1](q[0](torch.clamp(x + 3.0, 0.0, 6.0)) * (1.0 / 6.0))
        return forward

    # -- use -----------------------------------------------------------------------------------
    def __call__(self, x):
        return self.model(self.input_fq(x) if self.enabled else x)

    def set_quant(self, enabled: bool) -> None:
        """Switch the simulated quantisation on (int8 behaviour) or off (the exact float model)."""
        self.enabled = bool(enabled)

    def set_observe(self, enabled: bool) -> None:
        """Let the activation ranges follow the data (moving average) or freeze them."""
        for fq in self.fqs.values():
            fq.enable_observer() if enabled else fq.disable_observer()

    def calibrate(self, x_batches) -> int:
        """Start the activation ranges on real inputs: exact mean of per-batch min/max over the batches.

        Parameters
        ----------
        x_batches : iterable of torch.Tensor
            Normalised (B, 3, H, W) float inputs.

        Returns
        -------
        int
            Number of batches used.
        """
        torch = _torch()
        n = 0
        self.set_observe(True)
        for fq in self.fqs.values():
            fq.disable_fake_quant()
        with torch.no_grad():
            for x in x_batches:
                for fq in self.fqs.values():
                    fq.activation_post_process.averaging_constant = 1.0 / (n + 1)
                self(x)
                n += 1
        for fq in self.fqs.values():
            fq.activation_post_process.averaging_constant = 0.01
            fq.enable_fake_quant()
        return n

    def parameters(self):
        return self.model.parameters()

    def eval(self) -> "FakeQuantModel":
        """Evaluation mode of the network (what :func:`distill.predict_rotations` asks); returns self."""
        self.model.eval()
        return self

    def float_state_dict(self, model_id: str) -> Dict:
        """The plain float ``state_dict`` in the shipped students' layout (quantisers left out)."""
        sd = {k: v.detach().clone().contiguous() for k, v in self.model.state_dict().items()}
        if self.head_folded:
            from ..convert.checkpoint import current_head_from_linear
            sd = current_head_from_linear(model_id, sd)
        return sd

    def remove(self):
        """Remove hooks and patched forwards; returns the float model (head still folded if it was)."""
        for h in self._hooks:
            h.remove()
        for m in self._patched:
            m.__dict__.pop("forward", None)
            m.__dict__.pop("_qat_patched", None)
        self._hooks, self._patched = [], []
        self.enabled = False
        return self.model


def _batches(crops: np.ndarray, spec, batch: int):
    torch = _torch()
    from ..convert.facedata import normalised_nchw
    for i in range(0, len(crops), batch):
        yield torch.from_numpy(normalised_nchw(np.asarray(crops[i:i + batch]), spec))


def qat_finetune(cfg: QATConfig, train: CropSet, val: Optional[CropSet], out: Union[str, Path],
                 init: Union[str, Path], augment: Optional[Augment] = None, progress: bool = True,
                 extra_meta: Optional[Dict] = None) -> Dict:
    """Fine-tune the student at ``init`` with simulated int8 and write its plain float checkpoint.

    Loss per batch of augmented training crops (labels exactly transformed, as :func:`distill.distill`):
    ``geodesic(R_q, R_teacher) + self_weight * geodesic(R_q, R_init) + length_weight * length_penalty(v_q)``
    with ``v_q`` the fake-quantised 6-vector, ``R_q`` its rotation, ``R_init`` the frozen init student's
    float rotation of the same crops.

    Parameters
    ----------
    out : path
        The plain float ``state_dict`` (upstream layout; ``load_pose_checkpoint`` loads it); sidecar
        ``.json`` beside it.
    init : path
        The trained student (required: QAT is a fine-tune).

    Returns
    -------
    dict
        The sidecar.
    """
    torch = _torch()
    from ..convert.checkpoint import load_pose_model
    from ..convert.facedata import normalised_nchw, sample_evenly
    spec = get_spec(cfg.student)
    if spec.task != "head_pose":
        raise InputError(f"student '{cfg.student}' is a {spec.task} model: expected a pose backbone")
    if len(train) < cfg.batch:
        raise InputError(f"{len(train)} training crops make no batch of {cfg.batch}: lower --batch or add data")
    if not init or not Path(init).is_file():
        raise InputError(f"QAT fine-tunes a trained student: --init '{init}' is not a file; give e.g. "
                         f"--init weights/{cfg.student}_fsanet.pt")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    augment = augment or Augment()
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    model = load_pose_model(cfg.student, init).eval()
    reference = copy.deepcopy(model).eval()  # the float student's own rotations (self-distillation)
    for p in reference.parameters():
        p.requires_grad_(False)
    qm = FakeQuantModel(model)
    calib_idx = np.sort(sample_evenly(len(train), cfg.calib_crops))
    n_cal = qm.calibrate(_batches(np.asarray(train.base[calib_idx]), spec, cfg.batch))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    val_idx = sample_evenly(len(val), cfg.val_limit) if val is not None and len(val) else None

    def held_out(enabled: bool) -> Dict:
        qm.set_quant(enabled)
        pred = predict_rotations(qm, np.asarray(val.base[val_idx]), spec)
        qm.set_quant(True)
        v = summarise(pred, np.asarray(val.R[val_idx]))
        return {"val_mae_deg": v["mae_mean"], "val_geodesic_deg": v["geodesic_mean"]}

    history: List[Dict] = []
    if val_idx is not None:
        history.append({"step": 0, "float": held_out(False), "fake_quant": held_out(True)})
        log.info("QAT start: %s", history[-1])
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        tqdm = None
    per_epoch = len(train) // cfg.batch
    freeze_at = int(cfg.freeze_ranges_at * cfg.steps)
    t0 = time.time()
    losses: List[float] = []
    bar = tqdm(range(cfg.steps), desc=f"QAT {cfg.student}", unit="batch", disable=not progress) if tqdm \
        else range(cfg.steps)
    order, rng = None, None
    for step in bar:
        epoch, s = divmod(step, per_epoch)
        if s == 0:
            rng = np.random.default_rng([cfg.seed, epoch])
            torch.manual_seed(cfg.seed * 1000 + epoch)
            order = rng.permutation(len(train))
        if step == freeze_at:
            qm.set_observe(False)
            log.info("activation ranges frozen at step %d", step)
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, cfg.steps, cfg.lr, cfg.warmup_steps)
        idx = order[s * cfg.batch:(s + 1) * cfg.batch]
        imgs, labels = zip(*(augment.sample(train, int(i), rng, spec.input_size) for i in idx))
        x = torch.from_numpy(normalised_nchw(np.stack(imgs), spec))
        y = torch.from_numpy(np.stack(labels)).float()
        with torch.no_grad():
            r_ref = rotation_from_6d_torch(reference(x))
        out6 = qm(x)
        rq = rotation_from_6d_torch(out6)
        loss = geodesic_loss(rq, y)
        if cfg.self_weight:
            loss = loss + cfg.self_weight * geodesic_loss(rq, r_ref)
        optimise(opt, loss, out6, cfg.length_weight, losses, bar if tqdm and progress and step % 10 == 0 else None)
        if (step + 1) % per_epoch == 0 or step + 1 == cfg.steps:
            rec = {"step": step + 1, "loss": round(float(np.mean(losses[-per_epoch:])), 5),
                   "seconds": round(time.time() - t0, 1)}
            if val_idx is not None:
                rec.update({"float": held_out(False), "fake_quant": held_out(True)})
            history.append(rec)
            log.info("QAT %s: %s", cfg.student, rec)
    wall = time.time() - t0
    sd = qm.float_state_dict(cfg.student)
    qm.remove()
    _save_atomic(sd, out)
    from ..convert.checkpoint import load_pose_checkpoint
    load_pose_checkpoint(cfg.student, out)  # the converter's own loader must take it (strict)
    side_init = Path(init).with_suffix(".json")
    sidecar = {
        "model": cfg.student, "file": out.name, "sha256": sha256_file(out),
        "format": "plain state_dict in the current upstream layout (as the shipped students; fake quantisation "
                  "removed, BatchNorm kept with its running statistics unchanged); "
                  "headpose.convert.checkpoint.load_pose_checkpoint loads it",
        "qat": {"weights": "per-channel symmetric int8 [-127, 127], conv with its BatchNorm folded (frozen statistics)",
                "activations": "per-tensor affine int8 [-128, 127], moving-average min/max (0.01), after input, "
                               "conv+BN(+ReLU), pre-hard-swish conv output, decomposed hard-swish SUB and output, "
                               "hard-sigmoid ADD+RELU6 and output, residual adds, SE pool/convs/mul, global pool, head",
                "activation_quantisers": len(qm.fqs), "calibration_batches": n_cal,
                "head": "folded to one Linear while training, written back paired (gain 16)" if qm.head_folded
                        else "single Linear",
                "loss": "geodesic to teacher labels + self_weight * geodesic to the init student's float rotation "
                        "+ length_weight * length_penalty, on the fake-quantised output"},
        "teacher": train.meta.get("teacher"), "train": {"sources": train.meta.get("sources"), "crops": len(train)},
        "config": asdict(cfg), "augment": asdict(augment),
        "init": {"file": str(init), "sha256": sha256_file(init),
                 "sidecar_sha256": sha256_file(side_init) if side_init.is_file() else None},
        "train_seconds": round(wall, 1), "images_per_second": round(cfg.steps * cfg.batch / max(wall, 1e-9), 1),
        "history": history, "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
    }
    if val is not None and len(val):
        sidecar["held_out"] = {"sources": val.meta.get("sources"), "crops": len(val)}
    if extra_meta:
        sidecar.update(extra_meta)
    write_json_atomic(out.with_suffix(".json"), sidecar)
    return sidecar

