"""What the Detector says about one item, as typed, frozen values: Verdict, Evidence, Location and the media parts.

Every door projects a Verdict through `to_dict()` (the CLI prints it, the service returns it, batch rows and
the platform's risk state read it), so the JSON shape is defined once, here. The values are built whole by
the Detector and never changed afterwards.

For the code written against the dicts these used to be, every part also answers `part["field"]` (read-only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .image import QrCode
    from .ocr import OcrLine

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]


class _Readable:
    """Read-only mapping access to `to_dict()`: `evidence["kind"]`, `media["trigger"]`."""

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)


def _box(box: Box) -> list[list[int]]:
    return [list(p) for p in box]


@dataclass(frozen=True)
class Location(_Readable):
    """Where a piece of evidence is on the original item: an OCR line or a QR code (with its box), or a video
    caption segment (with its times)."""

    source: str  # "ocr", "qr" or "segment"
    index: int  # the OCR line / QR code / timeline entry
    box: Box | None = None  # ocr, qr: 4 corners clockwise from top-left, in pixels
    start: float | None = None  # segment: seconds
    end: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"source": self.source, "index": self.index}
        if self.box is not None:
            d["box"] = _box(self.box)
        if self.start is not None:
            d["start"], d["end"] = self.start, self.end
        return d


@dataclass(frozen=True)
class Evidence(_Readable):
    """A handle, link, amount or scam term, with its span in the ORIGINAL text (the kinds: evidence.KINDS)."""

    kind: str
    value: str  # canonical value (normalised text, digits only for numbers)
    start: int  # span in the original text, [start, end)
    end: int
    text: str  # the original text at that span
    locations: tuple[Location, ...] | None = None  # images and videos: where on the picture / in the clip

    def located(self, locations: list[Location] | tuple[Location, ...]) -> Evidence:
        return Evidence(self.kind, self.value, self.start, self.end, self.text, tuple(locations))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind,
            "value": self.value,
            "start": self.start,
            "end": self.end,
            "text": self.text,
        }
        if self.locations is not None:
            d["locations"] = [loc.to_dict() for loc in self.locations]
        return d


@dataclass(frozen=True)
class TimelineEntry(_Readable):
    """One caption segment of a video and how it scored on its own."""

    start: float
    end: float
    text: str
    frame_time: float
    fraud_score: float
    scores: dict[str, float]
    decision: str
    triggered: bool  # this caption (alone, with its neighbour, or as part of the transcript) made the verdict

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": round(self.start, 2),
            "end": round(self.end, 2),
            "text": self.text,
            "frame_time": round(self.frame_time, 2),
            "fraud_score": self.fraud_score,
            "scores": dict(self.scores),
            "decision": self.decision,
            "triggered": self.triggered,
        }


@dataclass(frozen=True)
class Trigger(_Readable):
    by: str  # "segment", "adjacent_captions" or "transcript"
    segments: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "segments": list(self.segments)}


@dataclass(frozen=True)
class MediaInfo(_Readable):
    """The picture or clip: its size and, for a video, how it was read and what triggered the verdict."""

    kind: str  # "image" or "video"
    width: int
    height: int
    duration: float | None = None  # video only, from here on
    frames_decoded: int | None = None
    ocr_calls: int | None = None
    trigger: Trigger | None = None
    truncated: str | None = None  # decoding stopped early: what was read is still scored

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": self.kind, "width": self.width, "height": self.height}
        if self.kind == "video":
            d.update(
                duration=self.duration,
                frames_decoded=self.frames_decoded,
                ocr_calls=self.ocr_calls,
                trigger=self.trigger.to_dict() if self.trigger else None,
            )
            if self.truncated:
                d["truncated"] = self.truncated
        return d


@dataclass(frozen=True)
class Verdict:
    fraud_score: float  # P(at least one scam label applies)
    scores: dict[str, float]  # per label
    labels: list[str]  # the kinds of lure: labels at or over their threshold, for review/block verdicts only
    decision: str  # pass / review / block
    evidence: list[Evidence]
    model_version: str
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds
    # images and videos only (absent from text verdicts): what was read, and where
    text: str | None = None  # the text the classifier saw: OCR lines + QR payloads, or the video transcript
    ocr: list[OcrLine] | None = None  # OCR lines in reading order: text, box (4 corners), confidence
    qr: list[QrCode] | None = None  # QR codes: payload, box
    timeline: list[TimelineEntry] | None = None  # video: one entry per caption segment, with its scores
    media: MediaInfo | None = None  # kind, size, duration, frames decoded, OCR calls, what triggered

    @property
    def flagged(self) -> bool:
        return self.decision != "pass"

    def to_dict(self, timings: bool = True) -> dict[str, Any]:
        """The one JSON shape of a verdict (`timings` left out when the caller does not report them)."""
        d: dict[str, Any] = {
            "fraud_score": self.fraud_score,
            "scores": dict(self.scores),
            "labels": list(self.labels),
            "decision": self.decision,
            "evidence": [e.to_dict() for e in self.evidence],
            "model_version": self.model_version,
        }
        if timings:
            d["timings"] = dict(self.timings)
        if self.text is not None:
            d["text"] = self.text
        for name in ("ocr", "qr", "timeline"):
            parts = getattr(self, name)
            if parts is not None:
                d[name] = [p.to_dict() for p in parts]
        if self.media is not None:
            d["media"] = self.media.to_dict()
        return d


@dataclass(frozen=True)
class MessageVerdict(_Readable):
    """One message of a conversation, read with the messages before it."""

    index: int  # position in the conversation, from 0
    stage: str  # its role in a funnel (fanzha.models.conversation.STAGES), "none" outside one
    stage_score: float  # the probability of that stage
    fraud_score: float  # P(the chat is a scam, as shown by this message and the ones before it)
    conversation_score: float  # the conversation's score after this message (its running maximum)
    id: str | None = None  # the platform's message id, when it gave one

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"index": self.index}
        if self.id is not None:
            d["id"] = self.id
        d.update(
            stage=self.stage,
            stage_score=self.stage_score,
            fraud_score=self.fraud_score,
            conversation_score=self.conversation_score,
        )
        return d


@dataclass(frozen=True)
class MessageEvidence(_Readable):
    """Evidence found in one message: its span is in that message's original text."""

    message_index: int
    evidence: Evidence

    def to_dict(self) -> dict[str, Any]:
        return {"message_index": self.message_index, **self.evidence.to_dict()}


