"""The LiteRT interpreter behind one artifact, with tensors found by their manifest names.

Uses ``ai_edge_litert.interpreter`` (XNNPACK on by default) and falls back to ``tflite_runtime``
where that is what is installed. Quantised input/output tensors are (de)quantised here with the
scale and zero point the model file states, so callers always pass and receive float32.
"""

from __future__ import annotations

import logging
from typing import Dict, List, Optional

import numpy as np

from .errors import HeadposeError, ManifestError
from .manifest import Manifest, verify_model_file

log = logging.getLogger(__name__)


def interpreter_module():
    """The interpreter package in use: ``ai_edge_litert.interpreter``, else ``tflite_runtime.interpreter``."""
    try:
        from ai_edge_litert import interpreter as mod  # type: ignore
        return mod
    except ImportError:
        pass
    try:
        from tflite_runtime import interpreter as mod  # type: ignore
        return mod
    except ImportError:
        raise HeadposeError("no TFLite interpreter is installed: expected the 'ai-edge-litert' package "
                            "(pip install ai-edge-litert) or 'tflite-runtime'") from None


def interpreter_version() -> str:
    """Version string of the interpreter package in use ("ai-edge-litert 2.1.0")."""
    from importlib import metadata
    for dist in ("ai-edge-litert", "tflite-runtime"):
        try:
            return f"{dist} {metadata.version(dist)}"
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def make_interpreter(model_path, num_threads: int = 1, xnnpack: bool = True,
                     model_content: Optional[bytes] = None):
    """Create and allocate an interpreter for a ``.tflite`` file.

    Parameters
    ----------
    model_path : path or bytes
        The ``.tflite`` file (named in messages; read only when ``model_content`` is None), or its bytes.
    num_threads : int
        CPU threads for XNNPACK and the built-in kernels.
    xnnpack : bool
        ``False`` runs the built-in reference kernels only (for comparison benchmarks).
    model_content : bytes, optional
        The file's bytes, already read (and checked, see :func:`~headpose.runtime.manifest.verify_model_file`).
    """
    mod = interpreter_module()
    if isinstance(model_path, (bytes, bytearray)):
        model_path, model_content = "<model bytes>", bytes(model_path)
    source = {"model_path": str(model_path)} if model_content is None else {"model_content": model_content}
    kwargs = {**source, "num_threads": int(num_threads)}
    if not xnnpack:
        kwargs["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interp = mod.Interpreter(**kwargs)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:  # RuntimeError: e.g. XNNPACK refusing a node at prepare
        raise HeadposeError(f"the interpreter could not load '{model_path}'"
                            f"{' with XNNPACK' if xnnpack else ''}: {e}") from None
    return interp


class TFLiteModel:
    """One TFLite artifact, run by tensor names.

    Parameters
    ----------
    manifest : Manifest
        A loaded manifest of format ``tflite``.
    num_threads : int
    xnnpack : bool
    """

    def __init__(self, manifest: Manifest, num_threads: int = 1, xnnpack: bool = True):
        if manifest.format != "tflite":
            raise ManifestError(f"artifact '{manifest.id}' is {manifest.format}; the device runtime runs tflite "
                                f"artifacts (convert with --format tflite)")
        self.manifest = manifest
        self.num_threads = num_threads
        self.xnnpack = xnnpack
        # the file is checked against the manifest's size and sha256 before the interpreter sees it (a
        # damaged .tflite can segfault it); a conversion's in-memory manifest (no sha256 yet) is not
        content = verify_model_file(manifest) if manifest.file_sha256 else None
        self.interpreter = make_interpreter(manifest.model_path, num_threads, xnnpack, model_content=content)
        self._bind()

    def _bind(self) -> None:
        ins = {d["name"]: d for d in self.interpreter.get_input_details()}
        outs = {d["name"]: d for d in self.interpreter.get_output_details()}
        name = self.manifest.input.name
        if name not in ins:
            raise ManifestError(f"artifact '{self.manifest.id}': input '{name}' is not in the model "
                                f"(it has {', '.join(ins)}); the manifest does not belong to this file")
        self._in = ins[name]
        self._outs: Dict[str, dict] = {}
        for o in self.manifest.outputs:
            if o.name not in outs:
                raise ManifestError(f"artifact '{self.manifest.id}': output '{o.name}' is not in the model "
                                    f"(it has {', '.join(outs)}); the manifest does not belong to this file")
            self._outs[o.name] = outs[o.name]

    @property
    def input_shape(self) -> List[int]:
        return [int(v) for v in self._in["shape"]]

    def resize_batch(self, batch: int) -> None:
        """Resize the batch dimension of the input (pose models), re-allocating tensors."""
        shape = self.input_shape
        if shape[0] == batch:
            return
        shape[0] = batch
        self.interpreter.resize_tensor_input(self._in["index"], shape, strict=False)
        self.interpreter.allocate_tensors()
        self._bind()

    def __call__(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """Run the model.

        Parameters
        ----------
        x : ndarray, float32, in the manifest's input shape and layout (batch may differ for pose)

        Returns
        -------
        dict: output name -> float32 array
        """
        if x.shape[0] != self.input_shape[0]:
            self.resize_batch(x.shape[0])
        if list(x.shape[1:]) != self.input_shape[1:]:
            raise HeadposeError(f"artifact '{self.manifest.id}' expects input {self.input_shape}, got {list(x.shape)}")
        d = self._in
        if d["dtype"] != np.float32:
            scale, zero = d["quantization"]
            x = np.clip(np.round(x / scale + zero), np.iinfo(d["dtype"]).min, np.iinfo(d["dtype"]).max)
        self.interpreter.set_tensor(d["index"], np.ascontiguousarray(x, dtype=d["dtype"]))
        self.interpreter.invoke()
        out = {}
        for name, od in self._outs.items():
            y = self.interpreter.get_tensor(od["index"])
            if od["dtype"] != np.float32:
                scale, zero = od["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            out[name] = y.copy()
        return out


def op_names(interp) -> List[str]:
    """The op names of an allocated interpreter's graph, in order: every model op the built-in kernels
    run, then one ``DELEGATE`` node per XNNPACK partition. The one place that reads LiteRT's op list
    (``_get_ops_details`` is not public API: if LiteRT renames it, only this function changes)."""
    return [d["op_name"] for d in interp._get_ops_details()]


def op_details(interp) -> List[dict]:
    """Every op of an allocated interpreter (``op_name``, ``index``, ``inputs``, ``outputs``), see :func:`op_names`."""
    return list(interp._get_ops_details())


def xnnpack_partitions(model, num_threads: int = 1) -> int:
    """How many XNNPACK partitions (``DELEGATE`` nodes) LiteRT makes of a model.

    ``model``: an allocated interpreter, or a ``.tflite`` path / bytes (loaded with XNNPACK on).
    One partition means the whole graph runs in XNNPACK; more mean ops fall back to the built-in
    kernels between them."""
    interp = model if hasattr(model, "get_input_details") else make_interpreter(model, num_threads=num_threads)
    return op_names(interp).count("DELEGATE")


def run_single(interp, x: np.ndarray) -> np.ndarray:
    """Run a single-input, single-output float32 interpreter on ``x`` (one batch), return a copy of the output."""
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.set_tensor(inp["index"], np.ascontiguousarray(x, np.float32))
    interp.invoke()
    return np.array(interp.get_tensor(out["index"]))


def time_invoke(interp, x: np.ndarray, runs: int = 30, warmup: int = 3) -> List[float]:
    """Milliseconds of ``runs`` invocations of a single-input interpreter on ``x`` (after ``warmup``)."""
    import time
    inp = interp.get_input_details()[0]
    x = np.ascontiguousarray(x, inp["dtype"])
    times = []
    for i in range(runs + warmup):
        interp.set_tensor(inp["index"], x)
        t0 = time.perf_counter()
        interp.invoke()
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1000)
    return times
