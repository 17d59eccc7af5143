"""``manifest.json``: the contract between conversion and every runtime.

An artifact is a directory holding one model file and ``manifest.json``. The runtime finds every
tensor by the name recorded here, never by position or shape. :meth:`Manifest.from_dict` checks every
field, the decode section of the task included (typed as :class:`ScrfdDecode` / :class:`PoseDecode`), so
the detector and pose classes rely on it. The same contract as JSON Schema: ``manifest.schema.json``
beside this module (package data; tests keep the two and the Java/Swift readers in step). Schema (version 1)::

    {
      "schema_version": 1,
      "id": "mobilenetv3_small-224-tflite-int8",       # {model}-{size}-{format}-{precision}
      "model": "mobilenetv3_small", "task": "head_pose" | "face_detection",
      "format": "tflite" | "onnx" | "coreml", "precision": "fp32" | "fp16" | "int8" | "dynamic-int8" | ...,
      "file": "model.tflite", "file_sha256": "...", "file_bytes": 123,
      "input": {"name", "shape", "layout": "NHWC" | "NCHW", "dtype", "color": "RGB" | "BGR",
                "mean": [3 floats, pixel units 0..255], "std": [3 floats],
                "quantization": null | {"scale": float, "zero_point": int},
                "normalisation": "caller" | "input_quantisation"},   # optional, see below
      "outputs": [{"name", "shape", "dtype", "role", "stride": int | null, "quantization": ...}],
                 # roles: pose "ortho6d"; SCRFD "score" [1,N,1], "bbox" [1,N,4], "kps" [1,N,10]
      "decode": {...},            # registry decode facts (ortho6d + crop, or scrfd strides/anchors/thresholds)
      "quantization": {"mode": "none" | "float16" | "dynamic_range" | "full_integer", ...},
      "source": {"path", "sha256", "kind"},
      "tools": {"package": "version", ...},
      "parity": {...},            # figures of the conversion's parity gate
      "created_utc": "..."
    }

Where the input normalisation happens (``input.normalisation``; absent means ``caller``):

* ``caller``: the input tensor (float32) takes ``(pixel - mean[c]) / std[c]``, channels in ``color``
  order. Every artifact before int8 inputs, and every float artifact.
* ``input_quantisation``: the input tensor is integer (``dtype`` int8; ``quantization`` gives its scale
  and zero point) and takes ``clip(round_half_even(((pixel - mean[c]) / std[c]) / scale) + zero_point)``,
  the very integers the float-input model's first QUANTIZE op computed: the normalisation lives in
  the input quantisation, exactly. The Python runtime writes them with one 256-entry table per
  channel (``runtime.preprocess.pixel_lut``); a runtime that normalises to float and quantises with
  that formula (the Java core's ``Quant.quantize``) feeds the same integers. Letterbox padding is
  pixel 0 before normalisation, as for float inputs. ``headpose convert --precision int8`` writes
  such artifacts (float32 outputs), recording ``quantization.io_dtype`` and the XNNPACK partition
  count (``parity.xnnpack_partitions``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from .errors import ManifestError
from .formats import FORMAT_NAMES, precisions_of

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"
TASKS = ("head_pose", "face_detection")
FORMATS = FORMAT_NAMES  # runtime/formats.py, the one table
LAYOUTS = ("NHWC", "NCHW")
DTYPES = ("float32", "float16", "int8", "uint8", "int16", "int32", "int64")
NORMALISATIONS = ("caller", "input_quantisation")  # input.normalisation (absent = caller)
DECODE_KINDS = {"face_detection": "scrfd", "head_pose": "ortho6d"}  # task -> the decode kind it must carry
SCRFD_KEYS = ("strides", "anchors_per_cell", "score_threshold", "nms_threshold")
SCRFD_ROLES = ("score", "bbox", "kps")
SCHEMA_FILE = Path(__file__).with_name("manifest.schema.json")  # the same contract as JSON Schema (package data)


@dataclass
class TensorSpec:
    """One input or output tensor of an artifact.

    Attributes
    ----------
    name : str
        Tensor name in the model file (what the interpreter reports).
    shape : list of int
        Static shape; the batch dimension of pose models may be resized at run time.
    dtype : str
        NumPy dtype name of the tensor as the interpreter sees it (``float32``, ``int8``...).
    role : str
        Meaning: ``image`` for inputs; ``ortho6d``, ``score``, ``bbox``, ``kps`` for outputs.
    stride : int or None
        SCRFD feature stride of the output, else ``None``.
    quantization : dict or None
        ``{"scale": float, "zero_point": int}`` when the tensor itself is quantised.
    layout, color, mean, std
        Input only: ``NHWC``/``NCHW``, ``RGB``/``BGR``, normalisation in pixel units (0..255).
    normalisation : str or None
        Input only: ``caller`` (None: float32 normalised pixels) or ``input_quantisation`` (the
        quantised normalised pixels; see the module docstring).
    """

    name: str
    shape: List[int]
    dtype: str = "float32"
    role: str = ""
    stride: Optional[int] = None
    quantization: Optional[Dict[str, float]] = None
    layout: Optional[str] = None
    color: Optional[str] = None
    mean: Optional[List[float]] = None
    std: Optional[List[float]] = None
    normalisation: Optional[str] = None

    def to_dict(self) -> Dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None or k in ("stride", "quantization")}


@dataclass(frozen=True)
class ScrfdDecode:
    """``decode`` of a ``face_detection`` artifact (kind ``scrfd``), as :meth:`Manifest.from_dict` checked it."""

    strides: Tuple[int, ...]
    anchors_per_cell: int
    score_threshold: float
    nms_threshold: float


@dataclass(frozen=True)
class PoseDecode:
    """``decode`` of a ``head_pose`` artifact (kind ``ortho6d``): the crop's box expansion margin."""

    margin: float


