"""Request and response bodies of the platform-duty endpoints: risk queries, alerts, fraud reports."""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fanzha.models import InputError, validate_text
from fanzha.models.labels import LABELS

from .schemas import Verdict

Label = Literal[LABELS]  # type: ignore[valid-type]
_ID = Field(default=None, min_length=1, max_length=256)


class ReportTarget(BaseModel):
    """What is reported: a message (`text`), an image (`data`, base64), an `account` or a `group`.

    For a message or an image, `account_id` / `group_id` say who posted it and where; the content is scored
    at once and counts toward that account's and group's risk like any scored item."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "image", "account", "group"]
    text: str | None = Field(default=None, examples=["恭喜你被抽中送皮肤！加QQ群 83726154 领取，先交10元激活费"])
    data: str | None = Field(default=None, description="base64 image bytes (a screenshot, a poster)")
    account_id: str | None = _ID
    group_id: str | None = _ID
    item_id: str | None = Field(default=None, min_length=1, max_length=256, description="the platform's id of the reported message")
    source: str | None = Field(default=None, max_length=64, description="where it was seen: comment, dm, group_chat, danmaku…")

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
            try:
                validate_text(self.text)
            except InputError as e:
                raise ValueError(str(e)) from None
        return self

    def image_bytes(self) -> bytes:
        try:
            return base64.b64decode(self.data or "", validate=True)
        except (binascii.Error, ValueError):
            raise InputError("`data` is not valid base64") from None


class HandleStat(BaseModel):
    kind: str
    value: str
    items: int | None = None
    flagged: int
    accounts: int = Field(description="accounts that pushed this handle in flagged items")
    first_seen: float | None = None
    last_seen: float | None = None


class Cluster(BaseModel):
    id: int
    accounts: int
    handle_count: int
    flagged_items: int
    created: float
    updated: float
    members: list[str] = Field(description="account ids (the first ones, oldest first)")
    handles: list[HandleStat]


class FlaggedItem(BaseModel):
    item_id: str | None
    ts: float
    fraud_score: float
    decision: str
    labels: list[str]
    handles: list[str]
    source: str | None


class Alert(BaseModel):
    id: int
    ts: float
    rule: Literal["flagged_in_window", "risk", "cluster_size", "report_confirmed"]
    entity_kind: str | None
    entity_id: str | None
    cluster_id: int | None
    item_id: str | None = Field(description="the item that crossed the threshold")
    value: float
    threshold: float
    message: str
    detail: dict


class EntityRisk(BaseModel):
    """An account's or group's risk now, and why."""

    kind: Literal["account", "group"]
    id: str
    level: Literal["low", "elevated", "high"] = Field(description="high: a rule's threshold is met now (or a report was confirmed)")
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
    alerts: list[Alert]
    reports: dict[str, int] = Field(description="reports against it, by status")


class ReportEvent(BaseModel):
    status: str
    ts: float
    note: str | None = None


class ReportStatus(BaseModel):
    """What the reporter sees: where the report stands and the moderator's reason."""

    report_id: str
    status: Literal["received", "in_review", "confirmed", "rejected"]
    status_reason: str | None
    target_type: str
    created_at: float
    updated_at: float
    history: list[ReportEvent]


class ReportReceipt(BaseModel):
    report_id: str
    status: str
    created_at: float
    duplicate: bool = Field(description="true when the idempotency key named a report already stored")
    verdict: Verdict | None = Field(default=None, description="text and image targets: the verdict at intake")
    risk: EntityRisk | None = Field(default=None, description="account and group targets: its risk now, when fanzha has seen it")


class ModeratorEvent(ReportEvent):
    actor: str | None = None


class Report(BaseModel):
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
    labels: list[str] | None
    moderator_id: str | None
    verdict: dict | None
    created_at: float
    updated_at: float
    history: list[ModeratorEvent]

