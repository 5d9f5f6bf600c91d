"""The model comparison table reads evaluation reports and training summaries as they are written."""

from __future__ import annotations

import json

from fanzha.training import compare


def test_table_has_one_row_per_model_with_the_measured_values(tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for d, f1, rate in ((a, 0.97, 0.22), (b, 0.99, 0.04)):
        d.mkdir()
        fanzha = {
            "test_fraud": {"f1": f1},
            "external": {"telecom_normal": {"flag_rate": rate, "block_rate": rate / 2}},
        }
        (d / "metrics.json").write_text(json.dumps({"systems": {"fanzha": fanzha}}))
    (b / "training_summary.json").write_text(
        json.dumps({"best_dev_score": 0.95, "best_epoch": 2, "wall_time_s": 600, "history": [{}, {}]})
    )
    table = compare.main(["old=" + str(a), "new=" + str(b), "--output", str(tmp_path / "t.md")])
    rows = [line.split(" | ") for line in table.splitlines()[2:]]
    header = table.splitlines()[0].split(" | ")
    assert [r[0] for r in rows] == ["| old", "| new"]
    col = header.index("label00 review+block")
    assert rows[0][col] == "0.2200" and rows[1][col] == "0.0400"
    assert rows[1][header.index("dev score")] == "0.9500" and rows[0][header.index("dev score")] == "—"
    assert rows[1][header.index("epochs (best)")] == "2 (2)"
    assert (tmp_path / "t.md").read_text() == table
