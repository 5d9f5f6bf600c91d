"""The authored conversation corpus (datasets/conversations/*.jsonl): schema, loading, checks, datasheet tables.

    python -m fanzha.datasets.conversation_corpus          # tables + checks; exits 1 when a check fails

One conversation per line: {"id", "platform", "split", "labels" ([] = benign), "decisive_index" (the first
message at which a moderator would be sure it is a scam; null for benign), "difficulty" (scams: subtle /
overt; benign: hard / plain), "hard_negative", "script", "provenance", "messages": [{"sender", "text",
"stage"}]}. The authoring guide is datasets/conversations/AUTHORING.md. As for messages, a dev or test
conversation that nearly repeats one from another split (character 5-gram Jaccard > 0.5 over its whole
text) fails the check.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from fanzha.models.conversation import STAGES
from fanzha.models.labels import LABELS

from .check import cross_split_duplicates
from .corpus import SCRIPTS, SPLITS, CorpusError, load_corpus

CONVERSATIONS_DIR = Path(__file__).with_name("conversations")
PLATFORMS = (
    "qq_dm",
    "qq_group",
    "wechat_group",
    "kuaishou_dm",
    "kuaishou_comments",
    "douyin_dm",
    "douyin_comments",
    "bilibili_dm",
    "game_chat",
)
DIFFICULTIES = {True: ("subtle", "overt"), False: ("hard", "plain")}  # by is-scam
FIELDS = (
    "id",
    "platform",
    "split",
    "labels",
    "decisive_index",
    "difficulty",
    "hard_negative",
    "script",
    "provenance",
    "messages",
)


def validate(record: dict, where: str) -> dict:
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise CorpusError(f"{where}: missing fields {missing}")
    labels = record["labels"]
    if not isinstance(labels, list) or any(label not in LABELS for label in labels):
        raise CorpusError(f"{where}: unknown labels {labels}")
    for name, allowed in (("platform", PLATFORMS), ("split", SPLITS), ("script", SCRIPTS)):
        if record[name] not in allowed:
            raise CorpusError(f"{where}: unknown {name} {record[name]!r}")
    scam = bool(labels)
    if record["difficulty"] not in DIFFICULTIES[scam]:
        raise CorpusError(
            f"{where}: difficulty {record['difficulty']!r} for a {'scam' if scam else 'benign'} chat"
        )
    messages = record["messages"]
    if not isinstance(messages, list) or not 3 <= len(messages) <= 15:
        raise CorpusError(f"{where}: needs 3–15 messages")
    for i, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or not str(m.get("text", "")).strip()
            or not str(m.get("sender", "")).strip()
        ):
            raise CorpusError(f"{where}: message {i} needs a sender and a text")
        if m.get("stage") not in STAGES:
            raise CorpusError(f"{where}: message {i} has unknown stage {m.get('stage')!r}")
    if len({m["sender"] for m in messages}) < 2:
        raise CorpusError(f"{where}: needs at least two senders")
    d = record["decisive_index"]
    if scam != (d is not None) or (scam and not (isinstance(d, int) and 0 <= d < len(messages))):
        raise CorpusError(f"{where}: decisive_index {d!r} (a message index for scams, null for benign)")
    if record["hard_negative"] != (not scam and record["difficulty"] == "hard"):
        raise CorpusError(f"{where}: hard_negative must be true exactly for hard benign chats")
    return record


def load_conversations(path: str | Path | None = None, splits: Iterable[str] | None = None) -> list[dict]:
    """Every conversation in a directory of *.jsonl (default: the authored corpus) or one file."""
    return load_corpus(path or CONVERSATIONS_DIR, splits, check=validate)


def kind(record: dict) -> str:
    """scam_subtle / scam_overt / benign_hard / benign_plain."""
    return f"{'scam' if record['labels'] else 'benign'}_{record['difficulty']}"


def near_duplicates(records: list[dict]):
    """Conversations from different splits whose whole texts nearly repeat each other."""
    flat = [
        {"id": r["id"], "split": r["split"], "text": "\n".join(m["text"] for m in r["messages"])}
        for r in records
    ]
    return cross_split_duplicates(flat)


def markdown_tables(records: list[dict]) -> str:
    """Per-split counts of kinds, labels, platforms, scripts and stages, as Markdown."""
    rows: list[tuple[str, str, Counter]] = []
    counts = {s: Counter() for s in (*SPLITS, "total")}
    for r in records:
        keys = [("kind", kind(r)), ("platform", r["platform"]), ("script", r["script"])]
        keys += [("label", label) for label in r["labels"]]
        keys += [("stage", m["stage"]) for m in r["messages"]]
        keys += [("all", "conversations"), ("all", "messages")] + [("all", "messages")] * (
            len(r["messages"]) - 1
        )
        for key in keys:
            counts[r["split"]][key] += 1
            counts["total"][key] += 1
    order = (
        [("kind", k) for k in ("scam_subtle", "scam_overt", "benign_hard", "benign_plain")]
        + [("label", label) for label in LABELS]
        + [("platform", p) for p in PLATFORMS]
        + [("script", s) for s in SCRIPTS]
        + [("stage", s) for s in STAGES]
        + [("all", "conversations"), ("all", "messages")]
    )
    lines = [
        "| field | value | " + " | ".join(SPLITS) + " | total |",
        "|---|---|" + "---:|" * (len(SPLITS) + 1),
    ]
    for field, value in order:
        cells = " | ".join(str(counts[s][(field, value)]) for s in (*SPLITS, "total"))
        lines.append(f"| {field} | {value} | {cells} |")
    del rows
    return "\n".join(lines)


def quota_problems(records: list[dict]) -> list[str]:
    """The issue's quotas: ≥ 1,200 conversations, ≥ 50 % benign (most hard), ≥ 1/3 of scams subtle, every
    platform, separate authors for each split."""
    problems = []
    n = len(records)
    benign = [r for r in records if not r["labels"]]
    scams = [r for r in records if r["labels"]]
    if n < 1200:
        problems.append(f"{n} conversations < 1200")
    if len(benign) < 0.5 * n:
        problems.append(f"benign {len(benign)} < 50% of {n}")
    if sum(r["hard_negative"] for r in benign) < 0.5 * len(benign):
        problems.append("fewer than half of the benign conversations are hard")
    if sum(r["difficulty"] == "subtle" for r in scams) < len(scams) / 3:
        problems.append("fewer than a third of the scams are subtle")
    missing = set(PLATFORMS) - {r["platform"] for r in records}
    if missing:
        problems.append(f"no conversations from {sorted(missing)}")
    authors: dict[str, set[str]] = {}
    for r in records:
        authors.setdefault(r["provenance"], set()).add(r["split"])
    shared = sorted(a for a, splits in authors.items() if len(splits) > 1)
    if shared:
        problems.append(f"authors writing more than one split: {shared}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=None, help="directory of *.jsonl (default: the authored corpus)")
    args = parser.parse_args(argv)
    records = load_conversations(args.corpus)
    print(markdown_tables(records))
    problems = quota_problems(records)
    for d in near_duplicates(records):
        problems.append(f"near-duplicate across splits: {d.a} ~ {d.b} (Jaccard {d.jaccard})")
    for p in problems:
        print(f"CHECK FAILED: {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
