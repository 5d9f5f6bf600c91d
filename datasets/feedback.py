"""Moderated fraud reports as training data: the last step of the loop from a user's report to a better model.

    fanzha export-feedback -o feedback.jsonl                     # confirmed → fraud, rejected → hard negative
    python -m fanzha.training.train --base_model runs/base --output_dir runs/model --feedback feedback.jsonl

`join_feedback` adds the exported records to the TRAIN split only, whatever split a file says: dev and test
stay the authored, author-disjoint sets the reports are measured on. A feedback text that is also a dev or
test text (after the runtime's normalisation) is dropped, or it would leak into the evaluation; one that
repeats a training text with the same labels adds nothing and is dropped; one that repeats it with other
labels replaces it (the moderator's decision on a real report is the newer judgement).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from fanzha.models.normalize import normalize

from .corpus import CorpusError, read_jsonl


def load_feedback(paths: Iterable[str | Path]) -> list[dict]:
    records = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"feedback file not found: {path}")
        records += read_jsonl(path)  # validates every line against the corpus schema
    return records


def join_feedback(train: list[dict], held_out: list[dict], feedback: list[dict]) -> tuple[list[dict], dict[str, int]]:
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
