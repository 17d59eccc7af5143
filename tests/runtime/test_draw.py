"""Axis and cube drawing: upstream geometry, NumPy fallback equals OpenCV."""

import numpy as np
import pytest

from headpose.runtime import draw
from headpose.runtime.draw import annotate, axis_points, cube_edges, draw_axis, draw_cube, draw_line
from headpose.runtime.errors import InputError

cv2 = pytest.importorskip("cv2", reason="OpenCV is needed to compare the NumPy drawing with cv2.line")


def test_axis_points_at_zero_pose():
    c, xe, ye, ze = axis_points(0, 0, 0, [100, 100, 300, 260], 0.5)
    assert c == (200, 180)
    assert xe == (280, 180) and ye == (200, 260) and ze == (200, 180)  # size = 0.5 * min(200, 160)


def test_axis_yaw_moves_z_axis_sideways():
    # upstream negates yaw: a positive yaw puts the z tip to the left of the centre
    c, _, _, ze = axis_points(30, 0, 0, [0, 0, 200, 200])
    assert ze[0] < c[0]


def test_cube_has_twelve_edges_closing_on_the_far_corner():
    edges = list(cube_edges(10, 20, 5, [50, 50, 250, 250], 120))
    assert len(edges) == 12
    ends = [e[1] for e in edges]
    far = max(set(ends), key=ends.count)
    assert ends.count(far) == 3  # three edges meet at the far corner


@pytest.mark.parametrize("fn", ["axis", "cube"])
def test_numpy_lines_match_opencv(fn):
    a = np.zeros((300, 300, 3), np.uint8)
    b = a.copy()
    args = (25.0, -10.0, 8.0, [60, 60, 240, 250])
    if fn == "axis":
        draw_axis(a, *args, use_opencv=True)
        draw_axis(b, *args, use_opencv=False)
    else:
        draw_cube(a, *args, size=100, use_opencv=True)
        draw_cube(b, *args, size=100, use_opencv=False)
    ma, mb = a.any(axis=2), b.any(axis=2)
    iou = (ma & mb).sum() / (ma | mb).sum()
    assert ma.sum() > 100 and iou > 0.6, iou
    # every NumPy pixel lies within 1 px of an OpenCV pixel
    grown = cv2.dilate(ma.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert (mb & ~grown).sum() == 0


def test_line_outside_the_image_is_clipped():
    img = np.zeros((50, 50, 3), np.uint8)
    draw_line(img, (-1000, 25), (1000, 25), (0, 0, 255), 2, use_opencv=False)
    assert img[25, :, 2].all() and img[:, :, :2].sum() == 0


def test_annotate_modes_and_rgb_colours():
    class F:
        track_id, box, yaw, pitch, roll = 1, np.array([40, 40, 120, 140.0]), 0.0, 0.0, 0.0
    img = np.zeros((200, 200, 3), np.uint8)
    annotate(img, [F()], "axis", color="RGB", use_opencv=False)
    # x axis (red) runs right from the centre of the expanded box; red is channel 0 in RGB
    ex = draw.expand_box(F.box, 0.2)
    cy = int(ex[1] + (ex[3] - ex[1]) * 0.5)
    cx = int(ex[0] + (ex[2] - ex[0]) * 0.5)
    assert img[cy, cx + 10, 0] == 255 and img[cy, cx + 10, 2] == 0
    with pytest.raises(InputError, match="draw mode"):
        annotate(img, [F()], "sphere")
