"""The LiteRT interpreter behind one artifact, with tensors found by their manifest names.

Uses ``ai_edge_litert.interpreter`` (XNNPACK on by default) and falls back to ``tflite_runtime``
where that is what is installed. Quantised input/output tensors are (de)quantised here with the
scale and zero point the model file states, so callers of ``model(x)`` pass and receive float32;
the hot path writes pixels straight into the input buffer in the tensor's own dtype (``TFLiteModel.fill``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Tuple

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


def quantize_input(x: np.ndarray, scale: float, zero_point: int, dtype) -> np.ndarray:
    """The one float -> integer input quantisation, as XNNPACK's QUANTIZE (f32 -> qs8/qu8 convert) does it:
    ``clip(round_half_even(x * (1 / scale)) + zero_point)``, in float32 (``1 / scale`` a float32 too).

    XNNPACK runs the whole graph of every artifact, the float-input model's first QUANTIZE op included;
    this is its arithmetic (multiply by the float32 reciprocal, round half to even, then add the zero
    point), so an int8-input artifact fed these integers computes exactly what its float-input model
    computed from ``x``. It matters: SCRFD's input scale is exactly 1/128 and ``(p - 127.5) / 128 * 128``
    is a .5 tie for every pixel value ``p``, where rounding before or after adding an odd zero point,
    or half away from zero (TFLite's reference kernel), gives other integers. Used by
    :meth:`TFLiteModel.__call__` for float inputs of a quantised input tensor and by the pixel tables of
    :mod:`headpose.runtime.preprocess` (``pixel_lut``); the Java core's ``Quant.quantize`` is the same formula.

    Parameters
    ----------
    x : ndarray, float32
    scale, zero_point : the tensor's quantisation
    dtype : numpy integer dtype of the tensor (int8, uint8, int16)

    Returns
    -------
    ndarray of ``dtype``, the shape of ``x``
    """
    info = np.iinfo(dtype)
    inv = np.float32(1.0) / np.float32(scale)
    v = np.clip(np.asarray(x, np.float32) * inv, np.float32(info.min - zero_point), np.float32(info.max - zero_point))
    return (np.rint(v) + zero_point).astype(dtype)


class _Slot:
    """One allocated interpreter for one batch size: the interpreter and its bound tensor details."""

    __slots__ = ("interpreter", "batch", "inp", "outs")

    def __init__(self, interpreter, batch: int, inp: dict, outs: Dict[str, dict]):
        self.interpreter, self.batch, self.inp, self.outs = interpreter, batch, inp, outs


class TFLiteModel:
    """One TFLite artifact, run by tensor names.

    Two ways to run it:

    * ``model(x)``: ``x`` float32 in the manifest's shape (normalised pixels); a quantised input tensor
      is quantised here (:func:`quantize_input`). Simple, copies ``x`` once.
    * the hot path: :meth:`fill` writes straight into the interpreter's own input buffer (a
      preallocated tensor, in the tensor's dtype), then :meth:`invoke` runs it. No array is made per
      call but the outputs.

    Batch sizes (pose models): an interpreter is kept ready per batch size met (at most
    ``max_ready`` of them, least recently used dropped), so a face count that changes from frame to
    frame never re-allocates tensors (measured against resizing one interpreter and against padding
    to ready sizes: ``benchmarks/results/issue13-hotpath/README.md``).

    Parameters
    ----------
    manifest : Manifest
        A loaded manifest of format ``tflite``.
    num_threads : int
    xnnpack : bool
    max_ready : int
        Interpreters kept allocated for distinct batch sizes (>= 1).
    """

    def __init__(self, manifest: Manifest, num_threads: int = 1, xnnpack: bool = True, max_ready: int = 4):
        if manifest.format != "tflite":
            raise ManifestError(f"artifact '{manifest.id}' is {manifest.format}; the device runtime runs tflite "
                                f"artifacts (convert with --format tflite)")
        self.manifest = manifest
        self.num_threads = num_threads
        self.xnnpack = xnnpack
        self.max_ready = max(1, int(max_ready))
        # the file is checked against the manifest's size and sha256 before the interpreter sees it (a
        # damaged .tflite can segfault it); a conversion's in-memory manifest (no sha256 yet) is not
        self._content = verify_model_file(manifest) if manifest.file_sha256 else None
        first = make_interpreter(manifest.model_path, num_threads, xnnpack, model_content=self._content)
        self._slots: "OrderedDict[int, _Slot]" = OrderedDict()
        slot = self._bind(first)
        self._slots[slot.batch] = slot
        self._cur = slot

    # -- binding ------------------------------------------------------------------------------
    def _bind(self, interp) -> _Slot:
        ins = {d["name"]: d for d in interp.get_input_details()}
        outs = {d["name"]: d for d in interp.get_output_details()}
        name = self.manifest.input.name
        if name not in ins:
            raise ManifestError(f"artifact '{self.manifest.id}': input '{name}' is not in the model "
                                f"(it has {', '.join(ins)}); the manifest does not belong to this file")
        have = np.dtype(ins[name]["dtype"]).name
        if self.manifest.input.dtype and have != self.manifest.input.dtype:
            raise ManifestError(f"artifact '{self.manifest.id}': input '{name}' is {have} in the model file, the "
                                f"manifest says {self.manifest.input.dtype}; the manifest does not belong to this "
                                f"file (re-create the artifact with `headpose convert`)")
        bound: Dict[str, dict] = {}
        for o in self.manifest.outputs:
            if o.name not in outs:
                raise ManifestError(f"artifact '{self.manifest.id}': output '{o.name}' is not in the model "
                                    f"(it has {', '.join(outs)}); the manifest does not belong to this file")
            bound[o.name] = outs[o.name]
        return _Slot(interp, int(ins[name]["shape"][0]), ins[name], bound)

    def _slot(self, batch: int) -> _Slot:
        """The ready interpreter for ``batch`` (made and allocated on first use)."""
        slot = self._slots.get(batch)
        if slot is None:
            interp = make_interpreter(self.manifest.model_path, self.num_threads, self.xnnpack,
                                      model_content=self._content)
            d = next(d for d in interp.get_input_details() if d["name"] == self.manifest.input.name)
            shape = [int(v) for v in d["shape"]]
            if shape[0] != batch:
                shape[0] = batch
                interp.resize_tensor_input(d["index"], shape, strict=False)
                interp.allocate_tensors()
            slot = self._bind(interp)
            self._slots[batch] = slot
            while len(self._slots) > self.max_ready:
                dropped, _ = self._slots.popitem(last=False)
                log.debug("artifact '%s': interpreter for batch %d released", self.manifest.id, dropped)
        else:
            self._slots.move_to_end(batch)
        self._cur = slot
        return slot

    # -- compatibility: the interpreter / details of the current batch size --------------------
    @property
    def interpreter(self):
        """The interpreter of the batch size used last (``None`` after :meth:`close`)."""
        return self._cur.interpreter if self._cur is not None else None

    @interpreter.setter
    def interpreter(self, value) -> None:
        if value is None:  # HeadPoseEstimator.close() releases the interpreters this way
            self.close()
        else:
            raise AttributeError("TFLiteModel.interpreter cannot be replaced")

    def close(self) -> None:
        """Release every interpreter."""
        self._slots.clear()
        self._cur = None

    @property
    def _in(self) -> dict:
        return self._cur.inp

    @property
    def input_shape(self) -> List[int]:
        return [int(v) for v in self._cur.inp["shape"]]

    @property
    def input_dtype(self) -> np.dtype:
        """dtype of the input tensor as the interpreter holds it (float32, int8...)."""
        return np.dtype(self._cur.inp["dtype"])

    @property
    def input_quantization(self) -> Optional[Tuple[float, int]]:
        """``(scale, zero_point)`` of a quantised input tensor, else None."""
        if self.input_dtype == np.float32:
            return None
        scale, zero = self._cur.inp["quantization"]
        return float(scale), int(zero)

    def resize_batch(self, batch: int) -> None:
        """Make ``batch`` the current batch size (an interpreter ready for it is kept, see the class doc)."""
        self._slot(int(batch))

    # -- running ------------------------------------------------------------------------------
    def fill(self, writer: Callable[[np.ndarray], None], batch: Optional[int] = None) -> None:
        """Let ``writer`` write the input of the next :meth:`invoke` in place.

        ``writer(buf)`` gets the interpreter's input buffer, an ndarray of the input shape (batch
        ``batch``) and dtype (:attr:`input_dtype`); it must not keep ``buf`` or views of it (LiteRT
        refuses to invoke while a view of its memory is alive). What it does not write keeps the
        value of the previous call (a letterbox's constant padding is written once).
        """
        slot = self._slot(int(batch)) if batch is not None else self._cur
        writer(slot.interpreter.tensor(slot.inp["index"])())

    def invoke(self) -> Dict[str, np.ndarray]:
        """Run the current batch's interpreter on its filled input; ``{output name: float32 array}`` (copies)."""
        slot = self._cur
        slot.interpreter.invoke()
        out = {}
        for name, od in slot.outs.items():
            y = slot.interpreter.get_tensor(od["index"])  # a copy
            if od["dtype"] != np.float32:
                scale, zero = od["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            out[name] = y
        return out

    def __call__(self, x: np.ndarray) -> Dict[str, np.ndarray]:
        """Run the model.

        Parameters
        ----------
        x : ndarray, float32, in the manifest's input shape and layout (batch may differ for pose)

        Returns
        -------
        dict: output name -> float32 array
        """
        slot = self._slot(int(x.shape[0])) if x.shape[0] != self._cur.batch else self._cur
        if list(x.shape[1:]) != self.input_shape[1:]:
            raise HeadposeError(f"artifact '{self.manifest.id}' expects input {self.input_shape}, got {list(x.shape)}")
        d = slot.inp
        if d["dtype"] != np.float32:
            scale, zero = d["quantization"]
            x = quantize_input(x, scale, zero, d["dtype"])
        slot.interpreter.set_tensor(d["index"], np.ascontiguousarray(x, dtype=d["dtype"]))
        return self.invoke()


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
