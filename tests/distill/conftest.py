"""Fixtures for the distillation tests: a small real crop set labelled by the FSA-Net pair."""

from __future__ import annotations

import pytest

from tests.conftest import IMAGES, VIDEO, WEIGHTS, need_shared

FSANET = [WEIGHTS / "fsanet_1x1.onnx", WEIGHTS / "fsanet_var.onnx"]
DETECTOR = WEIGHTS / "scrfd_500m_bnkps.onnx"


@pytest.fixture(scope="session")
def fsanet():
    from headpose.distill.teachers import OnnxDegreesTeacher
    return OnnxDegreesTeacher([need_shared(p) for p in FSANET])


@pytest.fixture(scope="session")
def small_cropset(fsanet, tmp_path_factory):
    """Real crops: 3 frames of in_video.mp4 (several people) and the 3 photos, teacher-labelled, saved+loaded."""
    from headpose.distill.cropset import build_cropset, load_cropset, save_cropset
    from headpose.convert.facedata import OnnxFaceDetector
    need_shared(VIDEO)
    need_shared(IMAGES)
    det = OnnxFaceDetector(need_shared(DETECTOR), 640)
    cs = build_cropset([f"{VIDEO}#0:30@10", str(IMAGES)], det, fsanet, progress=False)
    folder = save_cropset(cs, tmp_path_factory.mktemp("crops") / "small")
    return load_cropset(folder)
