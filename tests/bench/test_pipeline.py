"""End-to-end pipeline measurement on the real video: stage accounting, faces, verdicts (never a speed)."""

import numpy as np
import pytest

from headpose.benchmarks.model_latency import litert_runner, measure, onnx_runner, sample_input, torch_runner
from headpose.benchmarks.pipeline_latency import STAGES, PipelineSpec, measure_pipeline, peak_rss_mb
from headpose.runtime.errors import InputError
from headpose.runtime.manifest import load_manifest

from tests.conftest import VIDEO, need_shared


def _check_entry(e, frames):
    assert e["frames"] == frames and len(e["samples_ms"]) == frames
    assert e["stages"]["capture"]["n"] == frames
    assert set(e["stages"]) == set(STAGES)
    # a frame's end-to-end time is capture + pipeline + draw: it bounds the capture and draw stages
    assert e["end_to_end"]["max"] >= e["stages"]["capture"]["max"]
    assert e["end_to_end"]["min"] >= e["stages"]["detector"]["min"]
    assert e["faces_total"] == sum(e["faces_per_frame_series"]) > 0   # the classroom video has faces
    assert e["fps"] > 0 and e["wall_s"] > 0
    want = {"fps": "PASS" if e["fps"] >= 30 else "FAIL", "p99": "PASS" if e["end_to_end"]["p99"] < 100 else "FAIL"}
    assert {k: e["verdict"][k] for k in want} == want
    assert e["load_ms"] > 0 and e["peak_rss_mb"] > 0


def test_onnxruntime_baseline_pipeline(artifact):
    need_shared(VIDEO)
    spec = PipelineSpec("onnxruntime", artifact("scrfd_500m", "fp32", fmt="onnx"),
                        artifact("mobilenetv3_small", "fp32", fmt="onnx"), threads=1)
    e = measure_pipeline(spec, VIDEO, frames=4, warmup=1)
    _check_entry(e, 4)
    assert e["key"] == "onnxruntime|mobilenetv3_small|fp32|t1|de1|-" and e["style"] == "yakhyo-onnxruntime"
    assert e["stages"]["smoothing"]["max"] == 0.0 and e["xnnpack"] is None


def test_litert_pipeline_with_detect_every(artifact):
    need_shared(VIDEO)
    spec = PipelineSpec("litert", artifact("scrfd_500m", "fp32"), artifact("mobilenetv3_small", "fp32"),
                        threads=1, detect_every=2)
    e = measure_pipeline(spec, VIDEO, frames=4, warmup=1)
    _check_entry(e, 4)
    assert e["key"] == "litert|mobilenetv3_small|fp32|t1|de2|xnn"
    # the detector runs on frames 0 and 2 only: carried frames report 0 ms for it
    assert e["stages"]["detector"]["min"] == 0.0 and e["stages"]["detector"]["max"] > 0.0


def test_baseline_refuses_tracking(artifact):
    spec = PipelineSpec("onnxruntime", artifact("scrfd_500m", "fp32", fmt="onnx"),
                        artifact("mobilenetv3_small", "fp32", fmt="onnx"), detect_every=3)
    with pytest.raises(InputError, match="detects on every frame"):
        measure_pipeline(spec, VIDEO, frames=2)


def test_model_latency_runners(artifact, seeded_ckpt):
    need_shared(VIDEO)
    import cv2
    cap = cv2.VideoCapture(str(VIDEO))
    ok, frame = cap.read()
    cap.release()
    assert ok
    onnx = artifact("mobilenetv3_small", "fp32", fmt="onnx")
    m = load_manifest(onnx)
    x = sample_input(m, frame)
    assert x.dtype == np.float32 and list(x.shape[1:]) == list(m.input.shape[1:])
    e = measure(onnx_runner(onnx, 1, frame), warmup=1, runs=3)
    assert e["key"] == "onnxruntime|mobilenetv3_small|fp32|t1|-" and e["stats"]["n"] == 3
    tfl = artifact("mobilenetv3_small", "fp32")
    on = measure(litert_runner(tfl, 1, True, frame), warmup=1, runs=3)
    off = measure(litert_runner(tfl, 1, False, frame), warmup=1, runs=3)
    assert (on["xnnpack"], off["xnnpack"]) == (True, False) and on["key"] != off["key"]
    assert on["file_sha256"] == load_manifest(tfl).file_sha256
    det = load_manifest(artifact("scrfd_500m", "fp32"))
    d = sample_input(det, frame)   # letterboxed 1280x720 frame: the bottom of the canvas is padding
    pad = (d[0, -10:, :, :] if det.input.layout == "NHWC" else d[0, :, -10:, :])
    assert np.allclose(pad, pad.reshape(-1)[0])
    t = measure(torch_runner("mobilenetv3_small", seeded_ckpt("mobilenetv3_small"), 1, frame), warmup=1, runs=2)
    assert t["runtime"] == "torch" and t["artifact"] is None and t["stats"]["n"] == 2
    assert peak_rss_mb() > 0


