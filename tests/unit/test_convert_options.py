"""``ConvertOptions`` maps one to one onto ``headpose convert``'s flags; options a format does not use
are refused, not dropped; one publish (with rollback) for every format."""

from __future__ import annotations

import argparse
import os
from dataclasses import fields

import pytest

from headpose.convert import staging
from headpose.convert.options import ConvertOptions
from headpose.runtime.errors import ConversionError, InputError


def _convert_parser() -> argparse.ArgumentParser:
    from headpose.convert.cli import add_parser
    top = argparse.ArgumentParser()
    sub = top.add_subparsers(dest="command")
    add_parser(sub)
    return sub.choices["convert"]


def test_one_field_per_flag():
    parser = _convert_parser()
    dests = {a.dest for a in parser._actions if a.dest != "help"}
    assert dests == {f.name for f in fields(ConvertOptions)}
    args = parser.parse_args(["mobilenetv3_small", "--weights", "w.pt"])
    opts = ConvertOptions.from_args(args)
    assert opts == ConvertOptions(model="mobilenetv3_small", weights="w.pt")  # the CLI's defaults are the class's
    opts = ConvertOptions.from_args(parser.parse_args(["m", "--weights", "w", "--max-int8-error", "-1"]))
    assert opts.max_int8_error is None  # negative: no gate
    opts = ConvertOptions.from_args(parser.parse_args(["m", "--weights", "w", "--calib", "a.mp4"]))
    assert opts.calib == "a.mp4" and opts.gate_data is None  # one --calib stays one path, as before
    opts = ConvertOptions.from_args(parser.parse_args(["m", "--weights", "w", "--calib", "a.mp4", "--calib", "b",
                                                       "--gate-data", "g.txt", "--max-int8-p99", "2.5"]))
    assert opts.calib == ["a.mp4", "b"] and opts.gate_data == "g.txt" and opts.max_int8_p99 == 2.5
    assert ConvertOptions.from_args(parser.parse_args(["m", "--weights", "w", "--int8-remedy", "float_head"])
                                    ).int8_remedy == "float_head"


def test_coreml_refuses_the_int8_gate_flags():
    ConvertOptions(model="m", weights="w", fmt="coreml", precision="int8").check()
    with pytest.raises(InputError, match="--max-int8-error tune the TFLite/ONNX int8 pose gate.*coreml"):
        ConvertOptions(model="m", weights="w", fmt="coreml", max_int8_error=0.7).check()
    with pytest.raises(InputError, match="--max-int8-error and --allow-slow-int8 .* leave them out"):
        ConvertOptions(model="m", weights="w", fmt="coreml", max_int8_error=2.0, allow_slow_int8=True).check()
    with pytest.raises(InputError, match="--max-int8-p99 and --gate-data .* leave them out"):
        ConvertOptions(model="m", weights="w", fmt="coreml", max_int8_p99=2.5, gate_data="g").check()
    with pytest.raises(InputError, match="coreml checks parity on one --calib source; 2 were given"):
        ConvertOptions(model="m", weights="w", fmt="coreml", calib=["a.mp4", "b.mp4"]).check()
    with pytest.raises(InputError, match="--int8-remedy 'head' is not known.*float_head"):
        ConvertOptions(model="m", weights="w", int8_remedy="head").check()
    ConvertOptions(model="m", weights="w", fmt="coreml", max_int8_error=None).check()  # no gate: true of CoreML
    ConvertOptions(model="m", weights="w", fmt="coreml", max_int8_error=1.0).check()  # the default says nothing
    ConvertOptions(model="m", weights="w", fmt="tflite", max_int8_error=1.0, allow_slow_int8=True).check()


def test_cli_refuses_them_before_converting(capsys, tmp_path):
    from headpose.cli import main
    code = main(["convert", "mobilenetv3_small", "--weights", str(tmp_path / "w.pt"), "--format", "coreml",
                 "--allow-slow-int8", "--out", str(tmp_path / "out")])
    assert code == 2 and "--allow-slow-int8 tune the TFLite/ONNX int8 pose gate" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_publish_replaces_with_force_and_rolls_back(tmp_path, monkeypatch):
    final = tmp_path / "a"
    final.mkdir()
    (final / "old.txt").write_text("old")
    stage = staging.stage_folder(tmp_path, "a")
    (stage / "new.txt").write_text("new")
    with pytest.raises(ConversionError, match="pass --force"):
        staging.publish(stage, final, force=False)
    real = os.replace
    calls = []

    def failing(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise OSError("disk gone")
        return real(src, dst)
    monkeypatch.setattr(staging.os, "replace", failing)
    with pytest.raises(OSError, match="disk gone"):
        staging.publish(stage, final, force=True)
    monkeypatch.setattr(staging.os, "replace", real)
    assert (final / "old.txt").read_text() == "old"  # put back
    staging.publish(stage, final, force=True)
    assert sorted(p.name for p in final.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_every_format_is_built_by_a_step_module():
    """runtime/formats.py names, per format, the module of convert/steps/ that builds it; that module's
    BACKEND (one interface, :class:`headpose.convert.steps.Backend`) is the only code that knows the
    format: CoreML is a backend like the others, not an engine of its own."""
    import importlib.util
    from headpose.convert.steps import Backend, backend_of
    from headpose.runtime.formats import FORMATS
    for f in FORMATS.values():
        assert importlib.util.find_spec(f"headpose.convert.steps.{f.step}") is not None, f
        backend = backend_of(f.name)
        assert isinstance(backend, Backend) and backend.fmt == f.name
        own = type(backend).build is not Backend.build  # a route of its own, or the engine's ONNX route
        assert own != backend.from_onnx, f.name
    assert importlib.util.find_spec("headpose.convert.coreml") is None
    with pytest.raises(InputError, match="format 'keras' is not supported: expected one of tflite, onnx, coreml"):
        backend_of("keras")


@pytest.mark.parametrize("fmt, precision", [("onnx", "palettize6"), ("tflite", "palettize6"), ("coreml", "dynamic-int8")])
def test_the_engine_refuses_a_precision_the_format_lacks(tmp_path, fmt, precision):
    """The format table's precisions, checked by the one engine for every format before any work."""
    from headpose.convert.pipeline import convert
    from headpose.runtime.formats import precisions_of
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"PK")
    with pytest.raises(InputError, match=f"precision '{precision}' is not supported by --format {fmt}: expected one "
                                         f"of {', '.join(precisions_of(fmt))}"):
        convert("mobilenetv3_small", weights, fmt=fmt, precision=precision, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fmt, model, name, expected", [
    ("coreml", "mobilenetv3_small", "pose.onnx", "CoreML pose conversion starts from the PyTorch checkpoint"),
    ("coreml", "scrfd_500m", "det.pt", "converts from an SCRFD ONNX file"),
    ("tflite", "scrfd_500m", "det.pt", "converts from an SCRFD ONNX file"),
    ("onnx", "mobilenetv3_small", "missing.pt", "does not exist: expected a .pt checkpoint or a pose .onnx")])
def test_each_backend_checks_its_source(tmp_path, fmt, model, name, expected):
    from headpose.convert.pipeline import convert
    weights = tmp_path / name
    if name != "missing.pt":
        weights.write_bytes(b"PK\x03\x04" if name.endswith(".pt") else b"\x08\x07")
    with pytest.raises(InputError, match=expected):
        convert(model, weights, fmt=fmt, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
