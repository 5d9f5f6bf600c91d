"""Request and response bodies of the service (they are the OpenAPI schema at /docs.json).

One id type (`Id`: 1–256 characters) for every id a client sends, one base64 decoder for every file sent as
JSON, and response bodies named `…Body` where the domain has a type of the same name (fanzha.models.Verdict,
Evidence; fanzha.platform.Alert), so each name has one meaning.

Response bodies derive from `Body`: every field is always sent, and a list-valued field is always a list —
`[]` when there is nothing, and also where the field does not apply to the kind of item (an image's
`timeline`, a text's `ocr`, `qr`, `timeline` and its evidence's `locations`). A scalar or an object that does
not apply is null. serving/openapi.py publishes these models as the OpenAPI document (/docs.json).
"""

from __future__ import annotations

import base64
import binascii
import functools
from typing import Annotated, Any, Literal, get_origin

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fanzha.models import InputError, Message, validate_text
from fanzha.models.labels import DECISIONS, LABELS
from fanzha.platform.risk import RULES

Id = Annotated[
    str, Field(min_length=1, max_length=256)
]  # every id a client sends: item, account, group, reporter, moderator
OptionalId = Annotated[Id | None, Field(default=None)]
ReportId = Annotated[str, Field(min_length=1, max_length=64)]
Source = Annotated[
    str | None,
    Field(default=None, max_length=64, description="where it was posted: comment, dm, group_chat, danmaku…"),
]
Label = Literal[LABELS]  # type: ignore[valid-type]
Rule = Literal[RULES]  # type: ignore[valid-type]


def decode_base64(data: str | None) -> bytes:
    """File bytes sent as base64 in a JSON body; InputError (400) when they are not valid base64."""
    try:
        return base64.b64decode(data or "", validate=True)
    except (binascii.Error, ValueError):
        raise InputError("`data` is not valid base64") from None


def _checked_text(text: str, readable: bool = True) -> str:
    try:
        return validate_text(text, readable=readable)
    except InputError as e:
        raise ValueError(str(e)) from None


# -- classification ----------------------------------------------------------------------------------------------


class TextItem(BaseModel):
    """One message to classify. The ids travel back unchanged with its verdict."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(
        description="the message, up to FANZHA_MAX_TEXT_CHARS characters",
        examples=["恭喜你成为幸运粉丝！加QQ群 83726154 免费领签名照，先交29元激活费"],
    )
    id: OptionalId
    account_id: OptionalId
    group_id: OptionalId
    source: Source

    @field_validator("text")
    @classmethod
    def _readable(cls, text: str) -> str:
        return _checked_text(text)


class Body(BaseModel):
    """A response body: every field is always sent (the published schema lists them all as required), and a
    list-valued field is a list, never null (`[]` when there is nothing or when it does not apply)."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    @model_validator(mode="before")
    @classmethod
    def _lists_not_null(cls, data: Any) -> Any:
        """The domain says None for a part that does not apply (Verdict.timeline of an image); the body says []."""
        if isinstance(data, dict):
            lists = _list_fields(cls)
            if any(data.get(name, []) is None for name in lists):
                data = {k: [] if v is None and k in lists else v for k, v in data.items()}
        return data


@functools.cache
def _list_fields(cls: type[BaseModel]) -> frozenset[str]:
    return frozenset(name for name, f in cls.model_fields.items() if get_origin(f.annotation) is list)


Point = Annotated[list[int], Field(min_length=2, max_length=2, description="[x, y] in pixels")]
Box = Annotated[list[Point], Field(description="4 corners clockwise from top-left, in pixels")]


class LocationBody(Body):
    """Where a piece of evidence is on the image (an OCR line or a QR code, with its box) or in the video (a
    caption segment, with its times)."""

    source: Literal["ocr", "qr", "segment"]
    index: int = Field(description="the OCR line, QR code or timeline entry")
    box: Box = Field(
        default_factory=list, description="ocr, qr: 4 corners clockwise from top-left; [] for a segment"
    )
    start: float | None = Field(default=None, description="segment: seconds; null for ocr and qr")
    end: float | None = None


class EvidenceBody(Body):
    kind: str
    value: str
    start: int = Field(
        description="span in the request's text, or in the verdict's `text` for images/videos: [start, end)"
    )
    end: int
    text: str
    locations: list[LocationBody] = Field(
        default_factory=list,
        description="images/videos: OCR lines / QR codes (with boxes) "
        "or video segments (with times); [] for text",
    )


