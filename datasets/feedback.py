"""Moderated fraud reports as training data, both directions of the loop from a user's report to a better model.

    fanzha export-feedback -o feedback.jsonl                     # confirmed → fraud, rejected → hard negative
    python -m fanzha.training.train --base_model runs/base --output_dir runs/model --feedback feedback.jsonl

`export_records` turns the report book's decided reports (`fanzha.platform.reports.ReportBook.resolved`) into
corpus records: a confirmed report carries the moderator's labels, else the verdict's; a rejected one is a
benign hard negative; a text moderators decided both ways is left out (a conflict for moderators, not a
label); repeats of one text become one record (the latest decision). Every record has split `train` and
provenance `user_report:<id>`. Moderators' decisions on review-queue and audit cases (fanzha.platform.review)
come in the same shape and join the same export, with provenance `moderator_review:<case id>` (or
`moderator_audit:`).

`join_feedback` adds the exported records to the TRAIN split only, whatever split a file says: dev and test
stay the authored, author-disjoint sets the reports are measured on. A feedback text that is also a dev or
test text (after the runtime's normalisation) is dropped, or it would leak into the evaluation; one that
repeats a training text with the same labels adds nothing and is dropped; one that repeats it with other
labels replaces it (the moderator's decision on a real report is the newer judgement).
"""

from __future__ import annotations

import functools
import json
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from fanzha.models.labels import LABELS
from fanzha.models.normalize import normalize

from .corpus import SOURCES, CorpusError, read_jsonl, validate

# where a reported message was seen → the corpus's register; anything else: a private message (text) or a poster (image)
SOURCE_ALIASES = {
    **{s: s for s in SOURCES},
    "dm": "private_message",
    "group_chat": "qq_group",
    "group": "qq_group",
    "chat": "private_message",
    "caption": "video_caption",
    "image": "poster",
    "screenshot": "poster",
}


# -- out: decided reports → corpus records ---------------------------------------------------------------------


def export_records(reports: Iterable[dict]) -> tuple[list[dict], dict[str, int]]:
    """Decided text and image reports (report views, in the order they were decided) as corpus records, and
    what happened to them: confirmed / rejected (exported), conflicting, repeats, no_text (left out)."""
    stats: Counter = Counter()
    by_text: dict[str, list[dict]] = {}
    for report in reports:
        if report["status"] not in ("confirmed", "rejected") or report["target_type"] not in (
            "text",
            "image",
        ):
            continue
        if not (report["target_text"] or "").strip():
            stats["no_text"] += 1  # an image in which nothing was read
            continue
        by_text.setdefault(normalize(report["target_text"]).text, []).append(report)
    records = []
    for decided in by_text.values():
        if len({r["status"] for r in decided}) > 1:
            stats["conflicting"] += len(decided)
            continue
        report = decided[-1]  # the latest decision on this text
        stats["repeats"] += len(decided) - 1
        records.append(feedback_record(report))
        stats[report["status"]] += 1
    return records, dict(stats)


def feedback_record(report: dict) -> dict:
    """One decided report as a corpus record (datasets/corpus.py), validated. A moderator's decision on a review
    case comes in the same shape, with its own `record_id` and `provenance`."""
    rid = report["report_id"]
    confirmed = report["status"] == "confirmed"
    labels = (report["labels"] or (report["verdict"] or {}).get("labels") or []) if confirmed else []
    default_source = "poster" if report["target_type"] == "image" else "private_message"
    record = {
        "id": report.get("record_id") or f"report-{rid}",
        "text": report["target_text"],
        "labels": sorted(labels, key=LABELS.index),
        "source": SOURCE_ALIASES.get((report["target_source"] or "").lower(), default_source),
        "script": script_of(report["target_text"]),
        "split": "train",
        "hard_negative": not confirmed,
        "provenance": report.get("provenance") or f"user_report:{rid}",
    }
    return validate(record, f"report {rid}")


def script_of(text: str) -> str:
    """zh-Hant when OpenCC's Traditional → Simplified conversion changes a fifth of the CJK characters or more."""
    converted = _t2s().convert(text)
    cjk = sum("\u4e00" <= c <= "\u9fff" for c in text)
    changed = sum(a != b for a, b in zip(text, converted, strict=False))
    return "zh-Hant" if cjk and changed * 5 >= cjk else "zh-Hans"


@functools.lru_cache(maxsize=1)
def _t2s():
    import opencc  # a C++ extension: loaded when the first record is exported

    return opencc.OpenCC("t2s")


def write_feedback(records: list[dict], path: str) -> None:
    """JSONL, one record per line ('-' = stdout)."""
    out = sys.stdout if path == "-" else open(path, "w", encoding="utf-8")  # noqa: SIM115
    try:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()


# -- in: feedback files → the train split ----------------------------------------------------------------------


def load_feedback(paths: Iterable[str | Path]) -> list[dict]:
    records = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"feedback file not found: {path}")
        records += read_jsonl(path)  # validates every line against the corpus schema
    return records


def join_feedback(
    train: list[dict], held_out: list[dict], feedback: list[dict]
) -> tuple[list[dict], dict[str, int]]:
    """train + feedback (as split `train`), and what happened to each feedback record."""
    key = lambda r: normalize(r["text"]).text  # noqa: E731
    held = {key(r) for r in held_out}
    by_text = {key(r): i for i, r in enumerate(train)}
    ids = {r["id"] for r in train} | {r["id"] for r in held_out}
    out, stats = list(train), {"added": 0, "replaced": 0, "duplicate": 0, "in_dev_or_test": 0}
    for record in feedback:
        text = key(record)
        if text in held:
            stats["in_dev_or_test"] += 1
            continue
        if record["id"] in ids:
            raise CorpusError(f"feedback id {record['id']!r} is already used by the corpus")
        ids.add(record["id"])
        record = {**record, "split": "train"}
        if text in by_text:
            i = by_text[text]
            if sorted(out[i]["labels"]) == sorted(record["labels"]):
                stats["duplicate"] += 1
                continue
            out[i] = record
            stats["replaced"] += 1
            continue
        by_text[text] = len(out)
        out.append(record)
        stats["added"] += 1
    return out, stats
