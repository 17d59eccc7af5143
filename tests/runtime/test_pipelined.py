"""The pipelined mode (issue 13): capture, detection and pose on their own threads.

Same faces and angles as the sequential estimator on real frames, in order (with tracking and
detect-every); a clean stop; a lost source and a failing stage end the run after every frame before
them; SIGTERM on a real ``headpose run --pipelined`` child publishes complete outputs; LiteRT's
``invoke`` lets another Python thread run meanwhile (the GIL is released).
"""

from __future__ import annotations

import csv
import json
import threading
import time

import numpy as np
import pytest

from headpose.cli import main
from headpose.runtime import cli as run_cli
from headpose.runtime.errors import InputError
from headpose.runtime.estimator import EstimatorOptions, HeadPoseEstimator
from headpose.runtime.pipelined import PipelinedRunner, machine_cores, split_threads
from headpose.runtime.sources import Frame, SourceError, open_source
from tests.conftest import IMAGES, VIDEO, need_shared
from tests.runtime.test_robustness import _hidden


class _Frames:
    """The first ``n`` frames of the real video (decoded once), then optionally an error."""

    independent = False

    def __init__(self, frames, error=None):
        self.frames, self.error = frames, error

    def __iter__(self):
        for i, img in enumerate(self.frames):
            yield Frame(i, img, i / 25.0)
        if self.error is not None:
            raise self.error


@pytest.fixture(scope="module")
def video_frames():
    pytest.importorskip("cv2", reason="video source")
    need_shared(VIDEO)
    with open_source(str(VIDEO)) as src:
        out = []
        for fr in src:
            out.append(fr.image)
            if len(out) == 24:
                break
    return out


def _estimator(det_dir, pose_dir, **kw):
    return HeadPoseEstimator.from_artifacts(det_dir, pose_dir, EstimatorOptions(threads=1, **kw))


def _sequential(est, frames, independent=False):
    out = []
    for i, img in enumerate(frames):
        if independent:
            est.reset()
        out.append([f.to_dict() for f in est.estimate(img, "BGR", i / 25.0)])
    return out


@pytest.mark.parametrize("detect_every", [1, 3])
def test_same_faces_and_angles_in_order_as_sequential(det_dir, pose_dir, video_frames, detect_every):
    with _estimator(det_dir, pose_dir, detect_every=detect_every) as est:
        want = _sequential(est, video_frames)
    with _estimator(det_dir, pose_dir, detect_every=detect_every) as est:
        with PipelinedRunner(est, _Frames(video_frames)) as runner:
            got = list(runner)
    assert [r.frame.index for r in got] == list(range(len(video_frames)))
    assert sum(len(f) for f in want) > 0  # the classroom video has faces
    assert [[f.to_dict() for f in r.faces] for r in got] == want  # ids, boxes, angles: identical
    carried = [r.timings["detector"] for i, r in enumerate(got) if i % detect_every]
    assert all(v == 0.0 for v in carried) and all(r.timings["detector"] > 0 for r in got[::detect_every])
    assert all(r.latency_ms > 0 and r.capture_ms >= 0 for r in got)


def test_independent_images_reset_per_frame(det_dir, pose_dir):
    pytest.importorskip("cv2", reason="image source")
    need_shared(IMAGES)
    src = open_source(str(IMAGES))
    frames = [fr.image for fr in src][:4]
    with _estimator(det_dir, pose_dir, detect_every=3) as est:
        want = _sequential(est, frames, independent=True)
    with _estimator(det_dir, pose_dir, detect_every=3) as est:
        s = _Frames(frames)
        s.independent = True  # a folder of unrelated images: detect on each, no tracking across them
        got = [[f.to_dict() for f in r.faces] for r in PipelinedRunner(est, s)]
    assert got == want and sum(map(len, want)) > 0


def test_a_lost_source_ends_after_every_frame_before_it(det_dir, pose_dir, video_frames):
    lost = SourceError("camera 0 stopped delivering frames: 5 retries failed after frame 6")
    with _estimator(det_dir, pose_dir) as est:
        runner = PipelinedRunner(est, _Frames(video_frames[:6], lost))
        seen = []
        with pytest.raises(SourceError, match="stopped delivering"):
            for r in runner:
                seen.append(r.frame.index)
        assert runner.close()
    assert seen == list(range(6))


def test_a_failing_stage_is_raised_in_order(det_dir, pose_dir, video_frames):
    frames = list(video_frames[:5]) + [np.zeros((4, 4, 3), np.uint16) + 1000] + list(video_frames[5:8])
    with _estimator(det_dir, pose_dir) as est:  # the detect stage refuses frame 5 (uint16 above 255)
        seen = []
        with pytest.raises(InputError, match="0..255|uint16"):
            with PipelinedRunner(est, _Frames(frames)) as runner:
                for r in runner:
                    seen.append(r.frame.index)
    assert seen == list(range(5))

    with _estimator(det_dir, pose_dir) as est:  # the pose stage fails at its 4th frame
        real, calls = est.pose.estimate, []

        def failing(*a, **k):
            calls.append(1)
            if len(calls) == 4:
                raise RuntimeError("pose interpreter failed")
            return real(*a, **k)
        est.pose.estimate = failing
        seen = []
        with pytest.raises(RuntimeError, match="pose interpreter failed"):
            with PipelinedRunner(est, _Frames(video_frames)) as runner:
                for r in runner:
                    seen.append(r.frame.index)
    assert seen == [0, 1, 2]