@dataclass
class Manifest:
    """Parsed ``manifest.json`` of one artifact (see the module docstring for the schema)."""

    id: str
    model: str
    task: str
    format: str
    precision: str
    file: str
    input: TensorSpec
    outputs: List[TensorSpec]
    decode: Dict[str, Any]
    file_sha256: str = ""
    file_bytes: int = 0
    quantization: Dict[str, Any] = field(default_factory=lambda: {"mode": "none"})
    source: Dict[str, Any] = field(default_factory=dict)
    tools: Dict[str, str] = field(default_factory=dict)
    parity: Dict[str, Any] = field(default_factory=dict)
    created_utc: str = ""
    schema_version: int = SCHEMA_VERSION
    directory: Optional[Path] = field(default=None, compare=False, repr=False)

    # -- access -------------------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        """Absolute path of the model file (the manifest must have been loaded from disk)."""
        if self.directory is None:
            raise ManifestError(f"manifest '{self.id}' was not loaded from a directory; no model path")
        return self.directory / self.file

    @property
    def input_hw(self) -> Tuple[int, int]:
        """(height, width) of the image input (see :func:`input_hw`)."""
        return input_hw(self)

    @property
    def scrfd(self) -> ScrfdDecode:
        """The SCRFD decode section, typed; raises :class:`ManifestError` when this is not a detector."""
        dec = self.decode or {}
        if dec.get("kind") != "scrfd":
            raise ManifestError(f"artifact '{self.id}': decode kind {dec.get('kind')!r} is not 'scrfd'; this "
                                f"runtime decodes SCRFD detectors only")
        missing = [k for k in SCRFD_KEYS if k not in dec]
        if missing:
            raise ManifestError(f"artifact '{self.id}': decode lacks {', '.join(missing)}; re-create it with "
                                f"`headpose convert`")
        return ScrfdDecode(tuple(int(s) for s in dec["strides"]), int(dec["anchors_per_cell"]),
                           float(dec["score_threshold"]), float(dec["nms_threshold"]))

    @property
    def pose(self) -> PoseDecode:
        """The pose decode section, typed; raises :class:`ManifestError` when this is not a pose model."""
        dec = self.decode or {}
        if dec.get("kind") != "ortho6d":
            raise ManifestError(f"artifact '{self.id}': decode kind {dec.get('kind')!r} is not 'ortho6d'")
        crop = dec.get("crop") or {}
        if not isinstance(crop, dict) or "margin" not in crop:
            raise ManifestError(f"artifact '{self.id}': decode.crop.margin is missing; re-create it with "
                                f"`headpose convert`")
        return PoseDecode(float(crop["margin"]))

    def output(self, role: str, stride: Optional[int] = None) -> TensorSpec:
        """The output with ``role`` (and ``stride`` for SCRFD).

        Raises
        ------
        ManifestError
            When the manifest lists no such output.
        """
        for o in self.outputs:
            if o.role == role and (stride is None or o.stride == stride):
                return o
        have = ", ".join(f"{o.role}@{o.stride}" if o.stride else o.role for o in self.outputs)
        want = f"{role}@{stride}" if stride else role
        raise ManifestError(f"artifact '{self.id}' has no output '{want}'; it lists: {have}")

    def to_dict(self) -> Dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k not in ("directory", "input", "outputs")}
        d["input"] = self.input.to_dict()
        d["outputs"] = [o.to_dict() for o in self.outputs]
        order = ["schema_version", "id", "model", "task", "format", "precision", "file", "file_sha256",
                 "file_bytes", "input", "outputs", "decode", "quantization", "source", "tools", "parity",
                 "created_utc"]
        return {k: d[k] for k in order}

    # -- parsing ------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Dict[str, Any], where: str = "manifest") -> "Manifest":
        """Validate and parse a manifest dictionary.

        Raises
        ------
        ManifestError
            Naming the missing or malformed field and what was expected.
        """
        if not isinstance(d, dict):
            raise ManifestError(f"{where}: expected a JSON object, found {type(d).__name__}")
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ManifestError(f"{where}: schema_version {version!r} is not supported (expected "
                                f"{SCHEMA_VERSION}); re-create the artifact with this version's `headpose convert`")
        required = ("id", "model", "task", "format", "precision", "file", "input", "outputs", "decode")
        missing = [k for k in required if k not in d]
        if missing:
            raise ManifestError(f"{where}: missing field(s) {', '.join(missing)}; "
                                f"re-create the artifact with `headpose convert`")
        if d["task"] not in TASKS:
            raise ManifestError(f"{where}: task {d['task']!r} is not one of {', '.join(TASKS)}")
        if d["format"] not in FORMATS:
            raise ManifestError(f"{where}: format {d['format']!r} is not one of {', '.join(FORMATS)}")
        if d["precision"] not in precisions_of(d["format"]):
            raise ManifestError(f"{where}: precision {d['precision']!r} is not one of the {d['format']} "
                                f"precisions ({', '.join(precisions_of(d['format']))})")
        _check_fields(d, where)
        try:
            inp = TensorSpec(**d["input"])
            outs = [TensorSpec(**o) for o in d["outputs"]]
        except TypeError as e:
            raise ManifestError(f"{where}: malformed tensor description ({e})") from None
        if inp.layout not in LAYOUTS or inp.mean is None or inp.std is None or inp.color not in ("RGB", "BGR"):
            raise ManifestError(f"{where}: input must give layout (NHWC/NCHW), color (RGB/BGR), mean and std; "
                                f"found layout={inp.layout!r} color={inp.color!r}")
        known = {f.name for f in cls.__dataclass_fields__.values()} - {"directory", "input", "outputs"}
        kwargs = {k: v for k, v in d.items() if k in known}
        m = cls(input=inp, outputs=outs, **kwargs)
        _check_task(m, where)
        return m


