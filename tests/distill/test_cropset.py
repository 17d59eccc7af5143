"""Crop sets: source strings, context crops that re-cut the runtime crop, save/load, caching."""

import numpy as np
import pytest

from headpose.distill.cropset import cached_cropset, load_cropset, parse_source, render
from headpose.runtime.errors import InputError

from tests.distill.conftest import DETECTOR, FSANET


def test_parse_source():
    assert parse_source("v.mp4") == ("v.mp4", 1, 0, None)
    assert parse_source("v.mp4#0:260@2") == ("v.mp4", 2, 0, 260)
    assert parse_source("x/demo@obama/obama.mp4@3") == ("x/demo@obama/obama.mp4", 3, 0, None)
    assert parse_source("v.mp4#260:") == ("v.mp4", 1, 260, None)
    with pytest.raises(InputError):
        parse_source("v.mp4@0")


def test_render_recuts_the_runtime_crop(small_cropset):
    cs = small_cropset
    assert cs.base.shape[1:] == (224, 224, 3) and cs.base.dtype == np.uint8
    assert len(cs) >= 10
    diffs = [np.abs(render(cs.ctx[i], cs.centre[i], cs.half[i]).astype(float) - cs.base[i]).mean()
             for i in range(len(cs))]
    # same pixels up to resampling (faces clipped by the frame edge differ more: replicate vs clip)
    assert np.median(diffs) < 2.0
    # a shifted crop is really different
    moved = render(cs.ctx[0], cs.centre[0], cs.half[0], shift=(0.2, 0.0))
    assert np.abs(moved.astype(float) - cs.base[0]).mean() > 5 * np.median(diffs)


def test_render_rotation_matches_rotating_the_crop(small_cropset):
    """Rendering at theta equals OpenCV's rotation of the (context) picture about the crop centre."""
    import cv2
    cs = small_cropset
    i = int(np.argmax(cs.half.min(axis=1)))
    c = cs.ctx[i]
    cx, cy = cs.centre[i]
    rot_ctx = cv2.warpAffine(c, cv2.getRotationMatrix2D((float(cx) - 0.5, float(cy) - 0.5), 20, 1.0), c.shape[1::-1],
                             flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    a = render(c, cs.centre[i], cs.half[i], theta=20).astype(float)
    b = render(rot_ctx, cs.centre[i], cs.half[i]).astype(float)
    assert np.abs(a - b)[20:-20, 20:-20].mean() < 3.0
    wrong = render(c, cs.centre[i], cs.half[i], theta=-20).astype(float)
    assert np.abs(wrong - b)[20:-20, 20:-20].mean() > 3 * np.abs(a - b)[20:-20, 20:-20].mean()


def test_saved_set_roundtrip(small_cropset):
    cs = small_cropset
    assert cs.R.shape == (len(cs), 3, 3) and cs.each.shape == (2, len(cs), 3)
    assert len(cs.meta["frames"]) == len(cs)
    assert set(cs.groups()) == set(cs.meta["sources"])
    sub = cs.subset(np.arange(3))
    assert len(sub) == 3 and sub.each.shape == (2, 3, 3)


def test_cached_cropset_reuses_and_rebuilds(tmp_path):
    from tests.conftest import IMAGES, need_shared
    need_shared(IMAGES)
    src = [str(IMAGES / "single_face.jpg")]
    folder = tmp_path / "c"
    a = cached_cropset(src, folder, DETECTOR, [str(p) for p in FSANET], progress=False)
    stamp = (folder / "base.npy").stat().st_mtime_ns
    b = cached_cropset(src, folder, DETECTOR, [str(p) for p in FSANET], progress=False)
    assert (folder / "base.npy").stat().st_mtime_ns == stamp and len(a) == len(b) == 1
    c = cached_cropset(src + [str(IMAGES / "emma.jpg")], folder, DETECTOR, [str(p) for p in FSANET], progress=False)
    assert len(c) > 1 and set(c.groups()) == set(src + [str(IMAGES / "emma.jpg")])


def test_errors(tmp_path):
    with pytest.raises(InputError, match="not a crop set"):
        load_cropset(tmp_path)
    with pytest.raises(InputError, match="face detector"):
        cached_cropset(["x.jpg"], tmp_path / "c", tmp_path / "none.onnx", [str(p) for p in FSANET])
