"""Thermal / clock / throttling readers and the sustained-mode window recorder."""

import pytest

from headpose.benchmarks.sustained import (SustainedRecorder, cpu_temperature, decode_throttled,
                                           environment_sample, parse_throttled, parse_vc_temp, read_cpu_mhz,
                                           read_thermal_zones, sensors_available, summarize_windows)


def test_decode_throttled_pi_bits():
    f = decode_throttled(0x50005)  # under-voltage now + throttled now, both also "occurred"
    assert f["under_voltage_now"] and f["throttled_now"]
    assert f["under_voltage_occurred"] and f["throttled_occurred"]
    assert not f["freq_capped_now"] and not f["soft_temp_limit_now"] and not f["soft_temp_limit_occurred"]
    assert not any(decode_throttled(0).values())
    assert decode_throttled(0x80008)["soft_temp_limit_now"] and decode_throttled(0x80008)["soft_temp_limit_occurred"]


def test_parse_vcgencmd_output():
    assert parse_throttled("throttled=0x50005\n") == 0x50005
    assert parse_throttled("throttled=0x0") == 0
    assert parse_throttled("error") is None
    assert parse_vc_temp("temp=48.3'C\n") == 48.3
    assert parse_vc_temp("") is None


def _sysfs(tmp_path):
    """A directory laid out like /sys/class/thermal and /sys/devices/system/cpu."""
    th = tmp_path / "thermal"
    for i, (kind, milli) in enumerate([("acpitz", "41000"), ("x86_pkg_temp", "55500"), ("acpitz", "40000")]):
        z = th / f"thermal_zone{i}"
        z.mkdir(parents=True)
        (z / "type").write_text(kind + "\n")
        (z / "temp").write_text(milli + "\n")
    (th / "cooling_device0").mkdir()
    cpu = tmp_path / "cpu"
    for i, khz in enumerate(["1800000", "600000"]):
        d = cpu / f"cpu{i}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_cur_freq").write_text(khz + "\n")
    (cpu / "cpufreq").mkdir()  # not a cpuN folder
    return str(th), str(cpu)


def test_thermal_and_cpufreq_readers(tmp_path):
    th, cpu = _sysfs(tmp_path)
    zones = read_thermal_zones(th)
    assert zones == {"acpitz": 41.0, "x86_pkg_temp": 55.5, "acpitz#2": 40.0}
    assert cpu_temperature(zones) == 55.5           # the CPU package zone wins over acpitz
    assert cpu_temperature({"gpu": 30.0, "board": 35.0}) == 35.0   # else the hottest
    assert cpu_temperature({}) is None
    assert read_cpu_mhz(cpu) == {"cpu0": 1800.0, "cpu1": 600.0}
    s = environment_sample(th, cpu)
    if not sensors_available(th, cpu)["vcgencmd"]:  # on a Pi the firmware's reading takes precedence
        assert s["cpu_temp_c"] == 55.5
    assert s["cpu_mhz"] == 1200.0 and s["cpu_mhz_min"] == 600.0
    assert sensors_available(th, cpu)["thermal_zones"] and sensors_available(th, cpu)["cpufreq"]


def test_readers_on_missing_sources(tmp_path):
    assert read_thermal_zones(str(tmp_path / "none")) == {}
    assert read_cpu_mhz(str(tmp_path / "none")) == {}
    s = environment_sample(str(tmp_path / "none"), str(tmp_path / "none"))
    assert s["cpu_mhz"] is None


def test_environment_sample_on_this_machine():
    s = environment_sample()
    assert set(s) == {"cpu_temp_c", "cpu_mhz", "cpu_mhz_min", "throttled", "throttled_flags", "load1"}


def test_recorder_windows_and_summary():
    now = [0.0]
    temps = iter([50.0, 61.0, 70.0])
    now[0] = 5.0                 # construction (model loading, warm-up) happens long before the first frame
    rec = SustainedRecorder(window_s=1.0, clock=lambda: now[0],
                            sampler=lambda: {"cpu_temp_c": next(temps), "cpu_mhz": 1500.0,
                                             "throttled_flags": None})
    for i in range(8):           # 8 frames in 1 s, then 4 frames in 1 s, then a partial window
        now[0] += 0.125          # (the clock starts when the first frame began: 0.125 s - 125 ms)
        rec.frame(125.0)
    for _ in range(4):
        now[0] += 0.25
        rec.frame(250.0)
    now[0] += 0.5
    rec.frame(500.0)
    w = rec.finish()
    assert [x["frames"] for x in w] == [8, 4, 1]
    assert [x["fps"] for x in w] == [8.0, 4.0, 2.0]
    assert [x["t_s"] for x in w] == [1.0, 2.0, 2.5]
    assert w[0]["max_ms"] == 125.0 and w[1]["p50_ms"] == 250.0
    s = summarize_windows(w)
    assert s["fps_first"] == w[0]["fps"] and s["fps_last"] == w[-1]["fps"]
    assert s["temp_first_c"] == 50.0 and s["temp_max_c"] == 70.0
    assert s["fps_drop_pct"] > 0 and s["throttled_seen"] is None
    assert summarize_windows([]) == {}