def input_hw(manifest: "Manifest") -> Tuple[int, int]:
    """(height, width) of an image input from its manifest shape and layout."""
    shape = list(manifest.input.shape)
    if len(shape) != 4:
        raise ManifestError(f"artifact '{manifest.id}': input shape {shape} is not 4-D (N, H, W, C or N, C, H, W)")
    h, w = (shape[1], shape[2]) if manifest.input.layout == "NHWC" else (shape[2], shape[3])
    if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
        raise ManifestError(f"artifact '{manifest.id}': input shape {shape} has no fixed height and width")
    return int(h), int(w)


def _check_task(m: "Manifest", where: str) -> None:
    """The decode rules of the artifact's task: what the detector and the pose classes rely on.

    A ``face_detection`` artifact decodes as SCRFD: strides, anchors per cell and thresholds, and a
    named score and bbox output (each with its stride) for every stride. A ``head_pose`` artifact
    decodes ortho6d: a crop margin, a square input and an ``ortho6d`` output.
    """
    def fail(msg: str) -> ManifestError:
        return ManifestError(f"{where}: {msg}")

    try:
        if m.task == "face_detection":
            dec = m.scrfd
            have = set()
            for o in m.outputs:
                if o.role in SCRFD_ROLES:
                    if o.stride is None:
                        raise fail(f"artifact '{m.id}': output '{o.name}' ({o.role}) has no stride")
                    have.add((o.role, int(o.stride)))
            lacking = [f"{r}@{s}" for s in dec.strides for r in ("score", "bbox") if (r, s) not in have]
            if lacking:
                raise fail(f"artifact '{m.id}': no output for {', '.join(lacking)}; the manifest must map "
                           f"every stride's score and bbox tensor by name")
        else:
            m.pose
            h, w = input_hw(m)
            if h != w:
                raise fail(f"artifact '{m.id}': pose input {(h, w)} is not square")
            m.output("ortho6d")
    except ManifestError as e:
        msg = str(e)
        raise (e if msg.startswith(f"{where}: ") else fail(msg)) from None


