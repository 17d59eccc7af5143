"""runtime/manifest.schema.json: the manifest contract as JSON Schema, kept in step with
``Manifest.from_dict`` (the Python reader), the Java reader (android_demo/core Manifest.java) and the
Swift reader (ios_notes/Manifest.swift). tests/conftest.py also checks every manifest any test
builds or reads against the schema (tests/manifest_schema.py)."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path

import pytest

from headpose.runtime.errors import ManifestError
from headpose.runtime.formats import FORMAT_NAMES, precisions_of
from headpose.runtime.manifest import (DTYPES, LAYOUTS, SCHEMA_FILE, TASKS, Manifest, TensorSpec, artifact_id,
                                       input_hw, load_manifest, write_json_atomic)
from headpose.runtime.registry import get_spec
from manifest_schema import CHECKED, schema_errors, validator

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads(SCHEMA_FILE.read_text())


def _pose(fmt="tflite", precision="fp32"):
    spec = get_spec("mobilenetv3_small")
    return Manifest(
        id=artifact_id("mobilenetv3_small", 224, fmt, precision), model="mobilenetv3_small", task="head_pose",
        format=fmt, precision=precision, file="model.tflite", file_sha256="0" * 64, file_bytes=1,
        input=TensorSpec(name="input", shape=[1, 224, 224, 3], role="image", layout="NHWC", color="RGB",
                         mean=list(spec.mean), std=list(spec.std)),
        outputs=[TensorSpec(name="Identity", shape=[1, 6], role="ortho6d")],
        decode=copy.deepcopy(spec.decode)).to_dict()


def _detector():
    spec = get_spec("scrfd_500m")
    outs = [TensorSpec(name=f"{r}_{s}", shape=[1, 100, w], role=r, stride=s)
            for s in spec.decode["strides"] for r, w in (("score", 1), ("bbox", 4), ("kps", 10))]
    return Manifest(
        id=artifact_id("scrfd_500m", 640, "onnx", "fp32"), model="scrfd_500m", task="face_detection",
        format="onnx", precision="fp32", file="model.onnx",
        input=TensorSpec(name="input.1", shape=[1, 3, 640, 640], role="image", layout="NCHW", color=spec.color,
                         mean=list(spec.mean), std=list(spec.std)),
        outputs=outs, decode=dict(spec.decode, input_size=[640, 640])).to_dict()


def _python_rejects(d) -> str:
    try:
        Manifest.from_dict(copy.deepcopy(d))
    except ManifestError as e:
        return str(e)
    return ""


def test_schema_is_valid_and_lists_the_one_table():
    """The schema is valid JSON Schema; its formats, precisions, tasks, dtypes and layouts are those of
    runtime/formats.py and runtime/manifest.py (the schema repeats them; this test keeps them equal)."""
    validator()
    props = SCHEMA["properties"]
    assert props["format"]["enum"] == list(FORMAT_NAMES)
    assert props["task"]["enum"] == list(TASKS)
    assert props["schema_version"]["const"] == 1
    per_format = {c["if"]["properties"]["format"]["const"]: c["then"]["properties"]["precision"]["enum"]
                  for c in SCHEMA["allOf"] if "precision" in c.get("then", {}).get("properties", {})}
    assert per_format == {f: list(precisions_of(f)) for f in FORMAT_NAMES}
    defs = SCHEMA["$defs"]
    assert defs["tensor"]["properties"]["dtype"]["enum"] == list(DTYPES)
    assert defs["input"]["properties"]["layout"]["enum"] == list(LAYOUTS)


def test_built_manifests_conform():
    for d in (_pose(), _pose("coreml", "palettize6"), _detector()):
        assert schema_errors(d) == [] and not _python_rejects(d)


def test_shipped_manifests_conform():
    """Every manifest.json the repository ships (tests' data, examples)."""
    files = subprocess.run(["git", "ls-files", "*manifest.json"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    for f in files:
        d = json.loads((ROOT / f).read_text())
        if isinstance(d, dict) and "schema_version" in d:
            assert schema_errors(d) == [], f
            assert not _python_rejects(d), f


def _mutations():
    """(why, edit, base) that both the schema and Manifest.from_dict must refuse."""
    def pop(*path):
        def f(d):
            node = d
            for k in path[:-1]:
                node = node[k]
            node.pop(path[-1])
        return f

    def put(value, *path):
        def f(d):
            node = d
            for k in path[:-1]:
                node = node[k]
            node[path[-1]] = value
        return f

    P, D = _pose, _detector
    return [
        ("schema_version 2", put(2, "schema_version"), P),
        ("no decode", pop("decode"), P),
        ("no outputs", put([], "outputs"), P),
        ("task 'pose'", put("pose", "task"), P),
        ("format 'tf'", put("tf", "format"), P),
        ("tflite palettize6", put("palettize6", "precision"), P),
        ("input without layout", pop("input", "layout"), P),
        ("input colour 'YUV'", put("YUV", "input", "color"), P),
        ("input 3-d", put([1, 224, 3], "input", "shape"), P),
        ("std 0", put([1.0, 0.0, 1.0], "input", "std"), P),
        ("file with a slash", put("../model.tflite", "file"), P),
        ("tflite without sha256", pop("file_sha256"), P),
        ("bad sha256", put("abc", "file_sha256"), P),
        ("stride 0", put(0, "outputs", 0, "stride"), D),
        ("pose decode kind scrfd", put("scrfd", "decode", "kind"), P),
        ("pose decode without crop", pop("decode", "crop"), P),
        ("pose margin 11", put(11, "decode", "crop", "margin"), P),
        ("pose without an ortho6d output", put("raw", "outputs", 0, "role"), P),
        ("detector decode kind ortho6d", put("ortho6d", "decode", "kind"), D),
        ("detector without nms_threshold", pop("decode", "nms_threshold"), D),
        ("detector score_threshold 5", put(5, "decode", "score_threshold"), D),
        ("detector strides as strings", put([8, "16", 32], "decode", "strides"), D),
        ("detector score output without stride", put(None, "outputs", 0, "stride"), D),
    ]


@pytest.mark.parametrize("why,edit,base", _mutations(), ids=[m[0] for m in _mutations()])
def test_schema_and_python_refuse_alike(why, edit, base):
    d = base()
    edit(d)
    assert schema_errors(d), f"the schema accepts: {why}"
    assert _python_rejects(d), f"Manifest.from_dict accepts: {why}"


def test_decode_rules_checked_when_read(tmp_path):
    """The detector's and pose classes' decode rules fail at load_manifest, naming the file and field."""
    d = _detector()
    d["outputs"] = [o for o in d["outputs"] if (o["role"], o["stride"]) != ("bbox", 16)]
    msg = _python_rejects(d)
    assert "no output for bbox@16" in msg and "must map every stride's score and bbox tensor by name" in msg
    d = _pose()
    d["input"]["shape"] = [1, 224, 200, 3]
    assert "is not square" in _python_rejects(d)
    d = _pose()
    d["decode"]["kind"] = "scrfd"
    (tmp_path / "model.tflite").write_bytes(b"x")
    write_json_atomic(tmp_path / "manifest.json", d)
    with pytest.raises(ManifestError, match=r"manifest.json: artifact '.*': decode kind 'scrfd' is not 'ortho6d'"):
        load_manifest(tmp_path)


def test_typed_sections():
    m = Manifest.from_dict(_detector())
    assert m.scrfd.strides == (8, 16, 32) and m.scrfd.anchors_per_cell == 2 and 0 < m.scrfd.nms_threshold < 1
    assert input_hw(m) == m.input_hw == (640, 640)
    p = Manifest.from_dict(_pose())
    assert p.pose.margin == 0.2 and p.input_hw == (224, 224)
    with pytest.raises(ManifestError, match="is not 'scrfd'"):
        p.scrfd
    with pytest.raises(ManifestError, match="is not 'ortho6d'"):
        m.pose


def test_conftest_checks_every_manifest():
    before = CHECKED["manifests"]
    Manifest.from_dict(_pose())
    assert CHECKED["manifests"] == before + 1


# ---- the app readers ------------------------------------------------------------------------------
JAVA = ROOT / "android_demo/core/src/main/java/dev/headpose/core/Manifest.java"
SWIFT = ROOT / "ios_notes/Manifest.swift"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def test_java_reader_requires_what_the_schema_requires():
    text = JAVA.read_text()
    required = re.search(r"String\[\] required = \{([^}]*)\}", text).group(1)
    java = [s.strip().strip('"') for s in required.split(",")]
    assert ["schema_version"] + java == SCHEMA["required"]
    # the input check: 4-d shape, layout, colour, mean and std (name and shape read as for every tensor)
    ok = re.search(r"boolean ok = (.*?);", text, re.S).group(1)
    for field in ("layout", "color", "mean", "std", "shape.length == 4"):
        assert field in ok, field
    assert set(SCHEMA["$defs"]["input"]["required"]) == {"name", "shape", "layout", "color", "mean", "std"}
    # every top-level field the reader reads is one the schema describes
    read = set(re.findall(r'd\.get\("([a-z_0-9]+)"\)', text))
    assert read <= set(SCHEMA["properties"]), read - set(SCHEMA["properties"])
    tensor_read = set(re.findall(r't\.(?:get|containsKey)\("([a-z_]+)"\)', text))
    assert tensor_read == set(SCHEMA["$defs"]["tensor"]["properties"]), tensor_read


def _swift_struct(text: str, name: str):
    """{json_key: optional?} of the ``let`` fields of one Swift struct (the top level when name is None)."""
    if name:
        one_line = re.search(rf"struct {name}: Decodable \{{([^\n}}]*)\}}", text)
        body = (one_line or re.search(rf"struct {name}: Decodable \{{(.*?)\n    \}}", text, re.S)).group(1)
    else:
        body = "\n".join(line for line in text.splitlines() if line.startswith("    let "))
    return {_snake(n): t.strip().endswith("?") for n, t in re.findall(r"let (\w+): ([\w\[\]?]+)", body)}


def test_swift_reader_requires_what_the_schema_requires():
    """A Decodable's non-optional fields are the ones it requires: exactly the schema's required ones
    (for format coreml, the one the Swift reader loads: + file_sha256 and file_bytes)."""
    text = SWIFT.read_text()
    top = _swift_struct(text, None)
    coreml = next(c["then"]["required"] for c in SCHEMA["allOf"]
                  if "coreml" in c["if"]["properties"]["format"].get("enum", []))
    assert {k for k, opt in top.items() if not opt} == set(SCHEMA["required"]) | set(coreml)
    assert set(top) <= set(SCHEMA["properties"])
    tensor = _swift_struct(text, "Tensor")
    assert {k for k, opt in tensor.items() if not opt} == set(SCHEMA["$defs"]["tensor"]["required"])
    assert set(tensor) <= set(SCHEMA["$defs"]["tensor"]["properties"])
    decode = _swift_struct(text, "Decode")
    defs = SCHEMA["$defs"]
    assert {k for k, opt in decode.items() if not opt} == (set(defs["scrfd_decode"]["required"])
                                                             & set(defs["pose_decode"]["required"]))
    assert set(decode) == ({*defs["scrfd_decode"]["properties"], *defs["pose_decode"]["properties"]})
    crop = _swift_struct(text, "Crop")
    assert {k for k, opt in crop.items() if not opt} == set(defs["pose_decode"]["properties"]["crop"]["required"])
