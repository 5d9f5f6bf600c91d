"""One table comparing candidate models from their evaluation reports (`fanzha.training.evaluate` metrics.json).

    python -m fanzha.training.compare --output reports/MODEL_COMPARISON.md \
        "6L, corpus v3=reports/history/v3" "6L, corpus r4=runs/eval-r4"

Each argument is `name=directory`; the directory holds metrics.json and, when present, training_summary.json
(dev score, epochs, wall time). The model is chosen on dev; the other columns are reported as measured.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

COLUMNS = [
    ("dev score", lambda m, t: t.get("best_dev_score")),
    ("epochs (best)", lambda m, t: f"{len(t['history'])} ({t['best_epoch']})" if t.get("history") else None),
    ("train wall min", lambda m, t: round(t["wall_time_s"] / 60, 1) if t.get("wall_time_s") else None),
    ("test fraud F1", lambda m, t: m["test_fraud"]["f1"]),
    ("test label macro-F1", lambda m, t: m.get("test_label_macro_f1")),
    ("hard-neg FPR", lambda m, t: m.get("hard_negative_fpr")),
    ("max evasion drop (pts)", lambda m, t: m.get("max_evasion_recall_drop_points")),
    ("telecom fraud recall", lambda m, t: m.get("telecom_fraud_recall")),
    ("label00 review+block", lambda m, t: _ext(m, "telecom_normal", "flag_rate")),
    ("label00 block", lambda m, t: _ext(m, "telecom_normal", "block_rate")),
    ("msgpass review+block", lambda m, t: _ext(m, "msglog_pass", "flag_rate")),
    ("msgpass block", lambda m, t: _ext(m, "msglog_pass", "block_rate")),
    ("msgspam review+block", lambda m, t: _ext(m, "msglog_spam", "flag_rate")),
]


def _ext(m: dict, name: str, key: str):
    return m.get("external", {}).get(name, {}).get(key)


def row(name: str, directory: Path) -> list[str]:
    metrics = json.loads((directory / "metrics.json").read_text())["systems"]["fanzha"]
    summary_path = directory / "training_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    cells = []
    for _, get in COLUMNS:
        try:
            value = get(metrics, summary)
        except (KeyError, TypeError):
            value = None
        cells.append("—" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value)))
    return [name, *cells]


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="name=directory with metrics.json (and training_summary.json)")
    p.add_argument("--output", default=None, help="write the Markdown table here (default: stdout only)")
    args = p.parse_args(argv)
    lines = ["| model | " + " | ".join(c for c, _ in COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for spec in args.models:
        name, _, directory = spec.partition("=")
        lines.append("| " + " | ".join(row(name, Path(directory))) + " |")
    table = "\n".join(lines) + "\n"
    print(table)
    if args.output:
        Path(args.output).write_text(table, encoding="utf-8")
    return table


if __name__ == "__main__":
    main()
