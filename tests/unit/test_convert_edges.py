"""Conversion edges of issue 18 (point 11): ``--out`` naming a file, a damaged face-detection cache."""

from __future__ import annotations

import numpy as np
import pytest

from headpose.cli import main
from tests.conftest import IMAGES, WEIGHTS, need_shared


def test_out_naming_a_file_is_a_clear_error(tmp_path, capsys):
    f = tmp_path / "exports"
    f.write_text("not a folder")
    rc = main(["convert", "mobilenetv3_small", "--weights", str(f), "--format", "tflite", "--out", str(f)])
    err = capsys.readouterr().err
    assert rc == 2 and "is a file: expected the folder" in err and "Traceback" not in err
    assert f.read_text() == "not a folder"


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_damaged_detection_cache_is_rebuilt(tmp_path, monkeypatch, damage):
    pytest.importorskip("onnxruntime", reason="the convert extra finds the faces")
    from headpose.convert import calibration
    monkeypatch.setenv("HEADPOSE_CACHE", str(tmp_path))
    src = need_shared(IMAGES / "single_face.jpg")
    det = need_shared(WEIGHTS / "scrfd_500m_bnkps.onnx")
    sha = calibration.source_sha256(src)
    crops, _ = calibration._cached_face_crops(src, sha, det, 224, 0.2)  # builds the cache
    cache, = tmp_path.glob("faces-*.npz")
    good = cache.read_bytes()
    cache.write_bytes(good[: len(good) // 2] if damage == "truncated" else b"")
    again, _ = calibration._cached_face_crops(src, sha, det, 224, 0.2)
    assert len(again) == len(crops) >= 1 and np.array_equal(again, crops)
    assert cache.read_bytes() == good  # rebuilt in place
