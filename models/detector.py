"""The one Detector: every door (CLI, service, batch jobs) turns items into Verdicts through it.

    from fanzha.models import Detector
    detector = Detector.load()                      # the committed default model
    verdict = detector.classify_text("免费领皮肤，先交10元激活费")
    verdict.decision, verdict.labels, verdict.evidence
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .evidence import extract
from .labels import FRAUD_HEAD, LABELS, DecisionThresholds
from .normalize import has_readable_text, normalize
from .text import TextClassifier

MAX_TEXT_CHARS = int(os.environ.get("FANZHA_MAX_TEXT_CHARS", 200_000))


class InputError(ValueError):
    """The caller's input cannot be scored; the message says why (HTTP 4xx, a per-record error in batch)."""


@dataclass
class Verdict:
    fraud_score: float  # P(at least one scam label applies)
    scores: dict[str, float]  # per label
    labels: list[str]  # the kinds of lure: labels at or over their threshold, for review/block verdicts only
    decision: str  # pass / review / block
    evidence: list[dict]
    model_version: str
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds

    def to_dict(self) -> dict:
        return asdict(self)


def validate_text(text: object, max_chars: int = MAX_TEXT_CHARS) -> str:
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InputError("text is empty or whitespace only")
    if len(text) > max_chars:
        raise InputError(f"text has {len(text):,} characters; the limit is {max_chars:,} (FANZHA_MAX_TEXT_CHARS)")
    if not has_readable_text(text):
        raise InputError("text has no readable characters (only emoji, zero-width or control characters)")
    return text


class Detector:
    def __init__(self, classifier: TextClassifier, thresholds: DecisionThresholds | None = None, max_chars: int = MAX_TEXT_CHARS) -> None:
        self.classifier = classifier
        self.thresholds = thresholds or DecisionThresholds.from_env(review=classifier.thresholds.get(FRAUD_HEAD))
        self.max_chars = max_chars
        missing = [o for o in (FRAUD_HEAD, *LABELS) if o not in classifier.outputs]
        if missing:
            raise ValueError(f"model outputs {classifier.outputs} lack {missing}")

    @classmethod
    def load(cls, model_dir: str | Path | None = None, thresholds: DecisionThresholds | None = None, threads: int | None = None) -> Detector:
        return cls(TextClassifier.load(model_dir, threads=threads), thresholds)

    @property
    def model_version(self) -> str:
        return self.classifier.version

    def classify_text(self, text: str) -> Verdict:
        return self.classify_texts([text])[0]

    def classify_texts(self, texts: list[str]) -> list[Verdict]:
        """One Verdict per text, in order; raises InputError naming the first bad item."""
        for i, text in enumerate(texts):
            try:
                validate_text(text, self.max_chars)
            except InputError as e:
                if len(texts) == 1:
                    raise
                raise InputError(f"item {i}: {e}") from None
        t0 = time.perf_counter()
        normalized = [normalize(t) for t in texts]
        t1 = time.perf_counter()
        probs = self.classifier.predict([n.text for n in normalized])
        t2 = time.perf_counter()
        share = 1000.0 / max(1, len(texts))  # batch time split evenly over its items
        verdicts = []
        for norm, row in zip(normalized, probs, strict=True):
            t3 = time.perf_counter()
            evidence = [e.to_dict() for e in extract(norm)]
            verdicts.append(self._verdict(row, evidence, {
                "normalize_ms": round((t1 - t0) * share, 3),
                "classify_ms": round((t2 - t1) * share, 3),
                "evidence_ms": round((time.perf_counter() - t3) * 1000, 3),
            }))
        return verdicts

    def _verdict(self, row, evidence: list[dict], timings: dict[str, float]) -> Verdict:
        by_output = dict(zip(self.classifier.outputs, (float(p) for p in row), strict=True))
        scores = {label: round(by_output[label], 4) for label in LABELS}
        # P(any label) can never be below P(one label): the binary head is kept consistent with the labels
        fraud_score = round(max(by_output[FRAUD_HEAD], *scores.values()), 4)
        decision = self.thresholds.decide(fraud_score)
        # a label names the kind of a flagged lure; a passed message carries none (its scores still show)
        labels = [] if decision == "pass" else [label for label in LABELS if scores[label] >= self.classifier.thresholds.get(label, 0.5)]
        return Verdict(fraud_score, scores, labels, decision, evidence, self.model_version, timings)
