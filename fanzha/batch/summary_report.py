"""`fanzha summarize` (alias `fanzha report`): what a trust-and-safety lead reads after a re-scoring run.

    fanzha summarize verdicts.parquet                        # Markdown on stdout
    fanzha summarize verdicts.parquet --format html -o r.html

Counts per decision and label, errors by message, a fraud-score histogram and the top flagged items with
their evidence. Reads the output column batch by column batch (a million rows fit in flat memory: only
the top-N list and counters are kept).
"""

from __future__ import annotations

import heapq
import html
import json
from collections import Counter
from pathlib import Path

from fanzha.models.labels import LABELS

from .merge import iter_output

BINS = 10


def collect(path: Path, top: int) -> dict:
    decisions, labels, errors, kinds = Counter(), Counter(), Counter(), Counter()
    hist = [0] * BINS
    best: list[tuple[float, int, dict]] = []  # min-heap of the highest scores
    rows = 0
    columns = [
        "id",
        "source",
        "kind",
        "fraud_score",
        "labels",
        "decision",
        "evidence",
        "error",
        "model_version",
    ]
    versions = Counter()
    for batch in iter_output(path, columns=columns):
        for i in range(len(batch["id"])):
            rows += 1
            kinds[batch["kind"][i]] += 1
            if batch["error"][i] is not None:
                errors[batch["error"][i].split(":")[0]] += 1
                continue
            score = batch["fraud_score"][i]
            versions[batch["model_version"][i]] += 1
            decisions[batch["decision"][i]] += 1
            labels.update(batch["labels"][i] or [])
            hist[min(BINS - 1, int(score * BINS))] += 1
            if batch["decision"][i] != "pass" and top > 0:
                item = {
                    k: batch[k][i] for k in ("id", "source", "fraud_score", "labels", "decision", "evidence")
                }
                entry = (score, rows, item)
                if len(best) < top:
                    heapq.heappush(best, entry)
                elif score > best[0][0]:
                    heapq.heapreplace(best, entry)
    flagged = [item for _, _, item in sorted(best, key=lambda e: (-e[0], e[1]))]
    return {
        "rows": rows,
        "kinds": kinds,
        "decisions": decisions,
        "labels": labels,
        "errors": errors,
        "hist": hist,
        "top": flagged,
        "versions": versions,
    }


def _evidence(item: dict) -> str:
    evidence = item["evidence"]
    if isinstance(evidence, str):
        evidence = json.loads(evidence)
    return ", ".join(f"{e['kind']}={e['text']}" for e in (evidence or [])[:6])


def render_summary(path: Path, fmt: str = "md", top: int = 20) -> str:
    data = collect(path, top)
    scored = data["rows"] - sum(data["errors"].values())
    title = f"fanzha report: {path.name}"
    summary = [
        ("rows", f"{data['rows']:,}"),
        ("scored", f"{scored:,}"),
        ("errors", f"{sum(data['errors'].values()):,}"),
        *[
            (
                f"decision {d}",
                f"{data['decisions'].get(d, 0):,} ({data['decisions'].get(d, 0) / max(1, scored):.1%})",
            )
            for d in ("block", "review", "pass")
        ],
        *[(f"label {label}", f"{data['labels'].get(label, 0):,}") for label in LABELS],
        ("kinds", ", ".join(f"{k} {v:,}" for k, v in sorted(data["kinds"].items()))),
        ("model versions", ", ".join(f"{k} ({v:,})" for k, v in data["versions"].items()) or "—"),
    ]
    peak = max(data["hist"]) or 1
    hist = [
        (f"{i / BINS:.1f}–{(i + 1) / BINS:.1f}", n, "█" * round(30 * n / peak))
        for i, n in enumerate(data["hist"])
    ]
    if fmt == "html":
        return _html(title, summary, hist, data)
    lines = [
        f"# {title}",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in summary],
        "",
        "## fraud_score histogram",
        "",
        "| score | items | |",
        "|---|---:|---|",
        *[f"| {b} | {n:,} | {bar} |" for b, n, bar in hist],
    ]
    if data["errors"]:
        lines += [
            "",
            "## errors",
            "",
            "| error | rows |",
            "|---|---:|",
            *[f"| {k} | {v:,} |" for k, v in data["errors"].most_common(10)],
        ]
    lines += [
        "",
        f"## top {len(data['top'])} flagged",
        "",
        "| score | decision | labels | id | source | evidence |",
        "|---:|---|---|---|---|---|",
    ]
    for item in data["top"]:
        lines.append(
            f"| {item['fraud_score']:.4f} | {item['decision']} | {' '.join(item['labels'] or [])} | {item['id']} | "
            f"{item['source']} | {_evidence(item).replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def _html(title: str, summary, hist, data: dict) -> str:
    e = html.escape
    peak = max(n for _, n, _ in hist) or 1
    bars = "".join(
        f"<tr><td>{e(b)}</td><td class=n>{n:,}</td><td><div class=bar style='width:{300 * n / peak:.0f}px'></div></td></tr>"
        for b, n, _ in hist
    )
    top = "".join(
        f"<tr><td class=n>{i['fraud_score']:.4f}</td><td class={e(i['decision'])}>{e(i['decision'])}</td>"
        f"<td>{e(' '.join(i['labels'] or []))}</td><td>{e(str(i['id']))}</td><td>{e(i['source'])}</td>"
        f"<td>{e(_evidence(i))}</td></tr>"
        for i in data["top"]
    )
    errors = "".join(
        f"<tr><td>{e(k)}</td><td class=n>{v:,}</td></tr>" for k, v in data["errors"].most_common(10)
    )
    return f"""<!doctype html><html lang="zh"><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left}}.n{{text-align:right}}.bar{{height:12px;background:#d33}}
.block{{color:#b00;font-weight:bold}}.review{{color:#c60}}</style>
<h1>{e(title)}</h1>
<table>{"".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in summary)}</table>
<h2>fraud_score histogram</h2><table>{bars}</table>
{f"<h2>errors</h2><table>{errors}</table>" if errors else ""}
<h2>top {len(data["top"])} flagged</h2>
<table><tr><th>score</th><th>decision</th><th>labels</th><th>id</th><th>source</th><th>evidence</th></tr>{top}</table>
</html>
"""
