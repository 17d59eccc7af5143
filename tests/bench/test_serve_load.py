"""benchmarks/serve_load.py: the summary parsing and the comparison (the measurement itself is the benchmark's)."""

from headpose.benchmarks.serve_load import CONFIGS, parse_summary, summarise, table


def test_parse_summary_reads_the_run_line():
    out = ("headpose run: live view at http://127.0.0.1:4242/\n"
           "headpose run: 120 frames, 800 faces, 7.3 FPS end-to-end (16.4 s); mean ms per frame: detector 70.1\n")
    assert parse_summary(out) == (120, round(120 / 16.4, 3))
    assert parse_summary("headpose run: error") is None


def test_summarise_compares_medians_with_no_serve():
    s = summarise({"no-serve": [10.0, 9.0, 11.0], "slow-viewer": [9.5, 9.8, 9.9], "serve-idle": [10.0]})
    assert s["no-serve"]["fps_median"] == 10.0 and s["no-serve"]["change_pct"] == 0.0
    assert s["slow-viewer"]["fps_median"] == 9.8 and s["slow-viewer"]["change_pct"] == -2.0
    rows = table(s).splitlines()
    assert len(rows) == 2 + 3 and "-2.0 %" in rows[3] and CONFIGS[0] == "no-serve"
    c = summarise({"no-serve": [10.0], "fast-viewer": [9.0]}, {"no-serve": [20.0], "fast-viewer": [21.0]}, frames=100)
    assert c["fast-viewer"]["extra_cpu_ms_per_frame"] == 10.0 and "+10.0" in table(c)
