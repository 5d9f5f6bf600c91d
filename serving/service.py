"""fanzha as a BentoML service: online and batch endpoints over text, images and video, and the platform's.

    fanzha import-model                          # the committed default → BentoML model store (once)
    bentoml serve fanzha.serving.service:Fanzha  # http://localhost:3000, OpenAPI at /docs.json

Every classification goes through the Platform facade (fanzha.platform), which scores with the one Detector
and tracks the items that name an account or group; the platform's own endpoints are in platform_api.py.
User errors are 4xx with a JSON body naming the problem (errors.py for the mapping, gate.py for keys, body
limits and request ids).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Annotated

import anyio
import anyio.to_thread
import bentoml
from pydantic import Field

from fanzha.models import Detector, DurationExceeded, InputError, ModelError
from fanzha.models.conversation import MAX_MESSAGES, Message
from fanzha.models.normalize import normalize
from fanzha.models.settings import settings
from fanzha.platform import Contended, ItemRef, Platform, Scored, ScoredConversation

from .console import create_app as create_console
from .errors import Unavailable, http_errors
from .forms import guard_inputs
from .gate import Gate, configure_logging, served_routes, without_leaking_timeouts
from .metrics import count_verdict
from .model_store import MODEL_NAME
from .openapi import publish
from .platform_api import MODERATOR_PATHS, PlatformEndpoints
from .schemas import (
    BatchItem,
    BatchResult,
    ConversationBody,
    Id,
    JobStatus,
    MessageItem,
    OptionalId,
    Source,
    StreamMessage,
    TextItem,
    VerdictBody,
)
from .tasks import SubmitCheck, TaskOwners, probe_video

logger = logging.getLogger("fanzha.serving")
configure_logging()

SETTINGS = settings()  # decorators below need their values when the module is imported
# two workers with one onnxruntime thread each beat one with two on 2 cores (bench/serve_load.py): the
# Python side of a request (HTTP, validation, JSON) runs in parallel too
WORKERS = SETTINGS.workers
THREADS = SETTINGS.threads_per_process(WORKERS)  # each worker gets its share of the cores
MODEL_TAG = SETTINGS.model_tag or f"{MODEL_NAME}:latest"
MAX_SYNC_VIDEO_SECONDS = SETTINGS.max_sync_video_seconds  # longer: use the task
# adaptive batching: up to 64 texts per model call, waiting at most a few ms to fill a batch
MAX_BATCH_SIZE, MAX_LATENCY_MS = 64, SETTINGS.max_latency_ms
# a streamed chat line (up to this many characters once normalised: one or two encoder windows, a few ms) is scored
# on the worker's event loop: handing it to BentoML's thread and back cost a fifth of the endpoint's throughput at
# 8 clients (bench/conversation.py). Anything that may wait goes to a thread: a longer text, a write that would
# wait, a tip's risk-state work, the purges (Platform.after_message_waits). FANZHA_STREAM_INLINE_CHARS overrides it.
INLINE_MESSAGE_CHARS = 128

_LIMITS = (
    SETTINGS.body_limits()
)  # derived from the media limits: FANZHA_MAX_IMAGE_BYTES raises /classify_image's too
BODY_LIMITS = {
    "/classify_text": _LIMITS["text"],
    "/classify_image": _LIMITS["image"],
    "/classify_video": _LIMITS["video"],
    "/classify_conversation": _LIMITS["text"],  # 200 messages
    "/conversation_message": _LIMITS["text"],
    "/classify_batch": _LIMITS["batch"],
    "/scan_video/submit": _LIMITS["video"],
    "/classify_archive/submit": _LIMITS["batch"],
    "/report": _LIMITS["report"],  # a reported screenshot as base64
}


# the review console 审核台 (serving/console/): its pages use this worker's service instance's platform
CONSOLE = create_console()


@bentoml.asgi_app(CONSOLE, path="/console", name="console")
# the gate writes one JSON line per request (request id, path, status, ms): BentoML's own access log would be a
# second line for each, in another format, and cost a streamed message about a tenth of its CPU time
@bentoml.service(
    workers=WORKERS,
    traffic={"timeout": 600},
    http={"port": 3000},
    logging={"access": {"enabled": False}},
)
class Fanzha(PlatformEndpoints):  # + account/group risk, alerts and fraud reports (platform_api.py)
    model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.detector = Detector.load(self.model.path, threads=THREADS)
        self.tag = str(self.model.tag)
        _ = self.detector.ocr  # build the OCR engine now, not on the first image request
        self.no_conversations: str | None = None  # why the conversation endpoints answer 503, if they do
        try:
            _ = self.detector.conversations  # the conversation head, loaded now too
        except ModelError as e:
            self.no_conversations = f"this deployment's model cannot score conversations: {e}"
            logger.warning(self.no_conversations)
        # risk state and reports: FANZHA_DATABASE_URL or the default SQLite file, migrated on open
        self.platform = Platform.from_settings(self.detector, model_tag=self.tag)
        # a database across a network would hold the event loop for its round trips (and an in-memory SQLite
        # database is one connection for every thread): then every message in a thread
        self.inline_chars = SETTINGS.stream_inline_chars
        if self.inline_chars is None:
            self.inline_chars = INLINE_MESSAGE_CHARS if self.platform.database.is_sqlite_file else 0
        self._stream_threads: anyio.CapacityLimiter | None = None  # made on the event loop, at first use
        logger.info(
            "fanzha model %s (%s), %d onnxruntime threads", self.tag, self.detector.model_version, THREADS
        )
        logger.info(
            "risk state and reports in %s (schema version %d)",
            self.platform.database.safe_url,
            self.platform.database.version,
        )

    def __is_ready__(self) -> bool:
        return self.detector is not None

    # -- text ---------------------------------------------------------------------------------------------
    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def classify_text(
        self, items: Annotated[list[TextItem], Field(min_length=1, max_length=SETTINGS.max_text_items)]
    ) -> list[VerdictBody]:
        """Classify messages; one verdict per item, in order. Concurrent requests are batched together."""
        return self._texts(items, "classify_text")

    # -- conversations --------------------------------------------------------------------------------------
    @bentoml.api
    def classify_conversation(
        self,
        messages: Annotated[list[MessageItem], Field(min_length=1, max_length=MAX_MESSAGES)],
        id: OptionalId = None,
        account_id: OptionalId = None,
        group_id: OptionalId = None,
        source: Source = None,
    ) -> ConversationBody:
        """A whole conversation (up to 200 messages): each message read with those before it, the chat scored as
        a funnel (bait → private channel → fee), with each message's stage and the message that tipped it."""
        ref = ItemRef(id=id, account_id=account_id, group_id=group_id, source=source)
        self._conversations_available()
        with http_errors():
            scored = self.platform.classify_conversation([m.message() for m in messages], ref)
        return self._conversation_answer(scored, "classify_conversation")

    @bentoml.api
    async def conversation_message(
        self,
        conversation_id: Id,
        message: StreamMessage,
        account_id: OptionalId = None,
        group_id: OptionalId = None,
    ) -> ConversationBody:
        """One more message of a live conversation: the conversation's verdict after it. The store keeps each
        conversation's recent window (FANZHA_CONVERSATION_IDLE_S); the message that tips it carries `alert`."""
        self._conversations_available()
        with http_errors():
            scored = await self._stream(conversation_id, message.message(), account_id, group_id)
        return self._conversation_answer(scored, "conversation_message")

    # -- media ----------------------------------------------------------------------------------------------
    @bentoml.api
    def classify_image(self, file: Path, id: OptionalId = None) -> VerdictBody:
        """Upload an image (JPEG, PNG, WebP, GIF, BMP, TIFF): OCR + QR codes → verdict with boxes."""
        with http_errors():
            return self._answer(self._media(file.read_bytes(), "image", ItemRef(id=id)), "classify_image")

    @bentoml.api
    def classify_video(self, file: Path, id: OptionalId = None) -> VerdictBody:
        """Upload a short video (MP4, MOV, WebM, MKV, FLV): captions → verdict with a timeline.
        Clips longer than FANZHA_MAX_SYNC_VIDEO_SECONDS go through the scan_video task."""
        with http_errors():
            scored = self._media(file.read_bytes(), "video", ItemRef(id=id), MAX_SYNC_VIDEO_SECONDS)
            return self._answer(scored, "classify_video")

    @bentoml.api
    def classify_batch(
        self, items: Annotated[list[BatchItem], Field(min_length=1, max_length=SETTINGS.max_batch_items)]
    ) -> list[BatchResult]:
        """A bounded list of mixed items; a bad item gets its own error and the others are still scored."""
        return self._mixed(items, "classify_batch", MAX_SYNC_VIDEO_SECONDS)

    # -- long jobs ------------------------------------------------------------------------------------------
    @bentoml.task
    def scan_video(self, file: Path, id: OptionalId = None) -> VerdictBody:
        """A long video as a task: POST /scan_video/submit, then /scan_video/status and /scan_video/get."""
        with http_errors():
            return self._answer(self._media(file.read_bytes(), "video", ItemRef(id=id)), "scan_video")

    @bentoml.task
    def classify_archive(
        self, items: Annotated[list[BatchItem], Field(min_length=1, max_length=SETTINGS.max_archive_items)]
    ) -> JobStatus:
        """A bounded archive job (up to FANZHA_MAX_ARCHIVE_ITEMS mixed items) as a task."""
        results = self._mixed(items, "classify_archive")
        failed = sum(r.error is not None for r in results)
        return JobStatus(scored=len(results) - failed, failed=failed, results=results)

    # -- shared helpers (plain methods: a batchable API must not be called from another API) ------------------
    def _answer(self, scored: Scored, endpoint: str) -> VerdictBody:
        verdict = VerdictBody.of(scored, self.tag)
        count_verdict(endpoint, verdict.decision, verdict.labels)
        return verdict

    def _conversations_available(self) -> None:
        if self.no_conversations:
            raise Unavailable(self.no_conversations)

    def _conversation_answer(self, scored, endpoint: str) -> ConversationBody:
        body = ConversationBody.of(scored, self.tag)
        count_verdict(endpoint, body.decision, body.labels)
        return body

    async def _stream(
        self, conversation_id: str, message: Message, account_id: str | None, group_id: str | None
    ) -> ScoredConversation:
        """Platform.conversation_message, with a chat line read and stored on the event loop by one try that
        never waits; a longer text, a try that would wait, and the follow-up that may wait run in this
        worker's thread (a message read there: Platform.conversation_message whole)."""
        platform = self.platform
        args = (conversation_id, message, account_id, group_id)
        prepared = None
        norm = normalize(message.text) if len(message.text) <= self.inline_chars else None
        if norm is not None and len(norm.text) <= self.inline_chars:
            try:
                scored, step = platform.read_conversation_message(*args, normalized=norm, wait=False)
            except Contended as e:  # another writer (thread or worker) holds the lock or won the swap
                prepared = e.prepared
            else:
                purge = platform.conversations.purge_due()  # decided once: the follow-up gets the same answer
                if not platform.after_message_waits(scored, step, purge):
                    platform.after_conversation_message(scored, step, purge)  # nothing, or a tip's local case
                    return scored
                with anyio.CancelScope(shield=True):  # the message is stored: its follow-up must happen
                    await self._in_thread(platform.after_conversation_message, scored, step, purge)
                return scored
        return await self._in_thread(platform.conversation_message, *args, normalized=norm, prepared=prepared)

    async def _in_thread(self, func, *args, **kwargs):
        """Run blocking work in this worker's one thread for it (anyio's default pool also serves the probes)."""
        if self._stream_threads is None:
            self._stream_threads = anyio.CapacityLimiter(1)
        return await anyio.to_thread.run_sync(
            functools.partial(func, *args, **kwargs), limiter=self._stream_threads
        )

    def _texts(self, items: list[TextItem], endpoint: str) -> list[VerdictBody]:
        refs = [ItemRef(**item.model_dump(exclude={"text"})) for item in items]
        with http_errors():
            scored = self.platform.classify_texts([item.text for item in items], refs)
        return [self._answer(s, endpoint) for s in scored]

    def _media(self, data: bytes, expected: str, ref: ItemRef, max_seconds: float | None = None) -> Scored:
        """Score an upload; InputError (→ 4xx) when it is not the `expected` kind or over a limit."""
        try:
            return self.platform.classify_media(data, ref, expected=expected, max_seconds=max_seconds)
        except DurationExceeded as e:
            if max_seconds is None:
                raise
            raise DurationExceeded(
                f"{e}: this endpoint answers synchronously (FANZHA_MAX_SYNC_VIDEO_SECONDS); "
                "submit longer videos to /scan_video/submit"
            ) from None

    def _mixed(
        self, items: list[BatchItem], endpoint: str, max_seconds: float | None = None
    ) -> list[BatchResult]:
        results: list[BatchResult | None] = [None] * len(items)
        texts = [i for i, item in enumerate(items) if item.type == "text"]
        if texts:
            for i, verdict in zip(
                texts,
                self._texts(
                    [TextItem(**items[i].model_dump(exclude={"type", "data"})) for i in texts], endpoint
                ),
                strict=True,
            ):
                results[i] = BatchResult(id=items[i].id, verdict=verdict)
        for i, item in enumerate(items):
            if item.type == "text":
                continue
            ref = ItemRef(**item.model_dump(include={"id", "account_id", "group_id", "source"}))
            try:
                results[i] = BatchResult(
                    id=item.id,
                    verdict=self._answer(self._media(item.payload(), item.type, ref, max_seconds), endpoint),
                )
            except InputError as e:  # bad base64 / an upload the Detector refused
                results[i] = BatchResult(id=item.id, error=str(e))
        return [r for r in results if r is not None]


