"""CoreML backend: pose backbones and SCRFD -> ``.mlpackage`` (ML Program, iOS 16+) with ``manifest.json``.

Route
-----
* Pose: the checkpoint is loaded strictly (:func:`~headpose.convert.checkpoint.load_pose_checkpoint`), the
  input normalisation is moved inside the model (below), the module is traced with TorchScript and
  converted with ``coremltools.convert``. The output is the raw 6-vector ``ortho6d`` (B=1, 6), as for
  TFLite; rotation and Euler angles are computed by the app (``ios_notes/``).
* SCRFD: coremltools has no ONNX frontend, so the ONNX graph is replayed in PyTorch
  (:class:`~headpose.convert.models.scrfd_torch.ScrfdTorch`, weights copied from the ONNX
  initialisers), checked against ONNX Runtime on real frames, traced and converted. Outputs
  ``score_8 .. kps_32`` are ``[1, N, C]``; roles and strides are listed in the manifest.

Image input with the normalisation inside
-----------------------------------------
Both models take a CoreML *image* input named ``image`` (RGB, 8 bits per channel, the model's
input size), so an app hands over a ``CVPixelBuffer`` and never normalises. CoreML's
``ImageType`` applies ``x = scale * pixel + bias[c]`` with ONE scalar ``scale`` and a per-channel
``bias``; ImageNet's std differs per channel (58.395, 57.12, 57.375), so the pose model uses

    scale = 1 / s_ref,  bias[c] = -mean[c] / s_ref,  s_ref = mean(std)

which gives ``(pixel - mean[c]) / s_ref``, and the remaining per-channel factor
``g[c] = s_ref / std[c]`` is folded into the input-channel axis of the first convolution's
weights. That fold is exact, padding included: the first convolution zero-pads its input, and
``g[c] * 0 = 0``. (Folding the *mean* into the convolution would not be exact at the borders,
which is why the mean stays in the ImageType bias.) SCRFD's std is the same for all channels
(128), so its gain is 1 and nothing is folded. The manifest therefore describes the input as what
the app passes: ``dtype uint8``, ``layout NHWC`` ``[1, S, S, 3]``, ``color RGB``, ``mean [0, 0, 0]``,
``std [1, 1, 1]`` (raw pixels), and records the ImageType scale/bias and the folded gains under
``source.coreml``.

Precisions
----------
``fp32`` (float32 compute), ``fp16`` (float16 weights and compute), ``int8`` (fp16 model, then
``coremltools.optimize.coreml.linear_quantize_weights``: int8 symmetric per-channel weights,
``constexpr_affine_dequantize`` ops, fp16 activations), ``palettize6`` (fp16 model, then 6-bit
k-means ``palettize_weights`` per tensor: ``constexpr_lut_to_dense`` ops; needs scikit-learn).

What can be verified where
--------------------------
coremltools predicts only on macOS. On Linux this step verifies the module handed to coremltools
(the traced graph with the folded gain, fed ``scale * pixel + bias`` exactly as the ImageType
computes it) against the original model on real crops/frames, and estimates the effect of the
artifact's own weights: the float16 / dequantised int8 / palettised weights are read back out of
the compressed ML program and run in PyTorch, every layer output rounded to float16. The spec
(names, shapes, types), the ML program's op counts and the package size are checked by
``tests/coreml``. The CoreML predictions themselves are checked on a Mac by ``verify_coreml.py``
shipped inside every artifact with ``reference.npz`` (real inputs, reference outputs).

``file_sha256`` of an ``.mlpackage`` (a directory) is the sha256 of, for every file in sorted
relative-path order, ``relpath + "\\0" + sha256(file) + "\\n"`` (:func:`mlpackage_digest`).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as _dt
import hashlib
import io
import logging
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...runtime.errors import ConversionError, InputError
from ...runtime.formats import FORMATS
from ...runtime.manifest import Manifest, TensorSpec, artifact_id
from ...runtime.registry import SCRFD_DECODE
from ..source_file import check_source
from . import Backend, tool_versions

log = logging.getLogger(__name__)

PRECISIONS = FORMATS["coreml"].precisions
MODEL_FILE = FORMATS["coreml"].model_file
REFERENCE_FILE = "reference.npz"
CHECKER_FILE = "verify_coreml.py"
IMAGE_INPUT = "image"
POSE_OUTPUT = "ortho6d"
DEPLOYMENT_TARGET = "iOS16"
N_REFERENCE_POSE = 8        # crops shipped in reference.npz
N_REFERENCE_FRAMES = 2      # letterboxed frames shipped in reference.npz
N_PARITY_POSE = 32          # crops used for the Linux parity figures
N_PARITY_FRAMES = 8         # frames used for the Linux parity figures
WEIGHT_THRESHOLD = 2048     # tensors with fewer elements stay float16 (coremltools' default)

# what the Mac check (verify_coreml.py) accepts, per precision. Pose: largest geodesic angle between
# the CoreML and the reference rotation (degrees). SCRFD: largest score difference and largest box /
# keypoint distance difference (stride units) over anchors the reference scores >= 0.5.
MAC_TOLERANCE = {
    "fp32": {"pose_max_deg": 0.1, "score_max_abs": 1e-3, "dist_max_abs": 0.01},
    "fp16": {"pose_max_deg": 1.0, "score_max_abs": 0.02, "dist_max_abs": 0.1},
    "int8": {"pose_max_deg": 5.0, "score_max_abs": 0.05, "dist_max_abs": 0.3},
    "palettize6": {"pose_max_deg": 10.0, "score_max_abs": 0.1, "dist_max_abs": 0.5},
}




def mac_tolerance(precision: str, emulated: Dict[str, float]) -> Dict[str, float]:
    """The Mac check's tolerance: the precision's default, widened to twice the emulated error.

    ``emulated`` holds the Linux estimate with the artifact's own weights (keys as in
    :data:`MAC_TOLERANCE`); a seeded (random) checkpoint can be more sensitive to rounding than a
    trained one, and the tolerance must not fail a correct conversion for that reason.
    """
    tol = dict(MAC_TOLERANCE[precision])
    for k, v in emulated.items():
        if k in tol and v is not None:
            tol[k] = float(max(tol[k], round(2.0 * float(v) + 1e-4, 4)))
    return tol


# ------------------------------------------------------------------------------------------------
# normalisation inside the model


def image_affine(mean: Sequence[float], std: Sequence[float]) -> Tuple[float, List[float], np.ndarray]:
    """ImageType ``scale``/``bias`` and the per-channel gain left to fold into the first conv.

    Parameters
    ----------
    mean, std : 3 floats, pixel units (0..255), model colour order

    Returns
    -------
    scale : float
        ``1 / s_ref`` with ``s_ref = mean(std)``.
    bias : list of 3 float
        ``-mean[c] / s_ref``.
    gain : ndarray, (3,), float64
        ``s_ref / std[c]``; ``scale * pixel + bias`` multiplied by ``gain`` equals
        ``(pixel - mean) / std`` exactly.
    """
    mean = np.asarray(mean, np.float64)
    std = np.asarray(std, np.float64)
    s_ref = float(std.mean())
    return 1.0 / s_ref, [float(-m / s_ref) for m in mean], s_ref / std


def fold_input_gain(conv, gain: np.ndarray) -> None:
    """Multiply the input-channel axis of a (non-grouped) first ``nn.Conv2d`` by ``gain`` in place."""
    import torch
    if conv.in_channels != len(gain) or conv.groups != 1:
        raise ConversionError(f"cannot fold the input normalisation into a first convolution with "
                              f"{conv.in_channels} input channels and {conv.groups} groups (expected 3 and 1)")
    with torch.no_grad():
        conv.weight.mul_(torch.tensor(gain, dtype=conv.weight.dtype).view(1, -1, 1, 1))


def first_conv(model):
    """The first ``nn.Conv2d`` of a pose backbone, which is also the first op applied to its input.

    Checked with a forward hook: the first module to run must be this convolution.
    """
    import torch
    from torch import nn
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConversionError("the pose model has no convolution to fold the input normalisation into")
    order: List = []
    hooks = [m.register_forward_pre_hook(lambda mod, inp: order.append(mod)) for m in model.modules()
             if not list(m.children())]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, 64, 64))
    finally:
        for h in hooks:
            h.remove()
    if not order or order[0] is not convs[0]:
        raise ConversionError(f"the first op of the pose model is {type(order[0]).__name__ if order else None}, "
                              f"not its first convolution; the input normalisation cannot be folded")
    return convs[0]


# ------------------------------------------------------------------------------------------------
# package inspection (works on Linux: nothing is compiled or loaded)


def mlpackage_digest(path: Union[str, Path]) -> Tuple[str, int]:
    """sha256 and total bytes of an ``.mlpackage`` directory (see the module docstring)."""
    path = Path(path)
    h = hashlib.sha256()
    total = 0
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        fh = hashlib.sha256()
        with open(f, "rb") as fp:
            for block in iter(lambda: fp.read(1 << 20), b""):
                fh.update(block)
        total += f.stat().st_size
        h.update(f"{f.relative_to(path).as_posix()}\0{fh.hexdigest()}\n".encode())
    return h.hexdigest(), total


def _ops(block, counts: Counter) -> None:
    for op in block.operations:
        counts[op.type] += 1
        for b in op.blocks:
            _ops(b, counts)


def describe_mlpackage(path: Union[str, Path]) -> Dict:
    """Inputs, outputs and ML-program op counts of an ``.mlpackage``, read from its spec.

    Loads with ``skip_model_load=True`` (no compilation; works on Linux).

    Returns
    -------
    dict
        ``spec_version``, ``model_type`` (``mlProgram``), ``inputs``/``outputs``: lists of
        ``{"name", "kind": "image" | "multiarray", "shape", "dtype" | "color"}``, ``ops``: op type ->
        count over every function of the program, ``bytes``.
    """
    import coremltools as ct
    path = Path(path)
    m = ct.models.MLModel(str(path), skip_model_load=True)
    spec = m.get_spec()

    def feat(f) -> Dict:
        t = f.type
        kind = t.WhichOneof("Type")
        if kind == "imageType":
            cs = ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(t.imageType.colorSpace)
            return {"name": f.name, "kind": "image", "shape": [int(t.imageType.height), int(t.imageType.width)],
                    "color": cs}
        if kind == "multiArrayType":
            dt = ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(t.multiArrayType.dataType)
            return {"name": f.name, "kind": "multiarray", "shape": [int(s) for s in t.multiArrayType.shape],
                    "dtype": dt}
        return {"name": f.name, "kind": kind}

    counts: Counter = Counter()
    if spec.WhichOneof("Type") == "mlProgram":
        for fn in spec.mlProgram.functions.values():
            for blk in fn.block_specializations.values():
                _ops(blk, counts)
    return {"spec_version": int(spec.specificationVersion), "model_type": spec.WhichOneof("Type"),
            "inputs": [feat(f) for f in spec.description.input],
            "outputs": [feat(f) for f in spec.description.output],
            "ops": dict(sorted(counts.items())), "bytes": mlpackage_digest(path)[1]}


# ------------------------------------------------------------------------------------------------
# conversion and compression


@contextlib.contextmanager
def _quiet():
    """Silence coremltools' progress bars (tqdm on stderr) and its noisy loggers for the duration."""
    names = ("coremltools", "coremltools.converters", "coremltools.optimize")
    saved = [(logging.getLogger(n), logging.getLogger(n).level) for n in names]
    for lg, _ in saved:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, lvl in saved:
            lg.setLevel(lvl)


