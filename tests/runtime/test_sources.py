"""Frame sources on the real video and images; retries of a live source that fails."""

import shutil

import numpy as np
import pytest

from headpose.runtime.sources import CaptureSource, ImagesSource, SourceError, open_source
from tests.conftest import IMAGES, VIDEO, need_shared

pytest.importorskip("cv2", reason="sources read files with OpenCV")


def test_video_file():
    need_shared(VIDEO)
    with open_source(str(VIDEO)) as src:
        assert not src.live and src.length == 329 and src.fps == pytest.approx(25.0, abs=0.5)
        frames = []
        for fr in src:
            frames.append(fr)
            if len(frames) == 3:
                break
    assert [f.index for f in frames] == [0, 1, 2]
    assert frames[0].image.shape == (720, 1280, 3) and frames[0].image.dtype == np.uint8
    assert frames[2].timestamp == pytest.approx(2 / src.fps)


def test_image_and_folder():
    need_shared(IMAGES)
    one = open_source(str(IMAGES / "emma.jpg"))
    assert isinstance(one, ImagesSource) and len(list(one)) == 1
    names = [f.name for f in open_source(str(IMAGES))]
    assert names == sorted(str(p) for p in IMAGES.glob("*.jpg"))


def test_missing_and_unreadable(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "nope.mp4"))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(SourceError, match="could not be opened|no frame could be decoded"):
        list(open_source(str(bad)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="holds no images"):
        open_source(str(tmp_path / "empty"))
    badimg = tmp_path / "x.jpg"
    badimg.write_bytes(b"not a jpeg")
    with pytest.raises(SourceError, match="could not be read"):
        list(open_source(str(badimg)))


def test_truncated_video_file_ends_with_a_warning(tmp_path, caplog):
    need_shared(VIDEO)
    cut = tmp_path / "cut.mp4"
    data = VIDEO.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    n = sum(1 for _ in CaptureSource(str(cut), live=False))
    assert 0 < n < 329


def test_live_source_that_disappears_is_retried_then_fails(tmp_path):
    """A 'camera' (live capture) whose file vanishes mid-run: retries, then a clear SourceError."""
    need_shared(VIDEO)
    cam = tmp_path / "cam.mp4"
    shutil.copy(VIDEO, cam)
    src = CaptureSource(str(cam), live=True, retries=2, retry_delay=0.01)
    got = 0
    with pytest.raises(SourceError, match="stopped delivering frames: 2 retries failed"):
        for fr in src:
            got += 1
            if got == 5:
                src.cap.release()  # the device goes away ...
                cam.unlink()  # ... and does not come back
    assert got == 5
    src.close()


def test_live_source_that_comes_back_continues(tmp_path):
    need_shared(VIDEO)
    src = CaptureSource(str(VIDEO), live=True, retries=2, retry_delay=0.01)
    got = []
    for fr in src:
        got.append(fr.image)
        if len(got) == 3:
            src.cap.release()  # a closed capture: re-opened by the retry logic
        if len(got) == 6:
            break
    src.close()
    assert len(got) == 6 and all(g.shape == (720, 1280, 3) for g in got)


def test_picamera_without_picamera2_is_a_clear_error():
    try:
        import picamera2  # noqa: F401
        pytest.skip("picamera2 is installed here; this checks the message where it is not")
    except ImportError:
        pass
    with pytest.raises(SourceError, match="apt install python3-picamera2"):
        open_source("picamera")