class OcrLineBody(Body):
    text: str
    box: Box
    confidence: float


class QrCodeBody(Body):
    payload: str
    box: Box


class TimelineEntryBody(Body):
    """One caption segment of a video and how it scored on its own."""

    start: float
    end: float
    text: str
    frame_time: float
    fraud_score: float
    scores: dict[str, float]
    decision: Literal[DECISIONS]  # type: ignore[valid-type]
    triggered: bool = Field(
        description="this caption (alone, with its neighbour, or in the transcript) made the verdict"
    )


class TriggerBody(Body):
    by: str = Field(description="segment, adjacent_captions or transcript")
    segments: list[int]


class MediaBody(Body):
    """The picture or clip: its size and, for a video, how it was read and what triggered the verdict (null for images)."""

    kind: Literal["image", "video"]
    width: int
    height: int
    duration: float | None = None
    frames_decoded: int | None = None
    ocr_calls: int | None = None
    trigger: TriggerBody | None = None
    truncated: str | None = Field(
        default=None, description="decoding stopped early: why (what was read is still scored)"
    )


class AlertBody(Body):
    id: int
    ts: float
    rule: Rule
    entity_kind: str | None
    entity_id: str | None
    cluster_id: int | None
    item_id: str | None = Field(description="the item that crossed the threshold")
    value: float
    threshold: float
    message: str
    detail: dict


class VerdictBody(Body):
    """The Detector's verdict, as `fanzha classify` / `fanzha scan` print it, with every field present: the
    image and video parts are [] (lists) or null for a text, `timeline` is [] for an image."""

    id: str | None = None
    account_id: str | None = None
    group_id: str | None = None
    source: str | None = None
    fraud_score: float = Field(description="P(at least one scam label applies)")
    scores: dict[str, float]
    labels: list[str] = Field(description="the kinds of lure, for review/block decisions")
    decision: Literal[DECISIONS]  # type: ignore[valid-type]
    evidence: list[EvidenceBody]
    model_version: str
    model_tag: str = Field(description="the BentoML model-store tag the service runs")
    timings: dict[str, float] = Field(default_factory=dict)
    text: str | None = Field(default=None, description="images/videos: the text that was read and classified")
    ocr: list[OcrLineBody] = Field(
        default_factory=list, description="images/videos: OCR lines in reading order"
    )
    qr: list[QrCodeBody] = Field(default_factory=list, description="images: QR codes")
    timeline: list[TimelineEntryBody] = Field(
        default_factory=list, description="videos: one entry per caption segment"
    )
    media: MediaBody | None = None
    alerts: list[AlertBody] = Field(
        default_factory=list,
        description="early-warning alerts THIS item raised: its account, "
        "group or campaign cluster crossed a threshold (see /alerts)",
    )

    @classmethod
    def of(cls, scored, model_tag: str) -> VerdictBody:
        """From a fanzha.platform.Scored: its ids, its verdict and the alerts it raised."""
        return cls(**scored.to_dict(), model_tag=model_tag)


# -- conversations -----------------------------------------------------------------------------------------------


class MessageItem(BaseModel):
    """One message of a conversation, in arrival order."""

    model_config = ConfigDict(extra="forbid")

    sender: Id = Field(description="who sent it, as the platform names them", examples=["管理-阿豪"])
    text: str = Field(examples=["登记先转29元认证费，寄出后原路退"])
    id: OptionalId
    ts: float | None = Field(
        default=None,
        allow_inf_nan=False,
        description="seconds since the epoch; out-of-order times are kept in arrival order",
    )

    @field_validator("sender")
    @classmethod
    def _named(cls, sender: str) -> str:
        if not sender.strip():
            raise ValueError("sender is empty or whitespace only")
        return sender

    @field_validator("text")
    @classmethod
    def _text(cls, text: str) -> str:
        return _checked_text(text, readable=False)  # 👍 alone is a chat message (validate_text says why)

    def message(self) -> Message:
        return Message(sender=self.sender, text=self.text, id=self.id, ts=self.ts)


class StreamMessage(MessageItem):
    """A streamed message: its id is required (a repeated id is refused, not scored twice)."""

    id: Id = Field(description="the platform's message id, unique within the conversation")


class MessageVerdictBody(Body):
    index: int
    id: str | None = None
    stage: str = Field(
        description="its role in a funnel: bait, channel_move, payment_demand, credential_request, "
        "task_escalation, pressure, impersonation, warning, or none"
    )
    stage_score: float
    fraud_score: float = Field(description="P(the chat is a scam, as shown by this message and those before)")
    conversation_score: float = Field(description="the conversation's score after this message")


