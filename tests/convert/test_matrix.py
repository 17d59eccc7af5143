"""``headpose convert-matrix``: rows from real artifacts, failures as rows, files written."""

from __future__ import annotations

import json

from headpose.cli import main
from headpose.convert.matrix import markdown, row_of


def test_row_of_a_real_artifact(artifact):
    d = artifact("mobilenetv3_small", "fp32")
    r = row_of("mobilenetv3_small", "fp32", "seeded", d)
    assert r["xnnpack_partitions"] == 1 and r["latency_ms_1thread"] > 0
    assert r["euler_max_deg"] < 0.05 and r["passed"] and r["mb"] > 1
    table = markdown([r], [{"command": "c", "machine": "m", "cpus": 2, "load_before": 0.1, "load_after": 0.2,
                            "date_utc": "now"}])
    assert "| mobilenetv3_small | seeded | fp32 |" in table and "✅" in table


def test_a_failed_conversion_is_a_row_and_exit_2(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    rc = main(["convert-matrix", "--models", "mobilenetv3_small", "--precisions", "fp32",
               "--weights", f"mobilenetv3_small={bad}", "--out", str(tmp_path / "m")])
    assert rc == 2
    rows = json.loads((tmp_path / "m" / "matrix.json").read_text())["rows"]
    assert rows[0]["weights"] == "given" and "bad.pt" in rows[0]["error"]
    assert "**failed**" in (tmp_path / "m" / "MATRIX.md").read_text()
    # --update keeps the rows of pairs not run again, and says which run each row comes from
    rc = main(["convert-matrix", "--models", "mobilenetv3_small", "--precisions", "fp16", "--update",
               "--weights", f"mobilenetv3_small={bad}", "--out", str(tmp_path / "m")])
    data = json.loads((tmp_path / "m" / "matrix.json").read_text())
    assert [(r["precision"], r["run"]) for r in data["rows"]] == [("fp32", 1), ("fp16", 0)]
    assert len(data["runs"]) == 2