def _bad(where: str, field_name: str, expected: str, value: Any) -> ManifestError:
    return ManifestError(f"{where}: field '{field_name}' must be {expected}, found {value!r}; re-create the "
                         f"artifact with `headpose convert` (or restore its manifest.json)")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _check_tensor(t: Any, where: str, name: str, is_input: bool) -> None:
    """Types and ranges of one tensor description (see :class:`TensorSpec`)."""
    if not isinstance(t, dict):
        raise _bad(where, name, "a JSON object", t)
    if not isinstance(t.get("name"), str) or not t["name"]:
        raise _bad(where, f"{name}.name", "a non-empty string", t.get("name"))
    shape = t.get("shape")
    if not isinstance(shape, list) or not shape or not all(_is_int(v) and v > 0 for v in shape):
        raise _bad(where, f"{name}.shape", "a list of positive integers", shape)
    if t.get("dtype", "float32") not in DTYPES:
        raise _bad(where, f"{name}.dtype", f"one of {', '.join(DTYPES)}", t.get("dtype"))
    if not isinstance(t.get("role", ""), str):
        raise _bad(where, f"{name}.role", "a string", t.get("role"))
    stride = t.get("stride")
    if stride is not None and not (_is_int(stride) and stride > 0):
        raise _bad(where, f"{name}.stride", "a positive integer or null", stride)
    q = t.get("quantization")
    if q is not None and not (isinstance(q, dict) and _is_number(q.get("scale")) and q["scale"] > 0
                              and _is_int(q.get("zero_point"))):
        raise _bad(where, f"{name}.quantization", "null or {\"scale\": positive number, \"zero_point\": integer}", q)
    if is_input:
        if len(shape) != 4:
            raise _bad(where, f"{name}.shape", "4 dimensions (batch, height, width, channels in layout order)", shape)
        for key, low in (("mean", None), ("std", 0.0)):
            v = t.get(key)
            if not (isinstance(v, list) and len(v) == 3 and all(_is_number(x) and (low is None or x > low) for x in v)):
                raise _bad(where, f"{name}.{key}", "a list of 3 finite numbers" + (" > 0" if low is not None else ""), v)
        norm = t.get("normalisation")
        if norm is not None and norm not in NORMALISATIONS:
            raise _bad(where, f"{name}.normalisation", f"absent or one of {', '.join(NORMALISATIONS)}", norm)
        if norm == "input_quantisation" and (t.get("dtype") not in ("int8", "uint8", "int16") or q is None):
            raise _bad(where, f"{name}", "an integer tensor (dtype int8/uint8/int16) with its quantization when "
                       "normalisation is input_quantisation", {k: t.get(k) for k in ("dtype", "quantization")})


