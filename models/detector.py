"""The one Detector: every door (CLI, service, batch jobs) turns items into Verdicts through it.

    from fanzha.models import Detector
    detector = Detector.load()                      # the committed default model
    verdict = detector.classify_text("免费领皮肤，先交10元激活费")
    verdict.decision, verdict.labels, verdict.evidence
"""

from __future__ import annotations

import os
import time
from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, LimitExceeded
from .evidence import extract
from .image import MAX_IMAGE_BYTES, Reading, decode_image, piece_starts, read_image
from .labels import FRAUD_HEAD, LABELS, DecisionThresholds
from .media import sniff
from .normalize import has_readable_text, normalize
from .ocr import OcrEngine, get_engine
from .text import TextClassifier
from .video import Sampling, read_video

# QR payloads that open a group chat (QQ group / WeChat group / QQ add-friend links): lures move victims there
_INVITE_HOSTS = ("qm.qq.com", "jq.qq.com", "qun.qq.com", "weixin.qq.com/g/", "u.wechat.com", "group_code=")

MAX_TEXT_CHARS = int(os.environ.get("FANZHA_MAX_TEXT_CHARS", 200_000))


@dataclass
class Verdict:
    fraud_score: float  # P(at least one scam label applies)
    scores: dict[str, float]  # per label
    labels: list[str]  # the kinds of lure: labels at or over their threshold, for review/block verdicts only
    decision: str  # pass / review / block
    evidence: list[dict]
    model_version: str
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds
    # images and videos only (absent from text verdicts): what was read, and where
    text: str | None = None  # the text the classifier saw: OCR lines + QR payloads, or the video transcript
    ocr: list[dict] | None = None  # OCR lines in reading order: text, box (4 corners), confidence
    qr: list[dict] | None = None  # QR codes: payload, box
    timeline: list[dict] | None = None  # video: one entry per caption segment, with its scores
    media: dict | None = None  # kind, size, duration, frames decoded, OCR calls, what triggered

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


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
    def __init__(self, classifier: TextClassifier, thresholds: DecisionThresholds | None = None, max_chars: int = MAX_TEXT_CHARS,
                 ocr_engine: str | None = None, threads: int | None = None, sampling: Sampling | None = None) -> None:
        self.classifier = classifier
        self.ocr_engine_name = ocr_engine
        self.threads = threads
        self.sampling = sampling or Sampling()
        self.thresholds = thresholds or DecisionThresholds.from_env(review=classifier.thresholds.get(FRAUD_HEAD))
        self.max_chars = max_chars
        missing = [o for o in (FRAUD_HEAD, *LABELS) if o not in classifier.outputs]
        if missing:
            raise ValueError(f"model outputs {classifier.outputs} lack {missing}")

    @classmethod
    def load(cls, model_dir: str | Path | None = None, thresholds: DecisionThresholds | None = None, threads: int | None = None,
             ocr_engine: str | None = None) -> Detector:
        return cls(TextClassifier.load(model_dir, threads=threads), thresholds, ocr_engine=ocr_engine, threads=threads)

    @property
    def ocr(self) -> OcrEngine:
        """The process-wide OCR engine, built on first use (text-only callers never pay for it)."""
        return get_engine(self.ocr_engine_name, self.threads)

    @property
    def model_version(self) -> str:
        return self.classifier.version

    def classify_text(self, text: str) -> Verdict:
        return self.classify_texts([text])[0]

    def classify_file(self, path: str | Path) -> Verdict:
        """An image or video file on disk (videos are streamed from disk, not read into memory)."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"no such file: {path}")
        with path.open("rb") as f:
            head = f.read(512)
        if sniff(head) == "video":
            return self.classify_video(path)
        if path.stat().st_size > MAX_IMAGE_BYTES:
            raise LimitExceeded(f"image is {path.stat().st_size:,} bytes; the limit is {MAX_IMAGE_BYTES:,} (FANZHA_MAX_IMAGE_BYTES)")
        return self.classify_image(path.read_bytes())

    def classify_image(self, data: bytes) -> Verdict:
        """Decode, OCR, read QR codes, classify the text; evidence points back to OCR boxes / QR codes."""
        t0 = time.perf_counter()
        rgb = decode_image(data)
        t1 = time.perf_counter()
        reading = read_image(rgb, self.ocr)
        t2 = time.perf_counter()
        verdict = self._classify_read_text(reading.text)
        for e in verdict.evidence:
            e["locations"] = reading.locate(e["start"], e["end"])
        verdict.evidence += self._qr_evidence(reading)
        verdict.timings = {"decode_ms": _ms(t0, t1), "ocr_ms": _ms(t1, t2), **verdict.timings}
        verdict.text = reading.text
        verdict.ocr = [line.to_dict() for line in reading.lines]
        verdict.qr = [code.to_dict() for code in reading.qr]
        verdict.media = {"kind": "image", "width": int(rgb.shape[1]), "height": int(rgb.shape[0])}
        return verdict

    def classify_video(self, source: str | Path | bytes, max_seconds: float | None = None) -> Verdict:
        """OCR the frames where the picture changed; classify each caption, each caption with the next one
        (a lure split over two captions), and the whole transcript. The verdict takes the maximum."""
        t0 = time.perf_counter()
        reading = read_video(source, self.ocr, self.sampling, max_seconds)
        t1 = time.perf_counter()
        segments = [s for s in reading.segments if has_readable_text(s.text)]
        pairs = [f"{a.text}\n{b.text}" for a, b in zip(segments, segments[1:], strict=False)]
        transcript = "\n".join(s.text for s in segments)
        texts = [s.text for s in segments] + pairs + ([transcript] if len(segments) > 2 else [])
        media = {"kind": "video", "width": reading.width, "height": reading.height, "duration": round(reading.duration, 3),
                 "frames_decoded": reading.frames_decoded, "ocr_calls": reading.ocr_calls, "trigger": None}
        if reading.truncated:
            media["truncated"] = reading.truncated
        if not texts:
            verdict = self._no_text_verdict()
        else:
            texts = [t[: self.max_chars] for t in texts]
            rows = self._probabilities(texts)
            verdict = self._verdict(rows.max(axis=0), [e.to_dict() for e in extract(transcript)], {})
            timeline, trigger = self._timeline(segments, rows, n_pairs=len(pairs), flagged=verdict.decision != "pass")
            verdict.timeline, media["trigger"] = timeline, trigger
            starts = piece_starts([s.text for s in segments])
            for e in verdict.evidence:
                i = max(0, bisect_right(starts, e["start"]) - 1)
                e["locations"] = [{"source": "segment", "index": i, "start": round(segments[i].start, 2), "end": round(segments[i].end, 2)}]
        verdict.timings = {"video_ms": _ms(t0, t1), "classify_ms": _ms(t1, time.perf_counter())}
        verdict.text = transcript
        verdict.media = media
        return verdict

    def _timeline(self, segments, rows: np.ndarray, n_pairs: int, flagged: bool) -> tuple[list[dict], dict | None]:
        n = len(segments)
        alone = [self.thresholds.decide(self._fraud(rows[i])) != "pass" for i in range(n)]
        paired = [self.thresholds.decide(self._fraud(rows[n + i])) != "pass" for i in range(n_pairs)]
        timeline = []
        for i, seg in enumerate(segments):
            fraud = self._fraud(rows[i])
            by_pair = (i > 0 and paired[i - 1]) or (i < n_pairs and paired[i])
            timeline.append({**seg.to_dict(), "fraud_score": round(fraud, 4), "scores": self._label_scores(rows[i]),
                             "decision": self.thresholds.decide(fraud), "triggered": alone[i] or (by_pair and not any(alone))})
        trigger = None
        if flagged:
            if any(alone):
                trigger = {"by": "segment", "segments": [i for i in range(n) if alone[i]]}
            elif any(paired):
                trigger = {"by": "adjacent_captions", "segments": sorted({j for i in range(n_pairs) if paired[i] for j in (i, i + 1)})}
            else:
                trigger = {"by": "transcript", "segments": list(range(n))}
                for entry in timeline:
                    entry["triggered"] = True
        return timeline, trigger

    def _classify_read_text(self, text: str) -> Verdict:
        """Text read off a picture: a picture with nothing readable passes (there is nothing to score)."""
        if not has_readable_text(text):
            return self._no_text_verdict()
        return self.classify_texts([text[: self.max_chars]])[0]

    def _no_text_verdict(self) -> Verdict:
        zeros = np.zeros(len(self.classifier.outputs), dtype=np.float32)
        return self._verdict(zeros, [], {})

    @staticmethod
    def _qr_evidence(reading: Reading) -> list[dict]:
        out = []
        for i, code in enumerate(reading.qr):
            invite = any(h in code.payload.lower() for h in _INVITE_HOSTS)
            start, end = reading.qr_span(i)
            out.append({"kind": "qr_group_invite" if invite else "qr", "value": code.payload, "start": start, "end": end,
                        "text": code.payload, "locations": [{"source": "qr", "index": i, "box": [list(p) for p in code.box]}]})
        return out

    def _fraud(self, row) -> float:
        by_output = dict(zip(self.classifier.outputs, (float(p) for p in row), strict=True))
        return max(by_output[FRAUD_HEAD], *(by_output[label] for label in LABELS))

    def _label_scores(self, row) -> dict[str, float]:
        by_output = dict(zip(self.classifier.outputs, (float(p) for p in row), strict=True))
        return {label: round(by_output[label], 4) for label in LABELS}

    def _probabilities(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.classifier.predict([normalize(t).text for t in texts]))

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
        scores = self._label_scores(row)
        # P(any label) can never be below P(one label): the binary head is kept consistent with the labels
        fraud_score = round(self._fraud(row), 4)
        decision = self.thresholds.decide(fraud_score)
        # a label names the kind of a flagged lure; a passed message carries none (its scores still show)
        labels = [] if decision == "pass" else [label for label in LABELS if scores[label] >= self.classifier.thresholds.get(label, 0.5)]
        return Verdict(fraud_score, scores, labels, decision, evidence, self.model_version, timings)


def _ms(t0: float, t1: float) -> float:
    return round((t1 - t0) * 1000, 3)

