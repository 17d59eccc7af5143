"""Calibration / gate data split by source (never frames of one video on both sides), explicit
--gate-data, the too-few-faces message, and the geodesic int8 gate with its per-yaw-bin figures.

The data tests find real faces with SCRFD (ONNX Runtime) in ../shared; they build no artifact."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from headpose.convert import calibration as cal
from headpose.convert.int8_gate import YAW_BINS, angle_errors, passes, yaw_bins
from headpose.runtime.errors import InputError
from headpose.runtime.registry import get_spec
from headpose.runtime.rotation import rotation_from_euler
from tests.conftest import DATA, IMAGES, VIDEO, WEIGHTS, need_shared

DRIVING = DATA / "more" / "liveportrait" / "assets" / "examples" / "driving" / "d0.mp4"  # 78 frames, one person
TALK = DATA / "more" / "video_retalking" / "examples" / "face" / "5.mp4"                 # 122 frames, another


def _units(counts):
    return [cal.UnitFaces(f"u{i}", f"{(i * 7919) % 97:064x}", np.zeros((n, 2, 2, 3), np.uint8), n)
            for i, n in enumerate(counts)]


def test_split_moves_whole_sources_and_reaches_both_counts():
    units = _units([300, 40, 50, 30, 120, 10, 0])
    calib, gate = cal.split_by_source(units)
    names_c, names_g = {u.name for u in calib}, {u.name for u in gate}
    assert not names_c & names_g  # no source on both sides
    assert names_c | names_g == {u.name for u in units if len(u.crops)}  # the empty one is in neither
    n_c, n_g = sum(len(u.crops) for u in calib), sum(len(u.crops) for u in gate)
    assert n_c >= cal.MIN_CALIBRATION and n_g >= cal.MIN_GATE
    assert n_g >= round(cal.GATE_SHARE * (n_c + n_g)) or n_c - min(len(u.crops) for u in calib) < cal.MIN_CALIBRATION
    again = cal.split_by_source(list(reversed(units)))  # the order given does not matter: sha256 order
    assert {u.name for u in again[1]} == names_g


def test_split_refuses_what_cannot_be_split():
    assert cal.split_by_source(_units([400])) is None          # one source: nothing for the gate
    assert cal.split_by_source(_units([210, 30])) is None       # gate would be < 64
    assert cal.split_by_source(_units([150, 150])) is None      # calibration would be < 200
    calib, gate = cal.split_by_source(_units([200, 64]))
    assert [len(u.crops) for u in calib] == [200] and [len(u.crops) for u in gate] == [64]


def test_sources_lists_and_units(tmp_path):
    need_shared(VIDEO)
    lst = tmp_path / "sources.txt"
    lst.write_text(f"# calibration sources\n{VIDEO}\n\n{IMAGES}  # three photos\n{VIDEO}\n")
    paths = cal.expand_sources([lst])
    assert paths == [VIDEO, IMAGES]  # repeats once, comments dropped
    units = cal.source_units(paths)
    assert units[0] == VIDEO and sorted(u.name for u in units[1:]) == ["emma.jpg", "single_face.jpg",
                                                                         "trump_hillary.jpg"]
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(InputError, match="names no source"):
        cal.expand_sources(tmp_path / "empty.txt")
    with pytest.raises(InputError, match="does not exist"):
        cal.expand_sources([VIDEO, tmp_path / "missing.mp4"])


@pytest.fixture(scope="module")
def detector():
    return need_shared(WEIGHTS / "scrfd_500m_bnkps.onnx")


def _normalised(crops, spec):
    from headpose.runtime.preprocess import normalise, to_color
    return normalise(to_color(crops.astype(np.float32), "RGB", spec.color), spec.mean, spec.std)


def test_several_sources_split_by_source(detector):
    for p in (VIDEO, DRIVING, TALK, IMAGES):
        need_shared(p)
    spec = get_spec("mobilenetv3_small")
    data = cal.pose_data(spec, [VIDEO, DRIVING, TALK, IMAGES], 224, True, detector)
    info = data.info
    assert info["split"] == "by_source" and info["parity_disjoint"] is True
    sets = info["sets"]
    c_names = [s["name"] for s in sets["calibration"]["sources"]]
    g_names = [s["name"] for s in sets["gate"]["sources"]]
    assert not set(c_names) & set(g_names)
    assert str(VIDEO) in c_names  # the only source that leaves >= 200 crops for calibration
    assert {str(DRIVING), str(TALK)} <= set(g_names)  # moved whole to the gate (share 25 %, >= 64)
    for s in sets["calibration"]["sources"] + sets["gate"]["sources"]:
        assert len(s["sha256"]) == 64 and s["faces"] >= 1
    assert sets["gate"]["faces"] == sum(s["faces"] for s in sets["gate"]["sources"]) >= cal.MIN_GATE
    assert len(data.calibration) == sets["calibration"]["samples"] == cal.N_CALIBRATION
    assert len(data.parity) == sets["gate"]["samples"] == min(cal.N_GATE_CROPS, sets["gate"]["faces"])
    # the gate crops are exactly the gate sources' crops: none comes from the calibration video
    margin = spec.decode["crop"]["margin"]
    video = {c.tobytes() for c in _normalised(cal._unit_faces(VIDEO, detector, 224, margin).crops, spec)}
    talk = {c.tobytes() for c in _normalised(cal._unit_faces(TALK, detector, 224, margin).crops, spec)}
    gate = [g.tobytes() for g in data.parity]
    assert not any(g in video for g in gate) and any(g in talk for g in gate)
    assert all(c.tobytes() in video for c in data.calibration)


def test_explicit_gate_data_and_overlap(detector, tmp_path):
    for p in (VIDEO, DRIVING, TALK, IMAGES):
        need_shared(p)
    spec = get_spec("mobilenetv3_small")
    data = cal.pose_data(spec, VIDEO, 224, True, detector, gate=[DRIVING, TALK])
    sets = data.info["sets"]
    assert data.info["split"] == "gate_data"
    assert [s["name"] for s in sets["calibration"]["sources"]] == [str(VIDEO)]
    assert [s["name"] for s in sets["gate"]["sources"]] == [str(DRIVING), str(TALK)]
    copy = tmp_path / "same_video.mp4"
    shutil.copy(VIDEO, copy)  # the calibration video under another name
    with pytest.raises(InputError, match="--gate-data must hold sources not used for calibration.*same_video"):
        cal.pose_data(spec, [VIDEO, IMAGES], 224, True, detector, gate=[copy, TALK])
    with pytest.raises(InputError, match=r"the int8 gate needs at least 64 real face crops.*images.*gave \d:"):
        cal.pose_data(spec, VIDEO, 224, True, detector, gate=IMAGES)


def test_too_few_faces_says_how_many(detector):
    for p in (IMAGES, DRIVING):
        need_shared(p)
    spec = get_spec("mobilenetv3_small")
    with pytest.raises(InputError) as e:
        cal.pose_data(spec, [IMAGES, DRIVING], 224, True, detector)
    msg = str(e.value)
    assert "at least 200" in msg and "64 more from other sources" in msg and ": 264 in all" in msg
    import re
    total = int(re.search(r"sources given hold (\d+) \(", msg).group(1))
    per = [int(v) for v in re.findall(r": (\d+)(?:,|\))", msg.split("hold", 1)[1])]
    assert len(per) == 4 and sum(per) == total < 264  # three photos + the 78 frames of d0, each counted
    assert "--gate-data" in msg and "--calib" in msg


def test_one_source_keeps_the_frame_split(detector):
    need_shared(VIDEO)
    data = cal.pose_data(get_spec("mobilenetv3_small"), VIDEO, 224, True, detector)
    info = data.info
    assert info["split"] == "frames_of_one_source" and info["parity_disjoint"] is True
    assert info["source"] == str(VIDEO) and info["samples"] == cal.N_CALIBRATION
    assert len(data.parity) == cal.N_PARITY_CROPS
    assert info["sets"]["calibration"]["sources"][0]["sha256"] == info["sha256"]


# -- the gate's one measure -------------------------------------------------------------------------------

def _six(r):
    return np.concatenate([r[:, :, 0], r[:, :, 1]], axis=1)


def test_geodesic_gate_and_yaw_bins():
    yaw = np.array([-80.0, -45.0, -10.0, 0.0, 5.0, 20.0, 35.0, 59.5, 60.5, 75.0])
    n = len(yaw)
    ref = rotation_from_euler(np.zeros(n), yaw, np.zeros(n))
    err = np.array([4.0, 2.0, 0.1, 0.1, 0.1, 0.1, 2.0, 2.0, 4.0, 4.0])  # degrees of roll added per crop
    test = rotation_from_euler(np.zeros(n), yaw, err)
    fig = angle_errors(ref, _six(test))
    assert fig["geodesic_mean_deg"] == pytest.approx(err.mean(), abs=1e-3)
    assert fig["geodesic_max_deg"] == pytest.approx(4.0, abs=1e-3)
    bins = fig["by_yaw_bin"]
    assert list(bins) == [b[0] for b in YAW_BINS]
    assert bins["abs_yaw_lt_30"]["n"] == 4 and bins["abs_yaw_lt_30"]["geodesic_mean_deg"] == pytest.approx(0.1, abs=1e-3)
    assert bins["abs_yaw_30_60"]["n"] == 3 and bins["abs_yaw_30_60"]["geodesic_max_deg"] == pytest.approx(2.0, abs=1e-3)
    assert bins["abs_yaw_ge_60"]["n"] == 3 and bins["abs_yaw_ge_60"]["geodesic_mean_deg"] == pytest.approx(4.0, abs=1e-3)
    # judged on the geodesic mean and p99: per-axis mean (~1/3 here) would pass a 1.0 limit, geodesic does not
    assert fig["axis_mean_deg"] < 1.0 < fig["geodesic_mean_deg"]
    assert not passes(fig, 1.0, 5.0) and passes(fig, 2.0, 5.0) and not passes(fig, 2.0, 3.0)
    empty = yaw_bins(np.array([1.0]), np.array([10.0]))
    assert empty["abs_yaw_ge_60"] == {"n": 0, "geodesic_mean_deg": None, "geodesic_p99_deg": None,
                                      "geodesic_max_deg": None}