def _check_fields(d: Dict[str, Any], where: str) -> None:
    """Type and range of every field a runtime reads; raises :class:`ManifestError` naming the first bad one."""
    for k in ("id", "model", "precision"):
        if not isinstance(d[k], str) or not d[k]:
            raise _bad(where, k, "a non-empty string", d[k])
    f = d["file"]
    if not isinstance(f, str) or not f or f in (".", "..") or "/" in f or "\\" in f:
        raise _bad(where, "file", "the name of a file inside the artifact directory", f)
    sha, nbytes = d.get("file_sha256", ""), d.get("file_bytes", 0)
    if d["format"] in ("tflite", "coreml") or sha or nbytes:
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            raise _bad(where, "file_sha256", "the model file's sha256 (64 lowercase hex digits)", sha)
        if not (_is_int(nbytes) and nbytes > 0):
            raise _bad(where, "file_bytes", "the model file's size in bytes (a positive integer)", nbytes)
    _check_tensor(d["input"], where, "input", is_input=True)
    if not isinstance(d["outputs"], list) or not d["outputs"]:
        raise _bad(where, "outputs", "a non-empty list of tensor descriptions", d["outputs"])
    for i, o in enumerate(d["outputs"]):
        _check_tensor(o, where, f"outputs[{i}]", is_input=False)
    for k in ("decode", "quantization", "source", "tools", "parity"):
        if k in d and not isinstance(d[k], dict):
            raise _bad(where, k, "a JSON object", d[k])
    if "created_utc" in d and not isinstance(d["created_utc"], str):
        raise _bad(where, "created_utc", "a string", d["created_utc"])
    kind, expected = d["decode"].get("kind"), DECODE_KINDS[d["task"]]
    if kind != expected:
        raise ManifestError(f"{where}: artifact '{d['id']}': decode kind {kind!r} is not {expected!r}"
                            + ("; this runtime decodes SCRFD detectors only" if expected == "scrfd" else ""))
    _check_decode(d["decode"], where)


def _check_decode(dec: Dict[str, Any], where: str) -> None:
    """The decode facts the runtime uses: SCRFD strides/anchors/thresholds, the pose crop margin."""
    def number(key: str, value: Any, low: float, high: float) -> None:
        if not (_is_number(value) and low <= value <= high):
            raise _bad(where, f"decode.{key}", f"a number in {low:g}..{high:g}", value)

    if dec.get("kind") == "scrfd":
        strides = dec.get("strides")
        if not (isinstance(strides, list) and strides and all(_is_int(s) and s > 0 for s in strides)):
            raise _bad(where, "decode.strides", "a list of positive integers", strides)
        if not (_is_int(dec.get("anchors_per_cell")) and dec["anchors_per_cell"] > 0):
            raise _bad(where, "decode.anchors_per_cell", "a positive integer", dec.get("anchors_per_cell"))
        for key in ("score_threshold", "nms_threshold"):
            number(key, dec.get(key), 0.0, 1.0)
    elif dec.get("kind") == "ortho6d":
        crop = dec.get("crop")
        if not isinstance(crop, dict):
            raise _bad(where, "decode.crop", "a JSON object with the crop margin", crop)
        number("crop.margin", crop.get("margin"), 0.0, 10.0)