# BentoML also routes a task's plain POST /<task> and runs it synchronously: only /<task>/submit is ours
TASKS = ("scan_video", "classify_archive")
REFUSED_PATHS = {f"/{task}": f"submit it to /{task}/submit, then poll /{task}/status" for task in TASKS}

# a form BentoML cannot parse is a 400, and a file field takes only an uploaded file (nothing is fetched)
guard_inputs(Fanzha)


class GatedService(type(Fanzha)):
    """The service with the gate in front of everything, BentoML's own middlewares included.

    BentoML puts a service's ASGI middlewares (add_asgi_middleware) behind its own: its metrics, tracing and
    access log would see every request first, and its request metrics are labelled with the raw path (a
    series per path a client invents). Starlette's add_middleware on the built app puts the gate outermost, so
    a request the gate refuses (no key, an unknown path) reaches nothing of BentoML's."""

    __slots__ = ()

    def to_asgi(self, is_main: bool = True, *args, **kwargs):
        app = super().to_asgi(is_main, *args, **kwargs)
        without_leaking_timeouts(app)
        app.add_middleware(
            Gate,
            body_limits=BODY_LIMITS,
            moderator_paths=MODERATOR_PATHS,
            refused_paths=REFUSED_PATHS,
            routes=served_routes(app),
            tasks=TASKS,
            task_owner=TaskOwners(),
            apps={"/console": CONSOLE},  # straight to the console: it signs its own users in
            checks={
                "/scan_video/submit": SubmitCheck(self, "scan_video", probe_video),
                "/classify_archive/submit": SubmitCheck(self, "classify_archive"),
            },
        )
        return app


Fanzha.__class__ = GatedService

# BentoML 1.4.40 works out a JSON response's media type by generating the output's JSON Schema again for
# every response: a third of the server's CPU under load (py-spy, bench/serve_load.py). Every answer here
# is JSON, so say so once.
for _api in Fanzha.apis.values():
    _api.output_spec.media_type = "application/json"

# /docs.json as valid OpenAPI 3.0 that every answer conforms to, and nullable fields BentoML's clients read (openapi.py)
publish(Fanzha)