def to_mlprogram(traced, size: int, scale: float, bias: Sequence[float], output_names: Sequence[str],
                 precision: str):
    """``coremltools.convert`` a traced module with an RGB image input.

    Parameters
    ----------
    traced : torch.jit.ScriptModule
        (1, 3, size, size) float32 -> one tensor or a tuple (named ``output_names`` in order).
    scale, bias
        ImageType preprocessing ``scale * pixel + bias[c]``.
    precision : str
        One of :data:`PRECISIONS`; ``fp32`` computes in float32, the others in float16 (weights of
        ``int8`` / ``palettize6`` are compressed afterwards by :func:`compress`).

    Returns
    -------
    coremltools.models.MLModel (not compiled on Linux)
    """
    import coremltools as ct
    compute = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    try:
        with _quiet():
            return ct.convert(
                traced, convert_to="mlprogram", minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
                inputs=[ct.ImageType(name=IMAGE_INPUT, shape=(1, 3, size, size), scale=float(scale),
                                     bias=[float(b) for b in bias], color_layout=ct.colorlayout.RGB)],
                outputs=[ct.TensorType(name=n, dtype=np.float32) for n in output_names], compute_precision=compute)
    except Exception as e:
        raise ConversionError(f"coremltools could not convert the traced model ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); check the coremltools version "
                              f"(verified with 9.0)") from None


