"""Corpus checks and statistics: schema, quotas, near-duplicates across splits, and the datasheet tables.

    python -m fanzha.datasets.check            # prints the tables, exits 1 when a check fails

A dev or test message that nearly repeats a train message (character 5-gram Jaccard > 0.5 after
normalisation) would make the held-out scores lie, so such pairs fail the check.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from fanzha.models.labels import LABELS
from fanzha.models.normalize import normalize

from .corpus import CORPUS_DIR, SCRIPTS, SOURCES, SPLITS, load_corpus

NGRAM = 5
JACCARD_LIMIT = 0.5


def shingles(text: str, n: int = NGRAM) -> frozenset[str]:
    t = "".join(normalize(text).text.split())
    if len(t) <= n:
        return frozenset([t])
    return frozenset(t[i : i + n] for i in range(len(t) - n + 1))


@dataclass(frozen=True)
class NearDuplicate:
    a: str
    b: str
    jaccard: float


def cross_split_duplicates(records: list[dict], limit: float = JACCARD_LIMIT) -> list[NearDuplicate]:
    """Pairs from different splits whose 5-gram Jaccard exceeds `limit` (inverted index, no all-pairs)."""
    grams = [shingles(r["text"]) for r in records]
    index: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(grams):
        for s in g:
            index[s].append(i)
    found = []
    for i, g in enumerate(grams):
        overlap: Counter[int] = Counter()
        for s in g:
            for j in index[s]:
                if j > i and records[j]["split"] != records[i]["split"]:
                    overlap[j] += 1
        for j, inter in overlap.items():
            jac = inter / (len(g) + len(grams[j]) - inter)
            if jac > limit:
                found.append(NearDuplicate(records[i]["id"], records[j]["id"], round(jac, 3)))
    return found


def stats(records: list[dict]) -> dict[str, Counter]:
    out: dict[str, Counter] = {k: Counter() for k in ("label", "source", "script", "split", "kind")}
    for r in records:
        for label in r["labels"]:
            out["label"][label] += 1
        out["source"][r["source"]] += 1
        out["script"][r["script"]] += 1
        out["split"][r["split"]] += 1
        out["kind"]["fraud" if r["labels"] else ("hard_negative" if r["hard_negative"] else "benign")] += 1
    return out


def markdown_tables(records: list[dict]) -> str:
    """Per-split counts of labels, kinds, registers and scripts, as Markdown."""
    by_split = {s: stats([r for r in records if r["split"] == s]) for s in SPLITS}
    total = stats(records)
    rows = [
        ("label", LABELS),
        ("kind", ("fraud", "benign", "hard_negative")),
        ("source", SOURCES),
        ("script", SCRIPTS),
    ]
    lines = [
        "| field | value | " + " | ".join(SPLITS) + " | total |",
        "|---|---|" + "---:|" * (len(SPLITS) + 1),
    ]
    for field, values in rows:
        for v in values:
            lines.append(
                f"| {field} | {v} | "
                + " | ".join(str(by_split[s][field][v]) for s in SPLITS)
                + f" | {total[field][v]} |"
            )
    lines.append(
        "| all | messages | "
        + " | ".join(str(by_split[s]["split"][s]) for s in SPLITS)
        + f" | {len(records)} |"
    )
    return "\n".join(lines)


def quota_problems(records: list[dict]) -> list[str]:
    s = stats(records)
    n = len(records)
    problems = []
    if n < 4000:
        problems.append(f"{n} messages < 4000")
    for label in LABELS:
        need = 300 if label == "other_fraud" else 500
        if s["label"][label] < need:
            problems.append(f"{label}: {s['label'][label]} < {need}")
    benign = s["kind"]["benign"] + s["kind"]["hard_negative"]
    if benign < 0.4 * n:
        problems.append(f"benign {benign} < 40% of {n}")
    if s["kind"]["hard_negative"] < benign / 2:
        problems.append(f"hard negatives {s['kind']['hard_negative']} < half of benign {benign}")
    if s["script"]["zh-Hant"] < 0.1 * n:
        problems.append(f"zh-Hant {s['script']['zh-Hant']} < 10% of {n}")
    return problems


_SPLIT_RANK = {"train": 0, "dev": 1, "test": 2}


def drop_duplicates(corpus_dir, dupes: list[NearDuplicate], records: list[dict]) -> int:
    """Remove, for each pair, the record of the less held-out split (train before dev), rewriting the files."""
    split_of = {r["id"]: r["split"] for r in records}
    drop = {min((d.a, d.b), key=lambda i: _SPLIT_RANK[split_of[i]]) for d in dupes}
    root = Path(corpus_dir)
    for path in [root] if root.is_file() else sorted(root.glob("*.jsonl")):
        lines = path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if not line.strip() or json.loads(line)["id"] not in drop]
        if len(kept) != len(lines):
            path.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return len(drop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", default=None, help="corpus directory or file (default: datasets/corpus)")
    parser.add_argument(
        "--drop-duplicates",
        action="store_true",
        help="delete the train (or dev) side of each near-duplicate pair",
    )
    args = parser.parse_args(argv)
    records = load_corpus(args.corpus)
    if args.drop_duplicates:
        n = drop_duplicates(args.corpus or CORPUS_DIR, cross_split_duplicates(records), records)
        print(f"dropped {n} near-duplicate records")
        records = load_corpus(args.corpus)
    print(markdown_tables(records))
    problems = quota_problems(records)
    dupes = cross_split_duplicates(records)
    for d in dupes[:20]:
        problems.append(f"near-duplicate across splits: {d.a} ~ {d.b} (Jaccard {d.jaccard})")
    if len(dupes) > 20:
        problems.append(f"... {len(dupes) - 20} more near-duplicate pairs")
    print("\n".join(f"FAIL {p}" for p in problems) if problems else "\nall checks passed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
