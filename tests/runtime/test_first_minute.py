"""``headpose run`` with no output flag: still images give annotated images and a face table; a video a hint."""

from __future__ import annotations

import pytest

from headpose.cli import main
from headpose.runtime.stills import DEFAULT_DIR, face_table
from tests.conftest import IMAGES, VIDEO, need_shared


@pytest.fixture(scope="module")
def models(artifact):
    return ["--detector", str(artifact("scrfd_500m", "fp32")), "--pose", str(artifact("mobilenetv3_small", "fp32"))]


def test_images_without_output_flags_write_annotated_images_and_a_table(models, tmp_path, monkeypatch, capsys):
    cv2 = pytest.importorskip("cv2", reason="reads and writes images")
    need_shared(IMAGES)
    monkeypatch.chdir(tmp_path)
    assert main(["run", *models, "--source", str(IMAGES)]) == 0
    out = capsys.readouterr().out
    inputs = sorted(IMAGES.glob("*.jpg"))
    written = sorted((tmp_path / DEFAULT_DIR).iterdir())
    assert [p.name for p in written] == [p.name for p in inputs]
    for src, dst in zip(inputs, written):
        a, b = cv2.imread(str(src)), cv2.imread(str(dst))
        assert a.shape == b.shape and (a.astype(int) - b).any(), f"{dst.name} is not annotated"
        assert f"{src.name}: " in out
    assert "track" in out and "yaw" in out and "pitch" in out and "roll" in out
    assert f"{len(inputs)} annotated image(s) in {tmp_path / DEFAULT_DIR}/" in out
    assert not list(IMAGES.parent.glob(DEFAULT_DIR))  # never written beside the inputs


def test_an_output_flag_writes_no_images(models, tmp_path, monkeypatch):
    need_shared(IMAGES)
    monkeypatch.chdir(tmp_path)
    assert main(["run", *models, "--source", str(IMAGES), "--jsonl", str(tmp_path / "o.jsonl")]) == 0
    assert not (tmp_path / DEFAULT_DIR).exists()


def test_a_video_without_output_flags_points_to_serve(models, tmp_path, monkeypatch, capsys):
    need_shared(VIDEO)
    monkeypatch.chdir(tmp_path)
    assert main(["run", *models, "--source", str(VIDEO), "--max-frames", "2"]) == 0
    out = capsys.readouterr().out
    assert "--serve 8080 shows it in a browser" in out and "headpose run: 2 frames" in out
    assert not (tmp_path / DEFAULT_DIR).exists()


def test_face_table_rows():
    class F:
        track_id, box, score, yaw, pitch, roll = 3, [10.4, 20.6, 110.0, 140.2], 0.91, -12.34, 5.0, 0.04
    lines = face_table([F()], "group.jpg").splitlines()
    assert lines[0] == "group.jpg: 1 face"
    assert lines[1].split() == ["track", "box", "x1,y1,x2,y2", "yaw", "pitch", "roll", "score"]
    assert lines[2].split() == ["3", "10,21,110,140", "-12.3", "+5.0", "+0.0", "0.91"]
    assert face_table([], "empty.jpg") == "empty.jpg: 0 faces"
