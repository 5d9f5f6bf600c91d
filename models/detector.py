"""The one Detector: every door (CLI, service, batch jobs) turns items into Verdicts through it.

from fanzha.models import Detector
detector = Detector.load()                      # the committed default model
verdict = detector.classify_text("免费领皮肤，先交10元激活费")
verdict.decision, verdict.labels, verdict.evidence
chat = detector.classify_conversation([Message("粉丝站", "恭喜你成为幸运粉丝"), Message("管理", "先转29元认证费")])
"""

from __future__ import annotations

import time
from bisect import bisect_right
from dataclasses import replace
from pathlib import Path

import numpy as np

from .conversation import HEAD_FILE, ConversationHead, ConversationScorer, Message
from .errors import InputError, LimitExceeded, ModelError, UnsupportedMedia
from .evidence import extract, qr_kind
from .image import Reading, decode_image, piece_starts, read_image
from .labels import FRAUD_HEAD, LABELS, DecisionThresholds, fraud_scores
from .media import sniff
from .normalize import has_readable_text, normalize
from .ocr import OcrEngine, get_engine
from .settings import Limits, settings
from .text import TextClassifier
from .verdict import ConversationVerdict, Evidence, Location, MediaInfo, TimelineEntry, Trigger, Verdict
from .video import Sampling, read_video

__all__ = ["Detector", "Verdict", "validate_text"]


def validate_text(text: object, max_chars: int | None = None, readable: bool = True) -> str:
    """The text, or InputError saying why it cannot be scored (`max_chars` default: FANZHA_MAX_TEXT_CHARS).
    `readable=False` accepts a text of emoji alone: a chat message such as 👍 is still a message (its reading
    has no words, its context does), where a lone text of emoji has nothing to score."""
    max_chars = settings().limits.max_text_chars if max_chars is None else max_chars
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise InputError("text is empty or whitespace only")
    if len(text) > max_chars:
        raise InputError(
            f"text has {len(text):,} characters; the limit is {max_chars:,} (FANZHA_MAX_TEXT_CHARS)"
        )
    if readable and not has_readable_text(text):
        raise InputError("text has no readable characters (only emoji, zero-width or control characters)")
    return text


