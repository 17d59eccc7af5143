"""Plumbing written once in convert/ and runtime/: one atomic file write (runtime.manifest.write_atomic),
one directory publish (convert.staging.publish), one list of image suffixes (runtime.sources)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from headpose.runtime.manifest import umask_mode, write_atomic, write_json_atomic

ROOT = Path(__file__).resolve().parents[2]


def test_write_atomic_bytes_text_and_writer(tmp_path):
    p = tmp_path / "f.bin"
    write_atomic(p, b"\x00\x01")
    assert p.read_bytes() == b"\x00\x01" and (p.stat().st_mode & 0o777) == umask_mode(0o666)
    write_atomic(p, "text")
    assert p.read_text() == "text"
    write_atomic(tmp_path / "a.npz", lambda f: np.savez(f, x=np.arange(3)))
    assert np.load(tmp_path / "a.npz")["x"].tolist() == [0, 1, 2]
    write_json_atomic(tmp_path / "j.json", {"a": 1})
    assert (tmp_path / "j.json").read_text() == '{\n  "a": 1\n}\n'


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("old")

    def broken(f):
        f.write(b"half")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        write_atomic(p, broken)
    assert p.read_text() == "old" and sorted(x.name for x in tmp_path.iterdir()) == ["f.txt"]


def _code(rooms=("convert", "runtime")):
    for room in rooms:
        for f in sorted((ROOT / room).rglob("*.py")):
            yield f.relative_to(ROOT).as_posix(), f.read_text()


def test_one_atomic_write_and_one_publish():
    """``mkstemp`` (a temporary file to rename over another) appears once: in write_atomic; the renames
    of whole artifact folders are staging.publish's (and sweep's, which puts one back)."""
    mkstemp = [rel for rel, text in _code() if "tempfile.mkstemp(" in text]
    assert mkstemp == ["runtime/manifest.py"], mkstemp
    text = (ROOT / "runtime/manifest.py").read_text()
    assert text.count("tempfile.mkstemp(") == 1
    for rel in ("convert/pipeline.py", "convert/steps/coreml.py", "convert/defaults.py", "convert/matrix.py",
                "convert/calibration.py"):
        assert "os.replace(" not in (ROOT / rel).read_text(), rel


def test_one_list_of_image_suffixes():
    from headpose.convert import facedata
    from headpose.runtime import sources
    assert facedata.IMAGE_SUFFIXES is sources.IMAGE_SUFFIXES
    lists = [rel for rel, text in _code() if re.search(r"IMAGE_SUFFIXES\s*=", text)]
    assert lists == ["runtime/sources.py"], lists


def test_one_frame_reader():
    """convert/facedata and convert/calibration read frames through the runtime's sources, never OpenCV's
    VideoCapture / imread of their own."""
    for rel in ("convert/facedata.py", "convert/calibration.py"):
        text = (ROOT / rel).read_text()
        assert "VideoCapture(" not in text and "imread(" not in text, rel


def test_iter_frames_reads_video_and_images(tmp_path):
    cv2 = pytest.importorskip("cv2")
    from headpose.convert.facedata import iter_frames
    video = tmp_path / "v.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(6):
        w.write(np.full((48, 64, 3), 40 * i, np.uint8))
    w.release()
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"not an image")
    got = [(Path(fid).name, f.shape) for fid, f in iter_frames(tmp_path, every=2, start=1, stop=5)]
    assert got == [("a.png", (8, 8, 3)), ("v.avi#1", (48, 64, 3)), ("v.avi#3", (48, 64, 3))]
    from headpose.convert.calibration import iter_frames_ids
    assert [Path(fid).name for fid, _ in iter_frames_ids(tmp_path)] == \
        ["a.png", "b.jpg"] + [f"v.avi#{i}" for i in range(6)]
