"""Request and response bodies of the service (they are the OpenAPI schema at /docs.json)."""

from __future__ import annotations

import base64
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fanzha.models import InputError, validate_text

MAX_TEXT_ITEMS = int(os.environ.get("FANZHA_MAX_TEXT_ITEMS", 256))  # per classify_text request
MAX_BATCH_ITEMS = int(os.environ.get("FANZHA_MAX_BATCH_ITEMS", 64))  # per classify_batch request
MAX_ARCHIVE_ITEMS = int(os.environ.get("FANZHA_MAX_ARCHIVE_ITEMS", 10_000))  # per archive task

_ID = Field(default=None, max_length=256)


class TextItem(BaseModel):
    """One message to classify. The ids travel back unchanged with its verdict."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="the message, up to FANZHA_MAX_TEXT_CHARS characters",
                      examples=["恭喜你成为幸运粉丝！加QQ群 83726154 免费领签名照，先交29元激活费"])
    id: str | None = _ID
    account_id: str | None = _ID
    group_id: str | None = _ID
    source: str | None = Field(default=None, max_length=64, description="where it was posted: comment, dm, group_chat, danmaku…")

    @field_validator("text")
    @classmethod
    def _readable(cls, text: str) -> str:
        try:
            return validate_text(text)
        except InputError as e:
            raise ValueError(str(e)) from None


class Evidence(BaseModel):
    kind: str
    value: str
    start: int = Field(description="span in the request's text, or in the verdict's `text` for images/videos: [start, end)")
    end: int
    text: str
    locations: list[dict] | None = Field(default=None, description="OCR lines / QR codes (with boxes) or video segments (with times)")


class Verdict(BaseModel):
    """The Detector's verdict, as `fanzha classify` / `fanzha scan` print it."""

    id: str | None = None
    account_id: str | None = None
    group_id: str | None = None
    source: str | None = None
    fraud_score: float = Field(description="P(at least one scam label applies)")
    scores: dict[str, float]
    labels: list[str] = Field(description="the kinds of lure, for review/block decisions")
    decision: Literal["pass", "review", "block"]
    evidence: list[Evidence]
    model_version: str
    model_tag: str = Field(description="the BentoML model-store tag the service runs")
    timings: dict[str, float] = Field(default_factory=dict)
    text: str | None = Field(default=None, description="images/videos: the text that was read and classified")
    ocr: list[dict] | None = None
    qr: list[dict] | None = None
    timeline: list[dict] | None = None
    media: dict | None = None
    alerts: list[dict] | None = Field(default=None, description="early-warning alerts THIS item raised: its account, group or "
                                      "campaign cluster crossed a threshold (see /alerts)")


class BatchItem(BaseModel):
    """One item of a mixed batch: a text, or an image/video as base64 bytes."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["text", "image", "video"]
    text: str | None = None
    data: str | None = Field(default=None, description="base64 file bytes, for images and videos")
    id: str | None = _ID
    account_id: str | None = _ID
    group_id: str | None = _ID
    source: str | None = Field(default=None, max_length=64)

    @model_validator(mode="after")
    def _payload(self) -> BatchItem:
        if self.type == "text":
            if self.text is None or self.data is not None:
                raise ValueError("a text item carries `text` and no `data`")
            try:
                validate_text(self.text)
            except InputError as e:
                raise ValueError(str(e)) from None
        elif self.data is None or self.text is not None:
            raise ValueError(f"an {self.type} item carries base64 `data` and no `text`")
        return self

    def payload(self) -> bytes:
        try:
            return base64.b64decode(self.data or "", validate=True)
        except ValueError:
            raise InputError("`data` is not valid base64") from None


class BatchResult(BaseModel):
    """A verdict, or the error that item got (the other items are still scored)."""

    id: str | None = None
    verdict: Verdict | None = None
    error: str | None = None


class JobStatus(BaseModel):
    scored: int
    failed: int
    results: list[BatchResult]
