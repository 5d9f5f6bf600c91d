"""Every FANZHA_* setting, read here and nowhere else, into one typed, frozen object.

    from fanzha.models.settings import settings
    s = settings()                      # parsed from the environment; re-parsed only when a FANZHA_* variable changed
    s.limits.max_image_bytes            # 20 MB unless FANZHA_MAX_IMAGE_BYTES says otherwise
    s.threads_per_process(workers=2)    # FANZHA_THREADS, else the cores shared out over the workers
    s.body_limits()                     # the HTTP gate's body limits, derived from the media limits

Components take their settings when they are built (a Detector, the service, a Platform), never at import
and never as baked-in default arguments, so a value set before start-up is the value used everywhere.
A dataclass rather than pydantic-settings: `import fanzha.models` stays light (no pydantic in the core),
and the parser below is twenty lines. A malformed value is a SettingsError naming the variable.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SettingsError

MB = 1024 * 1024
PREFIX = "FANZHA_"


@dataclass(frozen=True)
class Limits:
    """What a single input may be: the Detector refuses more with LimitExceeded (HTTP 413)."""

    max_text_chars: int = 200_000  # FANZHA_MAX_TEXT_CHARS
    max_image_bytes: int = 20 * MB  # FANZHA_MAX_IMAGE_BYTES
    max_image_pixels: int = 40_000_000  # FANZHA_MAX_IMAGE_PIXELS (checked from the header, before decoding)
    max_video_bytes: int = 200 * MB  # FANZHA_MAX_VIDEO_BYTES
    max_video_seconds: float = 600.0  # FANZHA_MAX_VIDEO_SECONDS
    max_video_pixels: int = 3840 * 2160  # FANZHA_MAX_VIDEO_PIXELS, per frame
    max_video_frames: int = 60 * 60 * 10  # FANZHA_MAX_VIDEO_FRAMES


@dataclass(frozen=True)
class Settings:
    limits: Limits = field(default_factory=Limits)
    # the Detector
    review_threshold: float | None = (
        None  # FANZHA_REVIEW_THRESHOLD (default: the model's tuned `fraud` threshold)
    )
    block_threshold: float | None = None  # FANZHA_BLOCK_THRESHOLD (default 0.9)
    threads: int = (
        0  # FANZHA_THREADS: onnxruntime threads per process (0 = work it out, see threads_per_process)
    )
    ocr_engine: str = "rapidocr"  # FANZHA_OCR_ENGINE
    paddle_det_dir: str | None = None  # FANZHA_PADDLE_DET_DIR
    paddle_rec_dir: str | None = None  # FANZHA_PADDLE_REC_DIR
    # the service
    workers: int = 2  # FANZHA_WORKERS
    model_tag: str | None = None  # FANZHA_MODEL_TAG (default: fanzha-text:latest)
    max_sync_video_seconds: float = 120.0  # FANZHA_MAX_SYNC_VIDEO_SECONDS
    max_latency_ms: int = 2000  # FANZHA_MAX_LATENCY_MS
    max_text_items: int = 256  # FANZHA_MAX_TEXT_ITEMS
    max_batch_items: int = 64  # FANZHA_MAX_BATCH_ITEMS
    max_archive_items: int = 10_000  # FANZHA_MAX_ARCHIVE_ITEMS
    api_keys: tuple[str, ...] = ()  # FANZHA_API_KEYS, comma-separated
    moderator_keys: tuple[str, ...] = ()  # FANZHA_MODERATOR_KEYS, comma-separated
    log_level: str = "INFO"  # FANZHA_LOG_LEVEL
    # the platform's state
    database_url: str | None = None  # FANZHA_DATABASE_URL (default: the SQLite file in data_dir)
    data_dir: Path = field(default_factory=lambda: _default_data_dir(None))  # FANZHA_DATA_DIR
    risk_half_life_hours: float = 24.0  # FANZHA_RISK_HALF_LIFE_HOURS
    alert_window_hours: float = 24.0  # FANZHA_ALERT_WINDOW_HOURS
    alert_flagged: int = 5  # FANZHA_ALERT_FLAGGED
    alert_risk: float = 3.0  # FANZHA_ALERT_RISK
    alert_cluster_accounts: int = 5  # FANZHA_ALERT_CLUSTER_ACCOUNTS
    risk_ignore_handles: tuple[str, ...] = ()  # FANZHA_RISK_IGNORE_HANDLES: kind:value,…
    risk_retention_days: float = 90.0  # FANZHA_RISK_RETENTION_DAYS
    alert_webhook: str | None = None  # FANZHA_ALERT_WEBHOOK
    alert_webhook_secret: str | None = None  # FANZHA_ALERT_WEBHOOK_SECRET
    alert_webhook_timeout_s: float = 5.0  # FANZHA_ALERT_WEBHOOK_TIMEOUT_S
    # moderation: the review queue, claims, disposal actions
    audit_sample: float = 0.01  # FANZHA_AUDIT_SAMPLE: the share of `block` decisions kept for an audit review
    review_retention_days: float = (
        30.0  # FANZHA_REVIEW_RETENTION_DAYS: kept content (text, images, keyframes)
    )
    claim_ttl_s: float = 900.0  # FANZHA_CLAIM_TTL_S: how long a moderator's claim on a case holds
    action_webhook: str | None = None  # FANZHA_ACTION_WEBHOOK: disposal actions POSTed to the platform
    action_webhook_secret: str | None = (
        None  # FANZHA_ACTION_WEBHOOK_SECRET (default: FANZHA_ALERT_WEBHOOK_SECRET)
    )
    console_secret: str | None = (
        None  # FANZHA_CONSOLE_SECRET: signs console sessions (else a random file in data_dir)
    )
    # conversations streamed message by message (POST /conversation_message)
    conversation_idle_s: float = 86400.0  # FANZHA_CONVERSATION_IDLE_S: a conversation this idle starts afresh
    # FANZHA_STREAM_INLINE_CHARS: a streamed message up to this long (normalised) is scored on the worker's event
    # loop, a longer one in a thread; unset: 128 on a SQLite file, 0 (every one in a thread) on another database,
    # whose round trips would hold the loop
    stream_inline_chars: int | None = None
    # training and evaluation
    corpora: str | None = None  # FANZHA_CORPORA: the external corpora directory

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        read = _Reader(env)
        limits = Limits(
            max_text_chars=read.integer("MAX_TEXT_CHARS", Limits.max_text_chars),
            max_image_bytes=read.integer("MAX_IMAGE_BYTES", Limits.max_image_bytes),
            max_image_pixels=read.integer("MAX_IMAGE_PIXELS", Limits.max_image_pixels),
            max_video_bytes=read.integer("MAX_VIDEO_BYTES", Limits.max_video_bytes),
            max_video_seconds=read.number("MAX_VIDEO_SECONDS", Limits.max_video_seconds),
            max_video_pixels=read.integer("MAX_VIDEO_PIXELS", Limits.max_video_pixels),
            max_video_frames=read.integer("MAX_VIDEO_FRAMES", Limits.max_video_frames),
        )
        return cls(
            limits=limits,
            review_threshold=read.number("REVIEW_THRESHOLD", None),
            block_threshold=read.number("BLOCK_THRESHOLD", None),
            threads=read.integer("THREADS", 0),
            ocr_engine=read.text("OCR_ENGINE") or "rapidocr",
            paddle_det_dir=read.text("PADDLE_DET_DIR"),
            paddle_rec_dir=read.text("PADDLE_REC_DIR"),
            workers=read.integer("WORKERS", 2),
            model_tag=read.text("MODEL_TAG"),
            max_sync_video_seconds=read.number("MAX_SYNC_VIDEO_SECONDS", 120.0),
            max_latency_ms=read.integer("MAX_LATENCY_MS", 2000),
            max_text_items=read.integer("MAX_TEXT_ITEMS", 256),
            max_batch_items=read.integer("MAX_BATCH_ITEMS", 64),
            max_archive_items=read.integer("MAX_ARCHIVE_ITEMS", 10_000),
            api_keys=read.items("API_KEYS"),
            moderator_keys=read.items("MODERATOR_KEYS"),
            log_level=read.text("LOG_LEVEL") or "INFO",
            database_url=read.text("DATABASE_URL"),
            conversation_idle_s=read.number("CONVERSATION_IDLE_S", 86400.0),
            stream_inline_chars=read.integer("STREAM_INLINE_CHARS", None),
            data_dir=_default_data_dir(read.text("DATA_DIR"), env.get("XDG_DATA_HOME")),
            risk_half_life_hours=read.number("RISK_HALF_LIFE_HOURS", 24.0),
            alert_window_hours=read.number("ALERT_WINDOW_HOURS", 24.0),
            alert_flagged=read.integer("ALERT_FLAGGED", 5),
            alert_risk=read.number("ALERT_RISK", 3.0),
            alert_cluster_accounts=read.integer("ALERT_CLUSTER_ACCOUNTS", 5),
            risk_ignore_handles=read.items("RISK_IGNORE_HANDLES"),
            risk_retention_days=read.number("RISK_RETENTION_DAYS", 90.0),
            alert_webhook=read.text("ALERT_WEBHOOK"),
            alert_webhook_secret=read.text("ALERT_WEBHOOK_SECRET"),
            alert_webhook_timeout_s=read.number("ALERT_WEBHOOK_TIMEOUT_S", 5.0),
            audit_sample=read.number("AUDIT_SAMPLE", 0.01),
            review_retention_days=read.number("REVIEW_RETENTION_DAYS", 30.0),
            claim_ttl_s=read.number("CLAIM_TTL_S", 900.0),
            action_webhook=read.text("ACTION_WEBHOOK"),
            console_secret=read.text("CONSOLE_SECRET"),
            action_webhook_secret=read.text("ACTION_WEBHOOK_SECRET") or read.text("ALERT_WEBHOOK_SECRET"),
            corpora=read.text("CORPORA"),
        )

    def threads_per_process(self, workers: int = 1) -> int:
        """onnxruntime threads for one process: FANZHA_THREADS, else the cores shared out over `workers`
        (onnxruntime ignores OMP_NUM_THREADS, so every session and OCR engine is given this explicitly)."""
        return self.threads or max(1, (os.cpu_count() or 1) // max(1, workers))

    def body_limits(self) -> dict[str, int]:
        """HTTP body limits per kind of request, from the media limits: a raised FANZHA_MAX_IMAGE_BYTES is
        raised at the gate too. A multipart upload gets 1 MB over its file limit for the form around it; a
        base64 image in JSON 4/3 of its limit, rounded up to a MB, plus 2 MB for the rest of the body."""
        lim = self.limits
        image_b64 = _ceil_mb(4 * math.ceil(lim.max_image_bytes / 3)) + 2 * MB
        return {
            "text": 8 * MB,  # 256 messages of ordinary length; a 200,000-character text is 0.6 MB
            "image": lim.max_image_bytes + MB,
            "video": lim.max_video_bytes + MB,
            "batch": max(64 * MB, image_b64),  # mixed items as base64
            "report": image_b64,  # one reported screenshot as base64
        }

    @property
    def default_database_path(self) -> Path:
        return self.data_dir / "fanzha.db"


def _ceil_mb(n: int) -> int:
    return -(-n // MB) * MB


def _default_data_dir(explicit: str | None, xdg: str | None = None) -> Path:
    """$FANZHA_DATA_DIR, else $XDG_DATA_HOME/fanzha, else ~/.local/share/fanzha."""
    if explicit:
        return Path(explicit)
    return Path(xdg or Path.home() / ".local" / "share") / "fanzha"


class _Reader:
    """FANZHA_<name> from an environment: empty counts as unset; a malformed number names its variable."""

    def __init__(self, env) -> None:
        self.env = env

    def text(self, name: str) -> str | None:
        value = self.env.get(PREFIX + name, "").strip()
        return value or None

    def items(self, name: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in (self.env.get(PREFIX + name) or "").split(",") if part.strip())

    def integer(self, name: str, default):
        return self._parse(name, default, int)

    def number(self, name: str, default):
        return self._parse(name, default, float)

    def _parse(self, name: str, default, kind):
        raw = self.text(name)
        if raw is None:
            return default
        try:
            return kind(raw)
        except ValueError:
            raise SettingsError(
                f"{PREFIX}{name}={raw!r} is not a{'n integer' if kind is int else ' number'}"
            ) from None


_cached: tuple[tuple, Settings] | None = None


def _snapshot() -> tuple:
    """The FANZHA_* part of the environment, cheaply (os.environ's own dict, without decoding every key)."""
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict):
        return tuple(
            kv
            for kv in data.items()
            if kv[0][:7] in (b"FANZHA_", "FANZHA_") or kv[0] in (b"XDG_DATA_HOME", "XDG_DATA_HOME")
        )
    return tuple((k, v) for k, v in os.environ.items() if k.startswith(PREFIX) or k == "XDG_DATA_HOME")


def settings() -> Settings:
    """The settings now: parsed once, and again only when a FANZHA_* variable changed (tests, or a caller that
    sets one before building a component). Cheap enough for any path (a few µs)."""
    global _cached
    key = _snapshot()
    cached = _cached
    if cached is None or cached[0] != key:
        cached = _cached = (key, Settings.from_env())
    return cached[1]
