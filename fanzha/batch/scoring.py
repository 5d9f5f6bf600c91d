"""Records → Verdicts through the one Detector, and the flat row `fanzha score` writes for each.

A record that cannot be read or scored keeps its `error` and gets no verdict; the others are scored, texts in
batches (the classifier batches windows inside), media one file at a time.
"""

from __future__ import annotations

import json
import logging

from fanzha.models.detector import validate_text
from fanzha.models.errors import InputError
from fanzha.models.labels import LABELS
from fanzha.models.verdict import Verdict

from .readers import Record

log = logging.getLogger("fanzha.batch")

TEXT_BATCH = 64  # texts per classify_texts call
# one flat row per input record; evidence is a JSON string so every format holds it the same way
ROW_FIELDS = (
    "id",
    "source",
    "kind",
    "account_id",
    "group_id",
    "conversation_id",
    "fraud_score",
    *(f"score_{label}" for label in LABELS),
    "labels",
    "decision",
    "evidence",
    "model_version",
    "error",
)


def score(detector, records: list[Record]) -> list[Verdict | None]:
    """One verdict per record, in order; None (and the record's `error` set) where it cannot be scored."""
    verdicts: list[Verdict | None] = [None] * len(records)
    texts = []
    for i, r in enumerate(records):
        if r.error is None and r.kind == "text":
            try:
                validate_text(r.text, detector.max_chars)
                texts.append(i)
            except InputError as e:
                r.error = str(e)
    for start in range(0, len(texts), TEXT_BATCH):
        batch = texts[start : start + TEXT_BATCH]
        for i, verdict in zip(batch, detector.classify_texts([records[i].text for i in batch]), strict=True):
            verdicts[i] = verdict
    for i, r in enumerate(records):
        if r.error is not None or r.kind == "text":
            continue
        try:
            verdicts[i] = detector.classify_file(r.path)
        except InputError as e:
            r.error = str(e)
        except Exception as e:  # a decoder or OCR failure on one file must not stop the archive
            log.exception("%s: could not be scored", r.source)
            r.error = f"could not be scored: {type(e).__name__}: {e}"
    return verdicts


def row(r: Record, verdict: Verdict | None) -> dict:
    """The output row of one record (ROW_FIELDS)."""
    out = {
        "id": r.id,
        "source": r.source,
        "kind": r.kind,
        "account_id": r.account_id,
        "group_id": r.group_id,
        "conversation_id": r.conversation_id,
        "fraud_score": None,
        **{f"score_{label}": None for label in LABELS},
        "labels": [],
        "decision": None,
        "evidence": None,
        "model_version": None,
        "error": r.error,
    }
    if verdict is not None:
        out.update(
            fraud_score=verdict.fraud_score,
            labels=list(verdict.labels),
            decision=verdict.decision,
            evidence=json.dumps([e.to_dict() for e in verdict.evidence], ensure_ascii=False),
            model_version=verdict.model_version,
            **{f"score_{label}": verdict.scores[label] for label in LABELS},
        )
    return out


def score_rows(detector, records: list[Record]) -> list[dict]:
    """One output row per record, in order. A record that cannot be read or scored gets an error row."""
    return [row(r, v) for r, v in zip(records, score(detector, records), strict=True)]