def compression_config(precision: str) -> Dict:
    """What :func:`compress` does for ``precision``, as recorded in the manifest's ``quantization``."""
    if precision == "fp32":
        return {"mode": "none"}
    if precision == "fp16":
        return {"mode": "float16", "weights": "float16", "activations": "float16"}
    if precision == "int8":
        return {"mode": "weight_int8", "method": "coremltools.optimize.coreml.linear_quantize_weights",
                "scheme": "linear_symmetric", "dtype": "int8", "granularity": "per_channel",
                "weight_threshold": WEIGHT_THRESHOLD, "activations": "float16",
                "dequantize_op": "constexpr_affine_dequantize"}
    if precision == "palettize6":
        return {"mode": "palettize", "method": "coremltools.optimize.coreml.palettize_weights", "nbits": 6,
                "algorithm": "kmeans", "granularity": "per_tensor", "weight_threshold": WEIGHT_THRESHOLD,
                "activations": "float16", "dequantize_op": "constexpr_lut_to_dense"}
    raise InputError(f"CoreML precision '{precision}' is not one of {', '.join(PRECISIONS)}")


def compress(mlmodel, precision: str):
    """Compress the weights of a float16 ML program (``int8`` / ``palettize6``); others unchanged."""
    import coremltools.optimize.coreml as cto
    if precision in ("fp32", "fp16"):
        return mlmodel
    if precision == "int8":
        cfg = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(
            mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=WEIGHT_THRESHOLD))
        with _quiet():
            return cto.linear_quantize_weights(mlmodel, config=cfg)
    if precision == "palettize6":
        try:
            import sklearn  # noqa: F401  coremltools' k-means
        except ImportError:
            raise ConversionError("palettize6 needs scikit-learn for coremltools' k-means: pip install "
                                  "scikit-learn (it is in the 'convert' extra)") from None
        cfg = cto.OptimizationConfig(global_config=cto.OpPalettizerConfig(
            mode="kmeans", nbits=6, granularity="per_tensor", weight_threshold=WEIGHT_THRESHOLD))
        with _quiet():
            return cto.palettize_weights(mlmodel, config=cfg)
    raise InputError(f"CoreML precision '{precision}' is not one of {', '.join(PRECISIONS)}")


def program_weights(mlmodel) -> List[np.ndarray]:
    """Every weight tensor of an in-memory ML program as float32, dequantised where compressed.

    Reads ``const`` values and materialises ``constexpr_*`` ops (affine dequantise, LUT to dense)
    with coremltools' own ``materialized_val_inference``, i.e. the values the device will compute with.
    """
    prog = getattr(mlmodel, "_mil_program", None)
    if prog is None:
        raise ConversionError("the ML program is not in memory (a freshly converted MLModel is needed)")
    out = []
    for fn in prog.functions.values():
        for op in fn.operations:
            if op.op_type.startswith("constexpr_"):
                val = op.materialized_val_inference()
            elif op.op_type == "const":
                val = op.outputs[0].val
            else:
                continue
            if isinstance(val, np.ndarray) and val.ndim >= 2 and val.size >= 16:
                out.append(np.asarray(val, np.float32))
    return out


