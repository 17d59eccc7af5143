"""End-to-end pipeline measurement on the real video: stage accounting, faces, verdicts (never a speed)."""

import numpy as np
import pytest

from headpose.benchmarks.model_latency import litert_runner, measure, onnx_runner, sample_input, torch_runner
from headpose.benchmarks.pipeline_latency import STAGES, PipelineSpec, measure_pipeline, peak_rss_mb
from headpose.runtime.errors import InputError
from headpose.runtime.manifest import load_manifest

from conftest import VIDEO, need_shared


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