class MessageEvidenceBody(EvidenceBody):
    message_index: int = Field(description="the message the span is in (start/end are offsets in its text)")


class ConversationAlertBody(Body):
    kind: str = Field(description="conversation_flagged")
    conversation_id: str | None
    message_index: int | None
    message_id: str | None
    decision: Literal[DECISIONS]  # type: ignore[valid-type]
    fraud_score: float
    labels: list[str]
    case_id: str | None = Field(description="the review case opened for moderators, if one was")


class ConversationBody(Body):
    """A conversation's verdict: the chat as a funnel, each message's stage and score, and when it tipped."""

    id: str | None = Field(default=None, description="the conversation id")
    account_id: str | None = None
    group_id: str | None = None
    source: str | None = None
    fraud_score: float = Field(description="the highest conversation score after any message")
    scores: dict[str, float]
    labels: list[str]
    decision: Literal[DECISIONS]  # type: ignore[valid-type]
    trigger_index: int | None = Field(
        description="the first message after which the conversation was flagged"
    )
    evidence: list[MessageEvidenceBody]
    messages: list[MessageVerdictBody] = Field(
        description="every message (a streamed conversation: the most recent ones)"
    )
    message_count: int
    model_version: str
    model_tag: str
    warnings: list[str] = Field(default_factory=list, description="e.g. timestamps out of order")
    timings: dict[str, float] = Field(default_factory=dict)
    message: MessageVerdictBody | None = Field(default=None, description="streamed: the message just read")
    restarted: bool | None = Field(
        default=None, description="streamed: the conversation had been idle too long and started afresh"
    )
    alert: ConversationAlertBody | None = Field(
        default=None, description="streamed: present on the message that tipped the conversation"
    )
    alerts: list[AlertBody] = Field(default_factory=list, description="risk alerts this conversation raised")

    @classmethod
    def of(cls, scored, model_tag: str) -> ConversationBody:
        """From a fanzha.platform.ScoredConversation."""
        return cls(**scored.to_dict(), model_tag=model_tag)


class BatchItem(BaseModel):
    """One item of a mixed batch: a text, or an image/video as base64 bytes."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "image", "video"]
    text: str | None = None
    data: str | None = Field(default=None, description="base64 file bytes, for images and videos")
    id: OptionalId
    account_id: OptionalId
    group_id: OptionalId
    source: Source

    @model_validator(mode="after")
    def _payload(self) -> BatchItem:
        if self.type == "text":
            if self.text is None or self.data is not None:
                raise ValueError("a text item carries `text` and no `data`")
            _checked_text(self.text)
        elif self.data is None or self.text is not None:
            raise ValueError(f"an {self.type} item carries base64 `data` and no `text`")
        return self

    def payload(self) -> bytes:
        return decode_base64(self.data)


class BatchResult(Body):
    """A verdict, or the error that item got (the other items are still scored)."""

    id: str | None = None
    verdict: VerdictBody | None = None
    error: str | None = None


class JobStatus(Body):
    scored: int
    failed: int
    results: list[BatchResult]


# -- platform: risk and alerts -----------------------------------------------------------------------------------


class HandleStat(Body):
    kind: str
    value: str
    items: int | None = None
    flagged: int
    accounts: int = Field(description="accounts that pushed this handle in flagged items")
    first_seen: float | None = None
    last_seen: float | None = None


class Cluster(Body):
    id: int
    accounts: int
    handle_count: int
    flagged_items: int
    created: float
    updated: float
    members: list[str] = Field(description="account ids (the first ones, oldest first)")
    handles: list[HandleStat]


class FlaggedItem(Body):
    item_id: str | None
    ts: float
    fraud_score: float
    decision: str
    labels: list[str]
    handles: list[str]
    source: str | None


class EntityRisk(Body):
    """An account's or group's risk now, and why."""

    kind: Literal["account", "group"]
    id: str
    level: Literal["low", "elevated", "high"] = Field(
        description="high: a rule's threshold is met now (or a report was confirmed)"
    )
    risk: float = Field(description="decayed sum of flagged fraud scores (FANZHA_RISK_HALF_LIFE_HOURS)")
    items: int
    flagged: int
    flagged_in_window: int
    window_hours: float
    first_seen: float
    last_seen: float
    labels: dict[str, int]
    reasons: list[str]
    handles: list[HandleStat]
    cluster: Cluster | None
    recent_flagged: list[FlaggedItem]
    alerts: list[AlertBody]
    reports: dict[str, int] = Field(description="reports against it, by status")


# -- platform: fraud reports -------------------------------------------------------------------------------------


class ReportTarget(BaseModel):
    """What is reported: a message (`text`), an image (`data`, base64), an `account` or a `group`.

    For a message or an image, `account_id` / `group_id` say who posted it and where; the content is scored
    at once and counts toward that account's and group's risk like any scored item."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "image", "account", "group"]
    text: str | None = Field(
        default=None, examples=["恭喜你被抽中送皮肤！加QQ群 83726154 领取，先交10元激活费"]
    )
    data: str | None = Field(default=None, description="base64 image bytes (a screenshot, a poster)")
    account_id: OptionalId
    group_id: OptionalId
    item_id: Annotated[
        Id | None, Field(default=None, description="the platform's id of the reported message")
    ]
    source: Annotated[
        str | None,
        Field(
            default=None, max_length=64, description="where it was seen: comment, dm, group_chat, danmaku…"
        ),
    ]

    @model_validator(mode="after")
    def _payload(self) -> ReportTarget:
        given = {name for name in ("text", "data") if getattr(self, name) is not None}
        need = {"text": {"text"}, "image": {"data"}, "account": set(), "group": set()}[self.type]
        if given != need:
            what = {"text": "`text`", "image": "base64 `data`"}.get(self.type, "no `text` or `data`")
            raise ValueError(f"a {self.type} target carries {what}")
        if self.type == "account" and not self.account_id:
            raise ValueError("an account target needs `account_id`")
        if self.type == "group" and not self.group_id:
            raise ValueError("a group target needs `group_id`")
        if self.text is not None:
            _checked_text(self.text)
        return self

    def image_bytes(self) -> bytes:
        return decode_base64(self.data)