def load_program_weights(module, weights: Sequence[np.ndarray]) -> Dict:
    """Replace each conv/linear weight of ``module`` by the program weight of the same shape closest to it.

    Closest = smallest mean absolute difference. The match must be unambiguous: compressed weights
    differ from their source by the rounding error, unrelated tensors by the weights' own size; a
    match whose error is not below half the runner-up's counts as ``ambiguous``.

    Returns
    -------
    dict: ``replaced`` (count), ``unmatched`` (module weights without a program weight),
    ``ambiguous`` (matches too close to the runner-up), ``max_rel_err`` (largest
    ``mean|w_program - w| / mean|w|`` over replaced tensors), ``max_abs_rel_err`` (largest
    ``max|w_program - w| / max|w|``)
    """
    import torch
    from torch import nn
    pool = list(weights)
    replaced = unmatched = ambiguous = 0
    worst = worst_max = 0.0
    with torch.no_grad():
        for m in module.modules():
            if not isinstance(m, (nn.Conv2d, nn.Linear)):
                continue
            w = m.weight.detach().numpy()
            cands = [i for i, p in enumerate(pool) if p.shape == w.shape]
            if not cands:
                unmatched += 1
                continue
            errs = np.asarray([float(np.abs(pool[i] - w).mean()) for i in cands])
            order = np.argsort(errs)
            if len(cands) > 1 and errs[order[0]] >= 0.5 * errs[order[1]] \
                    and not np.array_equal(pool[cands[int(order[0])]], pool[cands[int(order[1])]]):
                ambiguous += 1
            k = cands[int(order[0])]
            scale = max(float(np.abs(w).mean()), 1e-12)
            worst = max(worst, float(errs[order[0]]) / scale)
            worst_max = max(worst_max, float(np.abs(pool[k] - w).max()) / max(float(np.abs(w).max()), 1e-12))
            m.weight.copy_(torch.from_numpy(pool.pop(k)))
            replaced += 1
    return {"replaced": replaced, "unmatched": unmatched, "ambiguous": ambiguous, "max_rel_err": worst,
            "max_abs_rel_err": worst_max}


# ------------------------------------------------------------------------------------------------
# real data


_CROPS: Dict[Tuple, np.ndarray] = {}


def _pose_crops(source: Path, detector: Path, size: int, margin: float) -> np.ndarray:
    """Up to :data:`N_PARITY_POSE` real face crops (uint8 RGB) spread over the source; cached per process."""
    from ..facedata import OnnxFaceDetector, face_crops, list_sources, sample_evenly
    st = source.stat()
    key = (str(source.resolve()), st.st_mtime_ns, str(detector), size, margin)
    if key not in _CROPS:
        files = list_sources(source)
        video = any(f.suffix.lower() in (".mp4", ".avi", ".mov", ".mkv", ".webm") for f in files)
        crops, _ = face_crops(source, OnnxFaceDetector(detector, 640), size=size, margin=margin,
                              every=25 if video else 1, min_face=40, limit=200)
        _CROPS[key] = crops[sample_evenly(len(crops), N_PARITY_POSE)]
    return _CROPS[key]


def _letterboxed_frames(source: Path, size: int, n: int) -> Tuple[np.ndarray, np.ndarray, List[str]]:
    """``n`` frames spread over the source, letterboxed and rounded to uint8 RGB (what a camera app passes)."""
    from ...runtime.preprocess import letterbox
    from ..facedata import iter_frames, sample_evenly
    ids = [fid for fid, _ in iter_frames(source, every=5)]
    if not ids:
        raise InputError(f"no readable frames in '{source}'")
    want = {ids[i] for i in sample_evenly(len(ids), n)}
    canvases, scales, names = [], [], []
    for fid, frame in iter_frames(source, every=5):
        if fid in want:
            c, s = letterbox(frame, (size, size))
            canvases.append(np.clip(np.round(c[..., ::-1]), 0, 255).astype(np.uint8))  # BGR -> RGB
            scales.append(s)
            names.append(fid)
    return np.stack(canvases), np.asarray(scales, np.float32), names


def _resolve_data(calib: Optional[Union[str, Path]]) -> Path:
    from ..calibration import default_data_source
    path = Path(calib) if calib else default_data_source()
    if path is None:
        raise ConversionError("the CoreML parity check needs real images and none were found: pass --calib PATH "
                              "(a video, an image or a folder of images with faces) or set $HEADPOSE_DATA")
    if not path.exists():
        raise InputError(f"data source '{path}' does not exist: expected a video, an image or a folder")
    return path


# ------------------------------------------------------------------------------------------------
# pose


def _geodesic_6d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from ...runtime.rotation import geodesic_deg, rotation_from_6d
    return geodesic_deg(rotation_from_6d(a), rotation_from_6d(b))