def test_batched_pose_latency_has_its_own_key(artifact):
    need_shared(VIDEO)
    tfl = artifact("mobilenetv3_small", "fp32")
    e = measure(litert_runner(tfl, 1, True, None, batch=3), warmup=1, runs=2)
    assert e["key"] == "litert|mobilenetv3_small|fp32|t1|xnn|b3"
    assert e["batch"] == 3 and e["input_shape"][0] == 3


# ---- pipelined mode and the model-only bound (issue 13) -------------------------------------------
def test_pipelined_pipeline_entry(artifact):
    need_shared(VIDEO)
    det, pose = artifact("scrfd_500m", "fp32"), artifact("mobilenetv3_small", "fp32")
    seq = measure_pipeline(PipelineSpec("litert", det, pose, threads=2, detect_every=2), VIDEO, frames=6, warmup=1)
    pipe = measure_pipeline(PipelineSpec("litert", det, pose, threads=2, detect_every=2, pipelined=True), VIDEO,
                            frames=6, warmup=1)
    _check_entry(pipe, 6)
    assert pipe["key"] == "litert|mobilenetv3_small|fp32|t2|de2|xnn|pipe" and pipe["pipelined"] is True
    assert (pipe["detector_threads"], pipe["pose_threads"]) == (1, 2)
    assert (seq["pipelined"], seq["detector_threads"], seq["pose_threads"]) == (False, 2, 2)
    assert pipe["detected_frames"] == seq["detected_frames"] == 3
    assert pipe["faces_per_frame_series"] == seq["faces_per_frame_series"]  # same frames, same faces
    with pytest.raises(InputError, match="only the LiteRT pipeline has a pipelined mode"):
        measure_pipeline(PipelineSpec("onnxruntime", artifact("scrfd_500m", "fp32", fmt="onnx"),
                                      artifact("mobilenetv3_small", "fp32", fmt="onnx"), pipelined=True), VIDEO, 2)


def _lat(artifact, threads, p50, batch=1, xnnpack=True):
    return {"artifact": artifact, "threads": threads, "xnnpack": xnnpack, "batch": batch, "stats": {"p50": p50}}


def test_bound_arithmetic():
    from headpose.benchmarks.pipeline_latency import add_bounds, pipeline_bound
    p = {"key": "k", "detector": "det", "pose": "pose", "threads": 2, "xnnpack": True, "detect_every": 3,
         "frames": 10, "detected_frames": 4, "faces_per_frame": {"mean": 5.0},
         "stages": {"capture": {"mean": 2.0}}, "fps": 40.0}
    lat = [_lat("det", 2, 8.0), _lat("pose", 2, 2.0), _lat("pose", 2, 7.0, batch=5), _lat("pose", 1, 0.5),
           _lat("det", 2, 1.0, xnnpack=False)]  # other threads / no XNNPACK: not this pipeline's
    b = pipeline_bound(p, lat)
    assert b["detected_fraction"] == 0.4 and b["detector_ms"] == 3.2 and b["detector_model_ms"] == 8.0
    assert (b["pose_batch"], b["pose_ms_per_face"]) == (5, 1.4)  # the cheaper per face of b1 (2.0) and b5 (1.4)
    assert b["ms_per_frame"] == pytest.approx(2.0 + 3.2 + 5 * 1.4)
    assert add_bounds([p], lat) == 1 and p["efficiency"] == pytest.approx(round(12.2 * 40.0 / 1000, 3))
    split = dict(p, key="k2", pipelined=True, detector_threads=1, pose_threads=1)
    split.pop("detected_frames")  # an older result: the schedule gives ceil(10 / 3) = 4 detections
    b2 = pipeline_bound(split, lat + [_lat("det", 1, 10.0)])
    assert b2["detector_ms"] == 4.0 and b2["pose_ms_per_face"] == 0.5 and b2["detector_threads"] == 1
    assert pipeline_bound(dict(p, threads=4), lat) is None  # no model-only timing at 4 threads: no bound
    from headpose.benchmarks.model_latency import thread_counts as _model_threads  # covers a pipelined split
    assert _model_threads([4], [False, True]) == [2, 4] and _model_threads([4], [False]) == [4]
    assert _model_threads([3], [True]) == [1, 3]
    q = {k: v for k, v in p.items() if k not in ("bound", "efficiency")}
    q.update(key="k3", threads=4)
    assert add_bounds([q], lat) == 0 and "bound" not in q and "efficiency" not in q


def test_gil_overlap_measures_two_threads(artifact):
    from headpose.benchmarks.pipeline_latency import gil_overlap
    need_shared(VIDEO)
    g = gil_overlap(artifact("scrfd_500m", "fp32"), artifact("mobilenetv3_small", "fp32"), VIDEO, runs=3)
    assert g["sequential_ms"] > 0 and g["threaded_ms"] > 0 and g["runs"] == 3
    assert g["overlap"] == pytest.approx(g["sequential_ms"] / g["threaded_ms"], rel=0.01)