def verify_model_file(m: "Manifest") -> bytes:
    """Read the model file and check it against ``file_bytes`` and ``file_sha256``; return its bytes.

    Run before the file reaches the interpreter: a truncated or damaged ``.tflite`` can crash the
    interpreter (segfault) or run with silently wrong weights. The bytes returned are the ones
    checked, so the interpreter gets exactly those (no window in which the file could change).

    Raises
    ------
    ManifestError
        The file is missing, unreadable, of another size or another sha256 than the manifest records.
    """
    path = m.model_path
    fix = (f"the file is damaged or was replaced: copy the artifact again, or re-create it with "
           f"`headpose convert {m.model} ... --force`")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ManifestError(f"artifact '{m.id}': cannot read model file '{path}' ({e.strerror or e})") from None
    if not m.file_sha256 or not m.file_bytes:
        raise ManifestError(f"artifact '{m.id}': the manifest records no file_sha256/file_bytes for '{m.file}', "
                            f"so the model file cannot be checked; re-create the artifact with `headpose convert`")
    if len(data) != m.file_bytes:
        raise ManifestError(f"artifact '{m.id}': model file '{path}' has {len(data)} bytes, the manifest "
                            f"records {m.file_bytes}; {fix}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != m.file_sha256:
        raise ManifestError(f"artifact '{m.id}': model file '{path}' has sha256 {digest[:16]}..., the manifest "
                            f"records {m.file_sha256[:16]}...; {fix}")
    return data


def sha256_file(path: Union[str, os.PathLike]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (model files, sources, calibration data)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def artifact_id(model: str, size: int, fmt: str, precision: str) -> str:
    """The one naming template of artifacts: ``{model}-{size}-{format}-{precision}``."""
    return f"{model}-{size}-{fmt}-{precision}"


def load_manifest(artifact: Union[str, os.PathLike], expect_task: Optional[str] = None) -> Manifest:
    """Read ``manifest.json`` from an artifact directory (or the manifest file itself).

    Parameters
    ----------
    artifact : path
        Artifact directory, or its ``manifest.json``.
    expect_task : str, optional
        ``head_pose`` or ``face_detection``; a mismatch raises (e.g. a pose model passed as detector).

    Raises
    ------
    ManifestError
        Missing directory or manifest, invalid JSON, bad schema, task mismatch, missing model file.
    """
    path = Path(artifact)
    mpath = path if path.name == MANIFEST_NAME else path / MANIFEST_NAME
    if not mpath.exists():
        hint = "build one with `headpose convert MODEL --weights PATH --format tflite`"
        if not path.exists():
            raise ManifestError(f"artifact '{path}' does not exist; {hint}")
        raise ManifestError(f"'{path}' holds no {MANIFEST_NAME}: expected an artifact directory; {hint}")
    try:
        d = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ManifestError(f"{mpath}: not valid JSON ({e}); re-create the artifact with `headpose convert`") from None
    m = Manifest.from_dict(d, where=str(mpath))
    m.directory = mpath.parent.resolve()
    if expect_task and m.task != expect_task:
        raise ManifestError(f"{mpath}: artifact '{m.id}' is a {m.task} model, but a {expect_task} model was "
                            f"expected here; pass the other artifact")
    if not m.model_path.exists():
        raise ManifestError(f"{mpath}: model file '{m.file}' is missing from {m.directory}")
    return m


def umask_mode(base: int) -> int:
    """``base`` (0o666 files, 0o777 folders) less the process umask: the mode a plain ``open`` would give.

    ``tempfile.mkstemp``/``mkdtemp`` create 0600/0700 entries; published artifacts get this mode instead.
    """
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


def write_atomic(path: Union[str, os.PathLike], data: Union[bytes, str, Callable[[Any], None]]) -> Path:
    """The one atomic file write: ``data`` (bytes, text, or a function writing to a binary file object)
    goes to a temporary file beside ``path`` (the umask's mode, not mkstemp's 0600), renamed into place;
    readers see the old file or the new one, never a part. Returns ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.chmod(tmp, umask_mode(0o666))
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json_atomic(path: Union[str, os.PathLike], data: Dict[str, Any]) -> None:
    """Write JSON (indented, newline-terminated) with :func:`write_atomic`."""
    write_atomic(path, json.dumps(data, indent=2) + "\n")
