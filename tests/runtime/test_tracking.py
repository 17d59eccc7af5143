"""IoU tracker: stable ids, new ids, dropped tracks, carried boxes."""

import numpy as np

from headpose.runtime.tracking import IoUTracker


def dets(*boxes):
    d = np.array([[*b, 0.9] for b in boxes], np.float32).reshape(-1, 5)
    return d, np.zeros((len(d), 5, 2), np.float32)


def test_ids_stable_while_faces_move_a_little():
    tr = IoUTracker()
    a, b = [100, 100, 200, 220], [400, 120, 480, 210]
    first = [t.track_id for t in tr.update(*dets(a, b))]
    assert first == [1, 2]
    for k in range(1, 20):  # drift 2 px per frame, and the detector order swaps
        a2 = [v + 2 * k for v in a]
        b2 = [v - 2 * k for v in b]
        ids = [t.track_id for t in tr.update(*dets(b2, a2))]
        assert ids == [2, 1]


def test_new_face_new_id_and_missing_face_dropped():
    tr = IoUTracker(max_missed=1)
    tr.update(*dets([0, 0, 50, 50]))
    ids = [t.track_id for t in tr.update(*dets([0, 0, 50, 50], [300, 300, 360, 360]))]
    assert ids == [1, 2]
    tr.update(*dets([300, 300, 360, 360]))  # face 1 missed once: kept, not carried
    assert [t.track_id for t in tr.carried()] == [2]
    assert [t.track_id for t in tr.update(*dets([1, 1, 51, 51], [300, 300, 360, 360]))] == [1, 2]  # id restored
    tr.update(*dets([300, 300, 360, 360]))
    tr.update(*dets([300, 300, 360, 360]))
    assert tr.dropped == [1]
    assert [t.track_id for t in tr.update(*dets([0, 0, 50, 50]))] == [3]  # ids are never reused


def test_carried_boxes_are_the_last_detection():
    tr = IoUTracker()
    tr.update(*dets([10, 10, 60, 70]))
    (t,) = tr.carried()
    np.testing.assert_array_equal(t.box, [10, 10, 60, 70])


def test_empty_frames():
    tr = IoUTracker()
    assert tr.update(*dets()) == []
    assert tr.carried() == []
