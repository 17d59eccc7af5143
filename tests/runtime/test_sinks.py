"""JSONL / CSV / video sinks: records, temporary name until close, readable video."""

import csv
import json

import numpy as np
import pytest

from headpose.runtime.estimator import Face
from headpose.runtime.rotation import rotation_from_euler
from headpose.runtime.sinks import CSV_COLUMNS, CsvSink, JsonlSink, SinkError, VideoSink


def face(tid, yaw):
    return Face(tid, np.array([10, 20, 110, 140], np.float32), 0.87654, np.arange(10, dtype=np.float32).reshape(5, 2),
                yaw=yaw, pitch=-3.0, roll=1.5, rotation=rotation_from_euler(-3.0, yaw, 1.5))


def test_jsonl_records_and_atomic_rename(tmp_path):
    out = tmp_path / "r.jsonl"
    s = JsonlSink(out)
    s.write(0, 12.5, [face(1, 20.0), face(2, -40.0)], None)
    s.write(1, 11.0, [], None)
    assert not out.exists()  # still under its temporary name
    s.close()
    s.close()
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in recs] == [0, 1] and recs[1]["faces"] == []
    f = recs[0]["faces"][1]
    assert set(f) == {"track_id", "box", "score", "keypoints", "yaw", "pitch", "roll"}
    assert f["track_id"] == 2 and f["yaw"] == -40.0 and f["box"] == [10.0, 20.0, 110.0, 140.0]
    assert np.array(f["keypoints"]).shape == (5, 2)
    assert list(tmp_path.iterdir()) == [out]


def test_csv_rows(tmp_path):
    out = tmp_path / "r.csv"
    with CsvSink(out) as s:
        s.write(3, 9.0, [face(1, 20.0), face(4, 5.0)], None)
    rows = list(csv.reader(out.open()))
    assert rows[0] == CSV_COLUMNS and len(rows) == 3
    assert rows[2][:3] == ["3", "9.0", "4"] and float(rows[2][CSV_COLUMNS.index("yaw")]) == 5.0


def test_video_sink_writes_a_readable_video(tmp_path):
    cv2 = pytest.importorskip("cv2", reason="video output needs OpenCV")
    out = tmp_path / "v.mp4"
    s = VideoSink(out, fps=10)
    rng = np.random.default_rng(0)
    for i in range(5):
        s.write(i, 0.0, [], rng.integers(0, 255, (64, 96, 3), dtype=np.uint8))
    s.close()
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 5 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 96


def test_missing_folder(tmp_path):
    with pytest.raises(SinkError, match="does not exist"):
        JsonlSink(tmp_path / "no" / "r.jsonl")
