import numpy as np
import pytest

from headpose.runtime.rotation import (angle_difference_deg, euler_from_6d, euler_from_rotation, geodesic_deg,
                                       rotation_from_6d, rotation_from_euler)


def test_known_rotations():
    # yaw 90 about y maps x -> -z
    r = rotation_from_euler(0, 90, 0)
    np.testing.assert_allclose(r @ [1, 0, 0], [0, 0, -1], atol=1e-12)
    # roll 90 about z maps x -> y
    np.testing.assert_allclose(rotation_from_euler(0, 0, 90) @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    # pitch 90 about x maps y -> z
    np.testing.assert_allclose(rotation_from_euler(90, 0, 0) @ [0, 1, 0], [0, 0, 1], atol=1e-12)


def test_euler_roundtrip():
    rng = np.random.default_rng(0)
    ang = np.stack([rng.uniform(-170, 170, 500), rng.uniform(-89, 89, 500), rng.uniform(-170, 170, 500)], 1)
    r = rotation_from_euler(ang[:, 0], ang[:, 1], ang[:, 2])
    np.testing.assert_allclose(euler_from_rotation(r), ang, atol=1e-9)


def test_6d_gram_schmidt_matches_upstream_definition():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(64, 6)) * rng.uniform(0.1, 10, size=(64, 1))
    r = rotation_from_6d(v)
    np.testing.assert_allclose(r @ np.transpose(r, (0, 2, 1)), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    # first column is the normalised first 3-vector; second column lies in span(a1, a2)
    np.testing.assert_allclose(r[:, :, 0], v[:, :3] / np.linalg.norm(v[:, :3], axis=1, keepdims=True), atol=1e-12)
    np.testing.assert_allclose(np.einsum("bi,bi->b", r[:, :, 2], v[:, 3:]), 0, atol=1e-9)
    # the 6D of a rotation is its first two columns: it maps back to the same rotation
    r0 = rotation_from_euler(10, -35, 5)
    v6 = np.concatenate([r0[:, 0], r0[:, 1]])
    np.testing.assert_allclose(rotation_from_6d(v6), r0, atol=1e-12)
    np.testing.assert_allclose(euler_from_6d(v6)[0], [10, -35, 5], atol=1e-9)


def test_matches_torch_reference():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    v = rng.normal(size=(32, 6))
    t = torch.tensor(v)
    x = torch.nn.functional.normalize(t[:, :3], dim=1)
    z = torch.nn.functional.normalize(torch.linalg.cross(x, t[:, 3:]), dim=1)
    y = torch.linalg.cross(z, x)
    np.testing.assert_allclose(rotation_from_6d(v), torch.stack([x, y, z], 2).numpy(), atol=1e-12)


def test_gimbal_lock_and_distances():
    e = euler_from_rotation(rotation_from_euler(30, 90, 0))
    assert abs(e[1] - 90) < 1e-6 and e[2] == 0.0
    r = rotation_from_euler([0, 0], [0, 0], [0, 30])
    np.testing.assert_allclose(geodesic_deg(r[:1], r[1:]), [30], atol=1e-9)
    np.testing.assert_allclose(angle_difference_deg([179, -10], [-179, 10]), [2, 20])


def test_rotation_error_components_and_norm():
    import numpy as np
    from headpose.runtime.rotation import geodesic_deg, rotation_error_deg, rotation_from_euler
    rng = np.random.default_rng(1)
    p, y, r = rng.uniform(-60, 60, (3, 50))
    ref = rotation_from_euler(p, y, r)
    np.testing.assert_allclose(rotation_error_deg(ref, ref), 0, atol=1e-9)
    # a roll change is a turn about the camera's z axis, whatever the pose
    e = rotation_error_deg(ref, rotation_from_euler(p, y, r + 2.0))
    np.testing.assert_allclose(e, np.tile([0, 0, 2.0], (50, 1)), atol=1e-9)
    # its norm is the geodesic distance, for small and large errors
    other = rotation_from_euler(p + 30, y - 20, r + 5)
    np.testing.assert_allclose(np.linalg.norm(rotation_error_deg(ref, other), axis=1), geodesic_deg(ref, other),
                               atol=1e-6)