def _pose_parity(original, folded_traced, emulated: Tuple, crops: np.ndarray,
                 spec, scale: float, bias: Sequence[float]) -> Tuple[Dict, np.ndarray, np.ndarray]:
    import torch
    from ...runtime.preprocess import normalise
    from ...runtime.rotation import angle_difference_deg, euler_from_6d
    x_ref = torch.from_numpy(normalise(crops.astype(np.float32), spec.mean, spec.std).transpose(0, 3, 1, 2).copy())
    # exactly what CoreML's ImageType computes from the pixels, then the handed-over graph
    x_img = torch.from_numpy((crops.astype(np.float32) * np.float32(scale)
                              + np.asarray(bias, np.float32)).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        ref = original(x_ref).numpy()
        got = np.concatenate([folded_traced(x_img[i:i + 1]).numpy() for i in range(len(x_img))])
    geo = _geodesic_6d(ref, got)
    eul = angle_difference_deg(euler_from_6d(ref), euler_from_6d(got))
    out = {"graph_handed_to_coremltools": {
        "compared": "traced module with the folded first-conv gain, fed scale*pixel+bias as the ImageType "
                    "computes it, vs the original checkpoint fed (pixel-mean)/std, float32 PyTorch",
        "max_abs_diff_6d": float(np.abs(ref - got).max()), "max_geodesic_deg": float(geo.max()),
        "max_euler_diff_deg": float(eul.max())}}
    emu_module, half, label = emulated
    emu = np.concatenate([_run(emu_module, x_img[i:i + 1], half).numpy() for i in range(len(x_img))])
    g2 = _geodesic_6d(ref, emu)
    e2 = angle_difference_deg(euler_from_6d(ref), euler_from_6d(emu))
    out["artifact_weights_emulated"] = {
        "compared": label, "max_abs_diff_6d": float(np.abs(ref - emu).max()),
        "mean_geodesic_deg": float(g2.mean()), "max_geodesic_deg": float(g2.max()),
        "max_euler_diff_deg": float(e2.max())}
    return out, ref, emu


def artifact_weight_module(module, mlmodel, precision: str):
    """A copy of ``module`` computing roughly as the artifact would, for the Linux-side estimate.

    ``fp16``/``int8``/``palettize6``: every conv/linear weight is replaced by the program's own
    (float16, dequantised int8 or palettised) value, and the output of every leaf module is rounded
    to float16 (float32 arithmetic otherwise: CPU float16 convolutions are far too slow here, and
    the device's float16 accumulation is not reproduced). ``fp32``: an unchanged copy.

    Returns
    -------
    (module, fp16_activations, description) : (nn.Module, bool, str)
    """
    import torch
    m = copy.deepcopy(module).eval()
    if precision == "fp32":
        return m, False, "PyTorch float32 (the fp32 program holds the same float32 weights)"
    info = load_program_weights(m, program_weights(mlmodel))
    if info["unmatched"] or info["ambiguous"] or info["max_rel_err"] > 0.25:
        raise ConversionError(f"the converted ML program's weights do not correspond to the model's ({info}): "
                              f"coremltools changed or dropped weights (fused an op?); the estimate cannot be made")

    def to_half(mod, inp, out):
        if isinstance(out, torch.Tensor) and out.is_floating_point():
            return out.half().float()
        return out
    for sub in m.modules():
        if not list(sub.children()):
            sub.register_forward_hook(to_half)
    desc = (f"PyTorch with the {info['replaced']} conv/linear weights read back from the ML program ({precision}: "
            f"the values coremltools materialises; largest mean relative weight change {info['max_rel_err']:.2e}, "
            f"largest single-weight change {info['max_abs_rel_err']:.2e} of the tensor's max) and "
            f"every layer output rounded to float16; an estimate of the on-device error, not a CoreML prediction")
    return m, True, desc


def _run(module, x, fp16_activations: bool):
    import torch
    with torch.no_grad():
        y = module(x.half().float() if fp16_activations else x)
    return tuple(t.float() for t in y) if isinstance(y, tuple) else y.float()


# ------------------------------------------------------------------------------------------------
# artifact


def _trace(module, size: int):
    """TorchScript trace at (1, 3, size, size); the SCRFD shape arithmetic becomes constants, as intended."""
    import warnings
    import torch
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(module, torch.zeros(1, 3, size, size))


def _tools(extra: Sequence[str] = ()) -> Dict[str, str]:
    return tool_versions(("coremltools", "torch", "numpy", *extra), absent=None)


class CoreMLBackend(Backend):
    """``--format coreml``: its own route from PyTorch (pose checkpoints; SCRFD through its ONNX graph
    replayed in PyTorch) to an ML program, with the Linux parity figures described above. Staging,
    timing, manifest writing and publishing are the engine's (:func:`headpose.convert.pipeline.convert_options`),
    which refuses the int8-gate options first (:meth:`~headpose.convert.options.ConvertOptions.check`:
    CoreML compression is weight-only, with no int8 gate)."""

    fmt = "coreml"
    from_onnx = False
    layout = "NHWC"

    def check_source(self, spec, weights, input_size: Optional[int]) -> Tuple[Path, int, str]:
        path, size = check_source(spec, weights, input_size, "a .pt checkpoint")  # the checks of every format
        with open(path, "rb") as f:
            head = f.read(4)
        is_zip = head[:2] == b"PK"  # torch.save's format
        if spec.task == "face_detection" and is_zip:
            raise InputError(f"{spec.model_id} converts from an SCRFD ONNX file (e.g. scrfd_500m_bnkps.onnx); "
                             f"'{path.name}' is a PyTorch file")
        if spec.task == "head_pose" and not is_zip:
            raise InputError(f"CoreML pose conversion starts from the PyTorch checkpoint (.pt); '{path.name}' is not "
                             f"one (a pose ONNX? pass the .pt of the same model)")
        return path, size, "onnx" if spec.task == "face_detection" else "checkpoint"

    def build(self, job) -> Manifest:
        """Write ``model.mlpackage``, ``reference.npz`` and ``verify_coreml.py`` into ``job.stage``.

        ``job.calib``: real video/images for the parity figures and the reference data (default
        ``$HEADPOSE_DATA`` or ``../shared/data/in_video.mp4``; no calibration is needed: the
        compression is weight-only); ``job.detector``: the SCRFD ONNX that finds faces for pose
        crops (default ``$HEADPOSE_DETECTOR``, weights/, shared).

        Returns
        -------
        The validated manifest (``file_sha256``: :func:`mlpackage_digest` of the package).

        Raises
        ------
        ConversionError
            A failed step or parity check.
        """
        spec, precision, size, weights, tmp = job.spec, job.precision, job.size, job.src, job.stage
        src_data = _resolve_data(job.calib)
        import torch
        threads = torch.get_num_threads()
        # one intra-op thread: the parity runs are single small images, and on a loaded machine torch's
        # spinning worker threads make each call tens of times slower than one thread
        torch.set_num_threads(1)
        try:
            if spec.task == "head_pose":
                d = _convert_pose(job, src_data)
            else:
                d = _convert_scrfd(job, src_data)
        finally:
            torch.set_num_threads(threads)
        sha, nbytes = mlpackage_digest(tmp / MODEL_FILE)
        from ..calibration import file_sha256, source_sha256
        aid = artifact_id(spec.model_id, size, "coreml", precision)
        d.update(id=aid, file_sha256=sha, file_bytes=nbytes)
        d["source"].update(path=str(weights), sha256=file_sha256(weights))
        d["parity"]["data"].update(sha256=source_sha256(src_data))
        shutil.copyfile(Path(__file__).parents[1] / "coreml_check.py", tmp / CHECKER_FILE)
        msg = f"{aid}: {nbytes / 1e6:.2f} MB"
        log.info("built %s", msg)
        if job.progress:
            job.progress(msg)
        return Manifest.from_dict(d, where=aid)  # validated before the engine writes and publishes it


BACKEND = CoreMLBackend()


def _manifest(spec, precision: str, size: int, outputs: List[TensorSpec], coreml: Dict, parity: Dict,
              source_kind: str, tools: Dict) -> Dict:
    inp = TensorSpec(name=IMAGE_INPUT, shape=[1, size, size, 3], dtype="uint8", role="image", layout="NHWC",
                     color="RGB", mean=[0.0, 0.0, 0.0], std=[1.0, 1.0, 1.0])
    m = Manifest(id="", model=spec.model_id, task=spec.task, format="coreml", precision=precision,
                 file=MODEL_FILE, input=inp, outputs=outputs, decode=copy.deepcopy(spec.decode),
                 quantization=compression_config(precision),
                 source={"path": "", "sha256": "", "kind": source_kind, "coreml": coreml},
                 tools=tools, parity=parity,
                 created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return m.to_dict()


def _coreml_block(scale: float, bias: Sequence[float], gain: np.ndarray, spec, route: str, mlmodel,
                  path: Path) -> Dict:
    desc = describe_mlpackage(path)
    return {"model_type": "mlprogram", "minimum_deployment_target": DEPLOYMENT_TARGET, "route": route,
            "image_input": {"name": IMAGE_INPUT, "color_layout": "RGB", "scale": scale, "bias": list(bias),
                            "formula": "x[c] = scale * pixel[c] + bias[c], pixel in 0..255"},
            "normalisation_inside_model": {"mean": list(spec.mean), "std": list(spec.std), "color": spec.color},
            "first_conv_input_gain": [float(g) for g in gain],
            "ops": desc["ops"], "spec_version": desc["spec_version"]}


def _convert_pose(job, src_data: Path) -> Dict:
    spec, weights, precision, size, tmp, detector = job.spec, job.src, job.precision, job.size, job.stage, job.detector
    from torch.fx.experimental.optimization import fuse
    from ..calibration import default_detector
    from ..checkpoint import load_pose_checkpoint
    from ..facedata import sample_evenly
    if spec.color != "RGB":
        raise ConversionError(f"{spec.model_id} expects {spec.color}; the CoreML image input is RGB")
    det = Path(detector) if detector else default_detector()
    if det is None or not det.exists():
        raise ConversionError("pose parity needs a face detector ONNX to find faces: pass --detector or set "
                              "$HEADPOSE_DETECTOR (scrfd_500m_bnkps.onnx)")
    with job.step("trace"):
        original, ckpt = load_pose_checkpoint(spec.model_id, weights)
        # batch norm fused into the convolutions here (coremltools would fuse it anyway), so that the
        # program's weights correspond one to one to this module's and can be read back for the estimate
        folded = fuse(copy.deepcopy(original)).eval()
        scale, bias, gain = image_affine(spec.mean, spec.std)
        fold_input_gain(first_conv(folded), gain)
        traced = _trace(folded, size)
    with job.step("coremltools-convert"):
        mlmodel = to_mlprogram(traced, size, scale, bias, [POSE_OUTPUT], precision)
    with job.step(f"compress-{precision}"):
        mlmodel = compress(mlmodel, precision)
    with job.step("save"):
        mlmodel.save(str(tmp / MODEL_FILE))
    with job.step("face-crops"):
        crops = _pose_crops(src_data, det, size, spec.decode["crop"]["margin"])
    with job.step("parity"):
        par, ref, emu = _pose_parity(original, traced, artifact_weight_module(folded, mlmodel, precision), crops,
                                     spec, scale, bias)
    ship = sample_evenly(len(crops), N_REFERENCE_POSE)
    np.savez_compressed(tmp / REFERENCE_FILE, image=crops[ship], ortho6d=ref[ship].astype(np.float32),
                        ortho6d_emulated=emu[ship].astype(np.float32))
    parity = {"verified_on": "linux (coremltools cannot predict outside macOS)",
              "data": {"path": str(src_data), "kind": "face_crops", "crops": int(len(crops)),
                       "detector": det.name},
              **par,
              "coreml_predictions": {"checked": False, "how": f"on a Mac: python {CHECKER_FILE} (compares the "
                                     f"CoreML prediction on {REFERENCE_FILE}'s real crops with the checkpoint's "
                                     f"output) or pytest tests/coreml", "tolerance": mac_tolerance(
                                         precision, {"pose_max_deg": par["artifact_weights_emulated"]["max_geodesic_deg"]})},
              "reference": {"file": REFERENCE_FILE, "image": "uint8 RGB (N, S, S, 3) face crops",
                            "ortho6d": "float32 (N, 6) of the original checkpoint (float32 PyTorch)",
                            "ortho6d_emulated": "float32 (N, 6) of the artifact-weight estimate"}}
    coreml = _coreml_block(scale, bias, gain, spec, "pytorch checkpoint -> batch norm fused (torch.fx) -> "
                           "torch.jit.trace -> coremltools", mlmodel, tmp / MODEL_FILE)
    outputs = [TensorSpec(name=POSE_OUTPUT, shape=[1, 6], dtype="float32", role="ortho6d")]
    d = _manifest(spec, precision, size, outputs, coreml, parity, "pytorch_checkpoint", _tools())
    d["source"]["checkpoint"] = ckpt.to_dict()
    return d


class _ScrfdFigures:
    """Running comparison of raw SCRFD outputs (and decoded faces) against ONNX Runtime's."""

    def __init__(self):
        self.max_abs = {"score": 0.0, "bbox": 0.0, "kps": 0.0}
        self.score_all = 0.0   # largest score difference over all anchors
        self.dist_pos = 0.0    # largest bbox/kps difference (stride units) where the reference score >= threshold
        self.n_ref = self.n_test = self.unmatched = 0
        self.min_iou = 1.0

    def add(self, ref: Dict, test: Dict, size: int, scale: float) -> None:
        from ...runtime.scrfd import box_iou, decode_scrfd
        thr = SCRFD_DECODE["score_threshold"]
        for (role, stride), arr in test.items():
            d = np.abs(arr - ref[(role, stride)])
            self.max_abs[role] = max(self.max_abs[role], float(d.max()))
            if role == "score":
                self.score_all = max(self.score_all, float(d.max()))
            else:
                pos = ref[("score", stride)].reshape(-1) >= thr
                if pos.any():
                    self.dist_pos = max(self.dist_pos, float(d.reshape(-1, d.shape[-1])[pos].max()))
        args = ((size, size), SCRFD_DECODE["strides"], SCRFD_DECODE["anchors_per_cell"], thr,
                SCRFD_DECODE["nms_threshold"], scale)
        d_ref, _ = decode_scrfd(ref, *args)
        d_test, _ = decode_scrfd(test, *args)
        self.n_ref += len(d_ref)
        self.n_test += len(d_test)
        if len(d_ref):  # each reference face against its best-overlapping test face (ranks may swap)
            best = box_iou(d_ref, d_test).max(axis=1) if len(d_test) else np.zeros(len(d_ref))
            self.min_iou = min(self.min_iou, float(best.min()))
            self.unmatched += int((best < 0.5).sum())

    def summary(self) -> Dict:
        return {"max_abs_diff": dict(self.max_abs), "max_dist_diff_at_faces_stride_units": self.dist_pos,
                "faces_onnx": self.n_ref, "faces_test": self.n_test, "faces_onnx_unmatched": self.unmatched,
                "min_matched_iou": self.min_iou}


def _convert_scrfd(job, src_data: Path) -> Dict:
    spec, weights, precision, size, tmp = job.spec, job.src, job.precision, job.size, job.stage
    import torch
    from ...runtime.preprocess import normalise
    from ..facedata import OnnxFaceDetector, iter_frames
    from ..models.scrfd_torch import OUTPUT_ORDER, ScrfdTorch, compare_with_onnx, output_name
    with job.step("onnx-replay-check"):
        module = ScrfdTorch(weights, size).eval()
        # 1. the PyTorch replay against ONNX Runtime on real frames (float blobs, as the runtime makes them)
        frames = [f for _, f in iter_frames(src_data, every=25)][:N_PARITY_FRAMES]
        proof = compare_with_onnx(module, frames)
    if proof["faces_onnx"] != proof["faces_torch"] or proof["min_matched_iou"] < 0.999 \
            or max(proof["max_abs_diff"].values()) > 1e-3:
        raise ConversionError(f"the PyTorch replay of '{weights.name}' does not match ONNX Runtime on real frames "
                              f"({proof}); refusing to convert it")
    scale, bias, gain = image_affine(spec.mean, spec.std)
    if not np.allclose(gain, 1.0):
        raise ConversionError(f"{spec.model_id}: per-channel std {spec.std}; the SCRFD route expects one std")
    names = [output_name(r, s) for r, s in OUTPUT_ORDER]
    with job.step("trace"):
        traced = _trace(module, size)
    with job.step("coremltools-convert"):
        mlmodel = to_mlprogram(traced, size, scale, bias, names, precision)
    with job.step(f"compress-{precision}"):
        mlmodel = compress(mlmodel, precision)
    with job.step("save"):
        mlmodel.save(str(tmp / MODEL_FILE))
    t_parity = time.perf_counter()
    # 2. the traced graph fed scale*pixel+bias (the ImageType) vs ONNX fed (pixel-mean)/std, uint8 canvases;
    # 3. the same with the artifact's own weights (float16 / dequantised) in float16 PyTorch
    canvases, lb_scales, ids = _letterboxed_frames(src_data, size, N_PARITY_FRAMES)
    det = OnnxFaceDetector(weights, size)
    emu_module, half, emu_label = artifact_weight_module(module, mlmodel, precision)
    traced_fig = _ScrfdFigures()
    emu_fig = _ScrfdFigures()
    ref_out: Dict[str, List[np.ndarray]] = {n: [] for n in names}
    for c, s in zip(canvases, lb_scales):
        blob = normalise(c.astype(np.float32), spec.mean, spec.std).transpose(2, 0, 1)[None]
        ref = {k: np.asarray(v, np.float32) for k, v in det.raw(np.ascontiguousarray(blob)).items()}
        x = torch.from_numpy(np.ascontiguousarray((c.astype(np.float32) * np.float32(scale)
                                                   + np.asarray(bias, np.float32)).transpose(2, 0, 1)[None]))
        got = dict(zip(OUTPUT_ORDER, (t.numpy() for t in _run(traced, x, False))))
        emu = dict(zip(OUTPUT_ORDER, (t.numpy() for t in _run(emu_module, x, half))))
        for key, arr in got.items():
            ref[key] = ref[key].reshape(arr.shape)
            ref_out[output_name(*key)].append(ref[key])
        traced_fig.add(ref, got, size, float(s))
        emu_fig.add(ref, emu, size, float(s))
    job.timings["parity"] = round(time.perf_counter() - t_parity, 2)
    ship = list(range(min(N_REFERENCE_FRAMES, len(canvases))))
    np.savez_compressed(tmp / REFERENCE_FILE, image=canvases[ship], letterbox_scale=lb_scales[ship],
                        **{n: np.concatenate([v[i] for i in ship]) for n, v in ref_out.items()})
    parity = {"verified_on": "linux (coremltools cannot predict outside macOS)",
              "data": {"path": str(src_data), "kind": "letterboxed_frames", "frames": int(len(canvases))},
              "pytorch_replay_vs_onnxruntime": {
                  "compared": "ScrfdTorch (ONNX graph replayed in PyTorch) vs ONNX Runtime, same float blobs",
                  **proof},
              "graph_handed_to_coremltools": {
                  "compared": "traced ScrfdTorch fed scale*pixel+bias as the ImageType computes it vs ONNX "
                              "Runtime fed (pixel-127.5)/128, uint8 RGB letterboxed frames, float32",
                  **traced_fig.summary()},
              "artifact_weights_emulated": {"compared": emu_label + "; vs ONNX Runtime in float32",
                                            **emu_fig.summary()},
              "coreml_predictions": {"checked": False, "how": f"on a Mac: python {CHECKER_FILE} or pytest "
                                     f"tests/coreml", "tolerance": mac_tolerance(precision, {
                                         "score_max_abs": emu_fig.score_all,
                                         "dist_max_abs": emu_fig.dist_pos})},
              "reference": {"file": REFERENCE_FILE, "image": "uint8 RGB (N, S, S, 3) letterboxed frames",
                            "outputs": "ONNX Runtime raw outputs by CoreML output name, (N, A, C) float32"}}
    t = traced_fig.summary()
    if t["min_matched_iou"] < 0.999 or t["faces_onnx"] != t["faces_test"] or t["faces_onnx_unmatched"]:
        raise ConversionError(f"the traced SCRFD graph finds other faces than ONNX Runtime ({t}); refusing to publish")
    coreml = _coreml_block(scale, bias, gain, spec, "onnx -> ScrfdTorch (graph replay) -> torch.jit.trace -> "
                           "coremltools", mlmodel, tmp / MODEL_FILE)
    n_anchor = {s: (size // s) ** 2 * SCRFD_DECODE["anchors_per_cell"] for s in SCRFD_DECODE["strides"]}
    width = {"score": 1, "bbox": 4, "kps": 10}
    outputs = [TensorSpec(name=output_name(r, s), shape=[1, n_anchor[s], width[r]], dtype="float32", role=r,
                          stride=s) for r, s in OUTPUT_ORDER]
    return _manifest(spec, precision, size, outputs, coreml, parity, "onnx", _tools(("onnx", "onnxruntime")))
