"""Fixtures shared by the runtime tests: the default pair of converted artifacts (built once per session)."""

import pytest


@pytest.fixture(scope="module")
def det_dir(artifact):
    return artifact("scrfd_500m", "fp32")


@pytest.fixture(scope="module")
def pose_dir(artifact):
    return artifact("mobilenetv3_small", "fp32")