@dataclass(frozen=True)
class ConversationVerdict:
    """A conversation scored as a funnel: the chat's verdict, and each message's stage and score."""

    fraud_score: float  # the highest conversation score after any message
    scores: dict[str, float]  # per label
    labels: list[str]
    decision: str  # pass / review / block
    evidence: list[MessageEvidence]
    messages: list[MessageVerdict]  # every message (a stream answers with the recent window only)
    trigger_index: int | None  # the first message after which the conversation was flagged
    model_version: str
    warnings: list[str] = field(default_factory=list)  # e.g. timestamps out of order (arrival order is kept)
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds
    message_count: int | None = None  # messages so far (a stream's answer lists only the recent ones)

    @property
    def flagged(self) -> bool:
        return self.decision != "pass"

    def to_dict(self, timings: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "fraud_score": self.fraud_score,
            "scores": dict(self.scores),
            "labels": list(self.labels),
            "decision": self.decision,
            "trigger_index": self.trigger_index,
            "evidence": [e.to_dict() for e in self.evidence],
            "messages": [m.to_dict() for m in self.messages],
            "message_count": self.message_count if self.message_count is not None else len(self.messages),
            "model_version": self.model_version,
        }
        if self.warnings:
            d["warnings"] = list(self.warnings)
        if timings:
            d["timings"] = dict(self.timings)
        return d
