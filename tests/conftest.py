"""Shared fixtures: paths to the real data in ../shared and seeded checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("HEADPOSE_SHARED", ROOT.parent / "shared"))
DATA = SHARED / "data"
WEIGHTS = SHARED / "weights"
VIDEO = DATA / "in_video.mp4"
IMAGES = DATA / "images"
SLOW = os.environ.get("HEADPOSE_SLOW") == "1"


def pytest_collection_modifyitems(config, items):
    if SLOW or config.getoption("-m") and "slow" in config.getoption("-m"):
        return
    skip = pytest.mark.skip(reason="slow conversion matrix: run with HEADPOSE_SLOW=1 or -m slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def need_shared(path: Path) -> Path:
    """Skip (saying why) when a file of ../shared is absent."""
    if not path.exists():
        pytest.skip(f"real data {path} is not present (../shared is laid beside the checkout in dev and CI)")
    return path


@pytest.fixture(scope="session")
def ckpt_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("ckpt")


@pytest.fixture(scope="session")
def seeded_ckpt(ckpt_dir):
    """Factory: path of a seeded checkpoint (randomised BN statistics) of a pose backbone."""
    from headpose.convert.checkpoint import seeded_checkpoint
    made = {}

    def make(model_id: str) -> Path:
        if model_id not in made:
            made[model_id] = seeded_checkpoint(model_id, ckpt_dir / f"{model_id}.pt", seed=1)
        return made[model_id]
    return make
