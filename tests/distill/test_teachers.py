"""Teacher wrappers on real crops, and their error paths."""

import numpy as np
import pytest

from headpose.runtime.errors import InputError
from headpose.runtime.rotation import euler_from_rotation

from tests.distill.conftest import FSANET


def test_fsanet_pair_on_real_crops(small_cropset, fsanet):
    cs = small_cropset
    each = fsanet.degrees_each(np.asarray(cs.base))
    assert each.shape == (2, len(cs), 3)
    np.testing.assert_allclose(fsanet.degrees(np.asarray(cs.base)), each.mean(axis=0))
    # the two variants agree to a few degrees on real faces (they are trained on the same labels)
    assert np.abs(each[0] - each[1]).mean() < 6.0
    # but they are different models
    assert np.abs(each[0] - each[1]).mean() > 0.1
    r = fsanet.rotations(np.asarray(cs.base))
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-9)
    ypr = fsanet.degrees(np.asarray(cs.base))
    np.testing.assert_allclose(euler_from_rotation(r), ypr[:, [1, 0, 2]], atol=1e-6)
    # the crop set stored the same labels
    np.testing.assert_allclose(cs.R, r, atol=1e-5)
    # faces in the classroom video turn far both ways: the teacher sees that
    assert ypr[:, 0].max() - ypr[:, 0].min() > 60


def test_fsanet_frontal_photo(fsanet, small_cropset):
    cs = small_cropset
    idx = [i for i, g in enumerate(cs.meta["frames"]) if g.endswith("single_face.jpg")]
    assert len(idx) == 1
    yaw, pitch, roll = fsanet.degrees(np.asarray(cs.base)[idx])[0]
    assert abs(yaw) < 20 and abs(roll) < 15


def test_blob_is_bgr_64(fsanet):
    crops = np.zeros((2, 224, 224, 3), np.uint8)
    crops[..., 0] = 255  # red in RGB
    x = fsanet.blob(crops)
    assert x.shape == (2, 3, 64, 64) and x.dtype == np.float32
    assert x[:, 2].min() == pytest.approx((255 - 127.5) / 128)  # red is the last channel in BGR
    assert x[:, 0].max() == pytest.approx(-127.5 / 128)


def test_make_teacher_errors(tmp_path):
    from headpose.distill.teachers import make_teacher
    with pytest.raises(InputError, match="no teacher"):
        make_teacher([])
    with pytest.raises(InputError, match="does not exist"):
        make_teacher([str(tmp_path / "missing.onnx")])
    with pytest.raises(InputError, match="only ONNX files can be averaged"):
        make_teacher([str(FSANET[0]), str(tmp_path / "a.pt")])
    with pytest.raises(InputError, match="does not exist"):
        make_teacher([str(tmp_path / "a.pt")])
    with pytest.raises(InputError, match="uint8 RGB"):
        from headpose.distill.teachers import OnnxDegreesTeacher
        OnnxDegreesTeacher([FSANET[0]]).degrees(np.zeros((1, 64, 64, 3), np.float32))


def test_checkpoint_teacher(seeded_ckpt, small_cropset):
    from headpose.distill.teachers import CheckpointTeacher, make_teacher
    path = seeded_ckpt("mobilenetv3_small")
    t = make_teacher([str(path)])  # the backbone is recognised from the keys
    assert isinstance(t, CheckpointTeacher) and t.model_id == "mobilenetv3_small"
    r = t.rotations(np.asarray(small_cropset.base[:4]))
    assert r.shape == (4, 3, 3)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-6)
    t2 = make_teacher([f"mobilenetv3_small={path}"])
    np.testing.assert_allclose(t2.rotations(np.asarray(small_cropset.base[:4])), r, atol=1e-6)


@pytest.mark.slow
def test_artifact_teacher_matches_its_checkpoint(artifact, seeded_ckpt, small_cropset):
    """A converted fp32 artifact as teacher/predictor gives the rotations of its source checkpoint."""
    from headpose.distill.evaluate import load_predictor
    from headpose.distill.teachers import ArtifactTeacher, make_teacher
    art = artifact("mobilenetv3_small", "fp32")
    t = make_teacher([str(art)])
    assert isinstance(t, ArtifactTeacher)
    crops = np.asarray(small_cropset.base[:8])
    ref = load_predictor(seeded_ckpt("mobilenetv3_small")).rotations(crops)
    from headpose.runtime.rotation import geodesic_deg
    assert geodesic_deg(t.rotations(crops), ref).max() < 0.05
