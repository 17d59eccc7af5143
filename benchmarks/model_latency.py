"""Model-only latency of one artifact: LiteRT (with/without XNNPACK), ONNX Runtime, PyTorch eager.

Each backend is wrapped as a :class:`ModelRunner` (a zero-argument call on a fixed input) so that
one timing loop (:func:`headpose.benchmarks.stats.time_calls`) measures them all alike. The input is
a real frame of the benchmark video where one is given (letterboxed for detectors, a resized centre
crop for pose models), normalised as the manifest says; otherwise a seeded random image.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

from ..runtime.errors import InputError
from ..runtime.manifest import Manifest, load_manifest
from ..runtime.preprocess import letterbox, normalise, resize_bilinear, to_color
from ..runtime.sources import open_source
from .stats import summarize, time_calls

log = logging.getLogger(__name__)


@dataclass
class ModelRunner:
    """A loaded model bound to one input, ready to be timed.

    Attributes
    ----------
    call : callable
        Runs the model once on the bound input.
    load_ms : float
        Time to load and initialise the model (interpreter/session creation, tensor allocation).
    info : dict
        The descriptive fields of the ``model_latency`` entry (model, task, format, precision,
        runtime, threads, xnnpack, batch, input_shape, artifact).
    """

    call: Callable[[], object]
    load_ms: float
    info: Dict[str, object] = field(default_factory=dict)

    @property
    def key(self) -> str:
        i = self.info
        xnn = {True: "xnn", False: "noxnn", None: "-"}[i.get("xnnpack")]
        batch = f"|b{i['batch']}" if i.get("batch", 1) != 1 else ""
        return f"{i['runtime']}|{i['model']}|{i['precision']}|t{i['threads']}|{xnn}{batch}"


def sample_input(manifest: Manifest, frame: Optional[np.ndarray] = None, batch: int = 1,
                 seed: int = 0) -> np.ndarray:
    """A float32 input in the artifact's shape, layout and normalisation.

    Parameters
    ----------
    frame : ndarray, (H, W, 3), uint8, BGR, optional
        A real frame: letterboxed for face detectors, centre-cropped (square) and resized for pose
        models. A seeded random image when None.
    batch : int
        Batch size (pose models; detectors take 1).

    Returns
    -------
    ndarray, float32, (batch, H, W, 3) for NHWC or (batch, 3, H, W) for NCHW
    """
    inp = manifest.input
    nchw = inp.layout == "NCHW"
    h, w = (inp.shape[2], inp.shape[3]) if nchw else (inp.shape[1], inp.shape[2])
    if frame is None:
        img = np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.float32)
    elif manifest.task == "face_detection":
        img, _ = letterbox(frame, (h, w))
    else:
        fh, fw = frame.shape[:2]
        s = min(fh, fw)
        y0, x0 = (fh - s) // 2, (fw - s) // 2
        img = resize_bilinear(frame[y0:y0 + s, x0:x0 + s], w, h)
    x = normalise(to_color(img, "BGR", inp.color), inp.mean, inp.std)
    x = np.repeat(x[None], batch, axis=0)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if nchw else x, dtype=np.float32)


def _info(m: Manifest, runtime: str, threads: int, xnnpack: Optional[bool], x: np.ndarray) -> Dict[str, object]:
    return {"artifact": m.id, "model": m.model, "task": m.task, "format": m.format, "precision": m.precision,
            "runtime": runtime, "threads": int(threads), "xnnpack": xnnpack, "batch": int(x.shape[0]),
            "input_shape": [int(v) for v in x.shape], "file_sha256": m.file_sha256}


def litert_runner(artifact, threads: int = 1, xnnpack: bool = True, frame: Optional[np.ndarray] = None,
                  batch: int = 1) -> ModelRunner:
    """A ``.tflite`` artifact in the LiteRT interpreter (``xnnpack=False``: built-in kernels only)."""
    from ..runtime.interpreter import TFLiteModel
    m = load_manifest(artifact)
    if m.format != "tflite":
        raise InputError(f"artifact '{m.id}' is {m.format}: the LiteRT runner needs a tflite artifact")
    t0 = time.perf_counter()
    model = TFLiteModel(m, num_threads=threads, xnnpack=xnnpack)
    x = sample_input(m, frame, batch)
    if model.input_shape[0] != batch:
        model.resize_batch(batch)
    # the input is written into the interpreter's buffer once, as the runtime writes it (an int8-input
    # artifact gets its integers straight from the pixel table, so no float -> int8 pass belongs to
    # the model's time); each timed call is the invocation and the output copies
    xin = x
    if model.input_quantization is not None:
        from ..runtime.interpreter import quantize_input
        xin = quantize_input(x, *model.input_quantization, model.input_dtype)
    model.fill(lambda buf: np.copyto(buf, xin))
    load_ms = (time.perf_counter() - t0) * 1000.0
    return ModelRunner(model.invoke, load_ms, _info(m, "litert", threads, xnnpack, x))


def ort_session(path, threads: int):
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (inter-op 1, all graph optimisations)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def onnx_runner(artifact, threads: int = 1, frame: Optional[np.ndarray] = None, batch: int = 1) -> ModelRunner:
    """An ``.onnx`` artifact in ONNX Runtime (CPU execution provider)."""
    m = load_manifest(artifact)
    if m.format != "onnx":
        raise InputError(f"artifact '{m.id}' is {m.format}: the ONNX Runtime runner needs an onnx artifact")
    t0 = time.perf_counter()
    sess = ort_session(m.model_path, threads)
    load_ms = (time.perf_counter() - t0) * 1000.0
    x = sample_input(m, frame, batch)
    feed = {m.input.name: x}
    return ModelRunner(lambda: sess.run(None, feed), load_ms, _info(m, "onnxruntime", threads, None, x))


def torch_runner(model_id: str, weights, threads: int = 1, frame: Optional[np.ndarray] = None,
                 batch: int = 1) -> ModelRunner:
    """A pose checkpoint in PyTorch eager mode (the reference the artifacts came from)."""
    import torch
    from ..convert.checkpoint import load_pose_model
    from ..runtime.registry import get_spec
    spec = get_spec(model_id)
    if spec.task != "head_pose":
        raise InputError(f"the PyTorch runner measures pose checkpoints; '{model_id}' is a {spec.task} model")
    torch.set_num_threads(int(threads))
    t0 = time.perf_counter()
    model = load_pose_model(model_id, weights)
    load_ms = (time.perf_counter() - t0) * 1000.0
    from ..runtime.manifest import TensorSpec
    s = spec.input_size
    fake = Manifest(id=f"{model_id}-{s}-torch-fp32", model=model_id, task=spec.task, format="torch",
                    precision="fp32", file=str(weights),
                    input=TensorSpec(name="input", shape=[1, 3, s, s], layout="NCHW", color=spec.color,
                                     mean=list(spec.mean), std=list(spec.std)), outputs=[], decode={})
    x = torch.from_numpy(sample_input(fake, frame, batch))

    def call():
        with torch.inference_mode():
            return model(x)
    info = _info(fake, "torch", threads, None, x.numpy())
    info["artifact"] = None
    return ModelRunner(call, load_ms, info)


def measure(runner: ModelRunner, warmup: int = 5, runs: int = 50, seconds: Optional[float] = None,
            progress=None, keep_samples: bool = True) -> Dict[str, object]:
    """Time a runner: the first call (cold), ``warmup`` more, then ``runs`` calls or ``seconds``.

    Returns
    -------
    dict
        A ``model_latency`` entry of the result schema (see :mod:`headpose.benchmarks.schema`).
    """
    t0 = time.perf_counter()
    runner.call()
    first_ms = (time.perf_counter() - t0) * 1000.0
    samples = time_calls(runner.call, warmup=max(0, warmup - 1), runs=runs, seconds=seconds, progress=progress)
    entry: Dict[str, object] = {"key": runner.key, **runner.info, "load_ms": round(runner.load_ms, 3),
                                "first_run_ms": round(first_ms, 3), "stats": summarize(samples)}
    if keep_samples:
        entry["samples_ms"] = [round(s, 3) for s in samples]
    return entry


def thread_counts(threads: List[int], pipelined_modes: List[bool]) -> List[int]:
    """Thread counts of the model-only timings: the sweep's, plus the per-model split of a pipelined run
    (its bound needs the detector and the pose model timed at the threads each gets)."""
    from ..runtime.pipelined import split_threads
    extra = {x for t in threads for x in split_threads(t)} if True in pipelined_modes else set()
    return sorted(set(threads) | extra)


def first_frame(video) -> Optional[np.ndarray]:
    """The first frame of a video or image (BGR uint8, read by the runtime's sources), or None when no path is given."""
    if video is None:
        return None
    with open_source(str(video)) as src:
        frame = next(iter(src), None)
    if frame is None:
        raise InputError(f"no frame could be read from '{video}': expected a video or image OpenCV can decode")
    return frame.image


def sweep(artifacts: List, threads: List[int], xnnpack: List[bool], frame: Optional[np.ndarray] = None,
          warmup: int = 5, runs: int = 50, seconds: Optional[float] = None, progress=None
          ) -> List[Dict[str, object]]:
    """Measure every artifact (tflite or onnx) for every thread count (and XNNPACK on/off for tflite)."""
    out = []
    for a in artifacts:
        m = load_manifest(a)
        for t in threads:
            if m.format == "tflite":
                for xnn in xnnpack:
                    out.append(measure(litert_runner(a, t, xnn, frame), warmup, runs, seconds, progress))
            elif m.format == "onnx":
                out.append(measure(onnx_runner(a, t, frame), warmup, runs, seconds, progress))
            else:
                raise InputError(f"artifact '{m.id}' is {m.format}: model-only latency runs tflite and onnx artifacts")
    return out