def test_stop_ends_soon_with_a_prefix_in_order(det_dir, pose_dir, video_frames):
    with _estimator(det_dir, pose_dir) as est:
        runner = PipelinedRunner(est, _Frames(video_frames), depth=1)
        seen = []
        for r in runner:
            seen.append(r.frame.index)
            if len(seen) == 3:
                runner.stop()
        assert runner.close()
    # at most the frames past detection when stop() came: two queues of 1, the pose and the detect stage's own
    assert seen == list(range(len(seen))) and 3 <= len(seen) <= 3 + 4
    assert len(seen) < len(video_frames)


def test_max_frames_and_queue_depth(det_dir, pose_dir, video_frames):
    with _estimator(det_dir, pose_dir) as est:
        got = [r.frame.index for r in PipelinedRunner(est, _Frames(video_frames), max_frames=5)]
        assert got == [0, 1, 2, 3, 4]
        with pytest.raises(InputError, match="depth must be >= 1"):
            PipelinedRunner(est, _Frames(video_frames), depth=0)


def test_thread_split():
    assert [split_threads(t) for t in (1, 2, 3, 4, 8)] == [(1, 1), (1, 2), (1, 3), (2, 4), (4, 8)]
    assert machine_cores() >= 1
    with pytest.raises(InputError, match="pose_threads must be >= 1"):
        EstimatorOptions(pose_threads=0).validate()


def test_cli_pipelined_writes_the_same_records(det_dir, pose_dir, tmp_path, capsys):
    pytest.importorskip("cv2", reason="video source")
    need_shared(VIDEO)
    outs = {}
    for mode in ("seq", "pipe"):
        f = tmp_path / f"{mode}.jsonl"
        extra = ["--pipelined"] if mode == "pipe" else []
        assert main(["run", "--detector", str(det_dir), "--pose", str(pose_dir), "--source", str(VIDEO),
                     "--max-frames", "12", "--threads", "2", "--detect-every", "2", "--jsonl", str(f), *extra]) == 0
        outs[mode] = [json.loads(x) for x in f.read_text().splitlines()]
        summary = capsys.readouterr().out
        assert "latency capture->result p50" in summary and ("(pipelined)" in summary) == (mode == "pipe")
    assert [r["frame"] for r in outs["pipe"]] == list(range(12))
    assert [r["faces"] for r in outs["pipe"]] == [r["faces"] for r in outs["seq"]]


def test_cli_pipelined_source_loss_publishes_what_came_before(det_dir, pose_dir, video_frames, tmp_path,
                                                               monkeypatch, capsys):
    lost = SourceError("stream rtsp://cam stopped delivering frames: 5 retries failed after frame 7")

    class Lost(_Frames):
        description, live, fps, length = "stream rtsp://cam", True, 25.0, None

        def close(self):
            pass
    import headpose.runtime.sources as sources
    monkeypatch.setattr(sources, "open_source", lambda *a, **k: Lost(video_frames[:7], lost))
    out = tmp_path / "o.jsonl"
    rc = main(["run", "--detector", str(det_dir), "--pose", str(pose_dir), "--source", "rtsp://cam",
               "--pipelined", "--jsonl", str(out), "--csv", str(tmp_path / "o.csv")])
    assert rc == 2 and "stopped delivering" in capsys.readouterr().err
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["frame"] for r in recs] == list(range(7))
    rows = list(csv.reader((tmp_path / "o.csv").open()))
    assert len(rows) == 1 + sum(len(r["faces"]) for r in recs)
    assert _hidden(tmp_path) == []


# SIGTERM / SIGINT / SIGHUP in pipelined mode on a real child process: test_robustness.py
# (test_signals_publish_complete_outputs, parametrized over both modes)


def test_invoke_releases_the_gil(det_dir):
    """While one thread is inside ``invoke``, another Python thread keeps running: many of its clock
    readings fall inside the invoke calls (a held GIL would allow none)."""
    from headpose.runtime.interpreter import TFLiteModel
    from headpose.runtime.manifest import load_manifest
    m = load_manifest(det_dir)
    model = TFLiteModel(m, 1, True)
    x = np.zeros(model.input_shape, np.float32)
    model(x)
    interp = model.interpreter
    idx = next(d["index"] for d in interp.get_input_details() if d["name"] == m.input.name)
    interp.set_tensor(idx, x)
    spans, done = [], threading.Event()

    def invoker():
        for _ in range(15):
            a = time.perf_counter()
            interp.invoke()
            spans.append((a, time.perf_counter()))
        done.set()
    stamps = []
    t = threading.Thread(target=invoker)
    t.start()
    while not done.is_set():
        stamps.append(time.perf_counter())
    t.join()
    stamps = np.asarray(stamps)
    inside = sum(int(((stamps > a) & (stamps < b)).sum()) for a, b in spans)
    total_ms = sum(b - a for a, b in spans) * 1e3
    assert inside > 100, f"only {inside} readings of the other thread inside {total_ms:.0f} ms of invoke calls"