class ReportEvent(Body):
    status: str
    ts: float
    note: str | None = None


class ReportStatus(Body):
    """What the reporter sees: where the report stands and the moderator's reason."""

    report_id: str
    status: Literal["received", "in_review", "confirmed", "rejected"]
    status_reason: str | None
    target_type: str
    created_at: float
    updated_at: float
    history: list[ReportEvent]


class ReportReceipt(Body):
    report_id: str
    status: str
    created_at: float
    duplicate: bool = Field(description="true when the idempotency key named a report already stored")
    verdict: VerdictBody | None = Field(
        default=None, description="text and image targets: the verdict at intake"
    )
    risk: EntityRisk | None = Field(
        default=None, description="account and group targets: its risk now, when fanzha has seen it"
    )


class ModeratorEvent(ReportEvent):
    actor: str | None = None


class Report(Body):
    """The moderator's view of a report."""

    report_id: str
    reporter_id: str
    idempotency_key: str | None
    status: str
    status_reason: str | None
    target_type: str
    target_text: str | None
    target_media_sha256: str | None
    target_account_id: str | None
    target_group_id: str | None
    target_source: str | None
    reason: str
    labels: list[str] = Field(description="the moderator's labels ([] when the moderator gave none)")
    moderator_id: str | None
    verdict: VerdictBody | None = Field(description="text and image targets: the verdict at intake")
    created_at: float
    updated_at: float
    history: list[ModeratorEvent]


# -- disposal actions ---------------------------------------------------------------------------------------------

ActionName = Literal["warn", "restrict", "suspend", "ban", "mute", "dissolve"]


class ActionDelivery(Body):
    """One POST of an action (or of its lift) to FANZHA_ACTION_WEBHOOK."""

    event: Literal["dispose", "lift"]
    status: Literal["pending", "delivered", "failed", "not_configured"]
    attempts: int
    error: str | None
    created_at: float
    updated_at: float


class Action(Body):
    """A disposal action on an account or a group: who, when, why, on which evidence, and whether the platform
    got it."""

    action_id: int
    entity_kind: Literal["account", "group"]
    entity_id: str
    action: ActionName
    moderator_id: str
    reason: str
    duration_s: float | None
    expires_at: float | None
    case_id: str | None
    evidence: Any = Field(description="what the moderator pointed at (JSON, as sent)")
    created_at: float
    status: Literal["active", "lifted", "expired"]
    lifted_at: float | None
    lifted_by: str | None
    lift_reason: str | None
    delivery: str | None = Field(description="the latest delivery's status")
    deliveries: list[ActionDelivery]