class Detector:
    """Text, image bytes or a video in, a Verdict out. Settings (thresholds, limits, OCR engine, threads) are
    taken when it is built: from the arguments, else from `fanzha.models.settings`."""

    def __init__(
        self,
        classifier: TextClassifier,
        thresholds: DecisionThresholds | None = None,
        max_chars: int | None = None,
        ocr_engine: str | None = None,
        threads: int | None = None,
        sampling: Sampling | None = None,
        limits: Limits | None = None,
        conversation_head: str | Path | None = None,
    ) -> None:
        """`conversation_head`: the conversation model (default: conversation.onnx beside the text model)."""
        self.classifier = classifier
        self.conversation_head = Path(conversation_head) if conversation_head else None
        self._conversations: ConversationScorer | None = None
        self.ocr_engine_name = ocr_engine
        self.threads = threads
        self.sampling = sampling or Sampling()
        self.thresholds = thresholds or DecisionThresholds.from_env(
            review=classifier.thresholds.get(FRAUD_HEAD), block=classifier.thresholds.get("block")
        )
        limits = limits or settings().limits
        self.limits = limits if max_chars is None else replace(limits, max_text_chars=max_chars)
        missing = [o for o in (FRAUD_HEAD, *LABELS) if o not in classifier.outputs]
        if missing:
            raise ModelError(f"model outputs {classifier.outputs} lack {missing}")

    @classmethod
    def load(
        cls,
        model_dir: str | Path | None = None,
        thresholds: DecisionThresholds | None = None,
        threads: int | None = None,
        ocr_engine: str | None = None,
    ) -> Detector:
        return cls(
            TextClassifier.load(model_dir, threads=threads),
            thresholds,
            ocr_engine=ocr_engine,
            threads=threads,
        )

    @property
    def conversations(self) -> ConversationScorer:
        """The conversation scorer (the head beside the text model, loaded on first use; ModelError without one).
        Its decisions use the head's own thresholds, tuned on conversations."""
        if self._conversations is None:
            path = self.conversation_head
            if path is None:  # beside the text model (a stand-in classifier without a file has none)
                text_path = getattr(self.classifier, "path", None)
                path = text_path.with_name(HEAD_FILE) if text_path else Path(HEAD_FILE)
            head = ConversationHead(path, self.classifier)
            thresholds = DecisionThresholds(review=head.thresholds["review"], block=head.thresholds["block"])
            self._conversations = ConversationScorer(
                self.classifier,
                head,
                thresholds.decide,
                lambda t: validate_text(t, self.max_chars, readable=False),
            )
        return self._conversations

    def classify_conversation(self, messages: list[Message]) -> ConversationVerdict:
        """A conversation, messages in arrival order: each read with the ones before it, the chat as a funnel."""
        return self.conversations.classify(messages)

    @property
    def max_chars(self) -> int:
        return self.limits.max_text_chars

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
        limit = self.limits.max_image_bytes
        if path.stat().st_size > limit:
            raise LimitExceeded(
                f"image is {path.stat().st_size:,} bytes; the limit is {limit:,} (FANZHA_MAX_IMAGE_BYTES)"
            )
        return self.classify_image(path.read_bytes())

    def classify_media(
        self, data: bytes, expected: str | None = None, max_seconds: float | None = None
    ) -> Verdict:
        """Image or video bytes, told apart by their first bytes (never by a name a client sent); UnsupportedMedia
        when they are neither, or not the `expected` kind ("image" or "video")."""
        kind = sniff(data[:512])
        if expected is not None and kind != expected:
            raise UnsupportedMedia(
                f"unsupported media: this endpoint takes a{'n' if expected == 'image' else ''} {expected}, "
                f"the upload is a{'n' if kind == 'image' else ''} {kind}"
            )
        if kind == "image":
            return self.classify_image(data)
        return self.classify_video(data, max_seconds=max_seconds)

    def classify_image(self, data: bytes) -> Verdict:
        """Decode, OCR, read QR codes, classify the text; evidence points back to OCR boxes / QR codes."""
        t0 = time.perf_counter()
        rgb = decode_image(data, self.limits.max_image_bytes, self.limits.max_image_pixels)
        t1 = time.perf_counter()
        reading = read_image(rgb, self.ocr)
        t2 = time.perf_counter()
        verdict = self._classify_read_text(reading.text)
        evidence = [e.located(reading.locate(e.start, e.end)) for e in verdict.evidence] + self._qr_evidence(
            reading
        )
        return replace(
            verdict,
            evidence=evidence,
            timings={"decode_ms": _ms(t0, t1), "ocr_ms": _ms(t1, t2), **verdict.timings},
            text=reading.text,
            ocr=list(reading.lines),
            qr=list(reading.qr),
            media=MediaInfo("image", width=int(rgb.shape[1]), height=int(rgb.shape[0])),
        )

    def classify_video(self, source: str | Path | bytes, max_seconds: float | None = None) -> Verdict:
        """OCR the frames where the picture changed; classify each caption, each caption with the next one
        (a lure split over two captions), and the whole transcript. The verdict takes the maximum."""
        t0 = time.perf_counter()
        reading = read_video(source, self.ocr, self.sampling, max_seconds, self.limits)
        t1 = time.perf_counter()
        segments = [s for s in reading.segments if has_readable_text(s.text)]
        pairs = [f"{a.text}\n{b.text}" for a, b in zip(segments, segments[1:], strict=False)]
        transcript = "\n".join(s.text for s in segments)
        texts = [s.text for s in segments] + pairs + ([transcript] if len(segments) > 2 else [])
        media = MediaInfo(
            "video",
            width=reading.width,
            height=reading.height,
            duration=round(reading.duration, 3),
            frames_decoded=reading.frames_decoded,
            ocr_calls=reading.ocr_calls,
            truncated=reading.truncated,
        )
        if not texts:
            verdict = self._no_text_verdict()
        else:
            texts = [t[: self.max_chars] for t in texts]
            rows = self._probabilities(texts)
            starts = piece_starts([s.text for s in segments])
            evidence = []
            for e in extract(transcript):
                i = max(0, bisect_right(starts, e.start) - 1)
                evidence.append(
                    e.located(
                        [
                            Location(
                                "segment", i, start=round(segments[i].start, 2), end=round(segments[i].end, 2)
                            )
                        ]
                    )
                )
            verdict = self._verdict(rows.max(axis=0), evidence, {})
            timeline, trigger = self._timeline(segments, rows, n_pairs=len(pairs), flagged=verdict.flagged)
            verdict = replace(verdict, timeline=timeline)
            media = replace(media, trigger=trigger)
        return replace(
            verdict,
            timings={"video_ms": _ms(t0, t1), "classify_ms": _ms(t1, time.perf_counter())},
            text=transcript,
            media=media,
        )

    def _timeline(
        self, segments, rows: np.ndarray, n_pairs: int, flagged: bool
    ) -> tuple[list[TimelineEntry], Trigger | None]:
        n = len(segments)
        alone = [self.thresholds.decide(self._fraud(rows[i])) != "pass" for i in range(n)]
        paired = [self.thresholds.decide(self._fraud(rows[n + i])) != "pass" for i in range(n_pairs)]
        trigger = None
        if flagged:
            if any(alone):
                trigger = Trigger("segment", tuple(i for i in range(n) if alone[i]))
            elif any(paired):
                trigger = Trigger(
                    "adjacent_captions",
                    tuple(sorted({j for i in range(n_pairs) if paired[i] for j in (i, i + 1)})),
                )
            else:
                trigger = Trigger("transcript", tuple(range(n)))
        timeline = []
        for i, seg in enumerate(segments):
            fraud = self._fraud(rows[i])
            by_pair = (i > 0 and paired[i - 1]) or (i < n_pairs and paired[i])
            triggered = (
                alone[i]
                or (by_pair and not any(alone))
                or (trigger is not None and trigger.by == "transcript")
            )
            timeline.append(
                TimelineEntry(
                    seg.start,
                    seg.end,
                    seg.text,
                    seg.frame_time,
                    round(fraud, 4),
                    self._label_scores(rows[i]),
                    self.thresholds.decide(fraud),
                    triggered,
                )
            )
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
    def _qr_evidence(reading: Reading) -> list[Evidence]:
        out = []
        for i, code in enumerate(reading.qr):
            start, end = reading.qr_span(i)
            out.append(
                Evidence(
                    qr_kind(code.payload),
                    code.payload,
                    start,
                    end,
                    code.payload,
                    (Location("qr", i, box=code.box),),
                )
            )
        return out

    def _fraud(self, row) -> float:
        return float(fraud_scores(row, self.classifier.outputs)[0])

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
            evidence = extract(norm)
            verdicts.append(
                self._verdict(
                    row,
                    evidence,
                    {
                        "normalize_ms": round((t1 - t0) * share, 3),
                        "classify_ms": round((t2 - t1) * share, 3),
                        "evidence_ms": round((time.perf_counter() - t3) * 1000, 3),
                    },
                )
            )
        return verdicts

    def _verdict(self, row, evidence: list[Evidence], timings: dict[str, float]) -> Verdict:
        scores = self._label_scores(row)
        # P(any label) can never be below P(one label): the binary head is kept consistent with the labels
        fraud_score = round(self._fraud(row), 4)
        decision = self.thresholds.decide(fraud_score)
        # a label names the kind of a flagged lure; a passed message carries none (its scores still show)
        labels = (
            []
            if decision == "pass"
            else [label for label in LABELS if scores[label] >= self.classifier.thresholds.get(label, 0.5)]
        )
        return Verdict(fraud_score, scores, labels, decision, evidence, self.model_version, timings)


def _ms(t0: float, t1: float) -> float:
    return round((t1 - t0) * 1000, 3)
