"""fanzha as a BentoML service: online and batch endpoints over text, images and video.

    fanzha import-model                          # the committed default → BentoML model store (once)
    bentoml serve fanzha.serving.service:Fanzha  # http://localhost:3000, OpenAPI at /docs.json

Every endpoint calls the one Detector; none re-implements scoring. User errors are 4xx with a JSON body
naming the problem (see gate.py for keys, body limits and request ids).
"""

from __future__ import annotations

import logging
import os
from http import HTTPStatus
from pathlib import Path
from typing import Annotated

import bentoml
from bentoml.exceptions import BentoMLException
from pydantic import Field

from fanzha.models import Detector, DurationExceeded, InputError, LimitExceeded, UnsupportedMedia
from fanzha.models.media import sniff

from .duties import DUTY_BODY_LIMITS, MODERATOR_PATHS, PlatformDuties
from .gate import MB, Gate, configure_logging
from .metrics import count_verdict
from .schemas import (
    MAX_ARCHIVE_ITEMS,
    MAX_BATCH_ITEMS,
    MAX_TEXT_ITEMS,
    BatchItem,
    BatchResult,
    JobStatus,
    TextItem,
    Verdict,
)
from .store import MODEL_NAME

logger = logging.getLogger("fanzha.serving")
configure_logging()

# two workers with one onnxruntime thread each beat one with two on 2 cores (bench/serve_load.py): the
# Python side of a request (HTTP, validation, JSON) runs in parallel too
WORKERS = int(os.environ.get("FANZHA_WORKERS", 2))
# onnxruntime ignores OMP_NUM_THREADS: each worker gets its share of the cores explicitly
THREADS = int(os.environ.get("FANZHA_THREADS", 0)) or max(1, (os.cpu_count() or 1) // WORKERS)
MODEL_TAG = os.environ.get("FANZHA_MODEL_TAG", f"{MODEL_NAME}:latest")
MAX_SYNC_VIDEO_SECONDS = float(os.environ.get("FANZHA_MAX_SYNC_VIDEO_SECONDS", 120))  # longer: use the task
# adaptive batching: up to 64 texts per model call, waiting at most a few ms to fill a batch
MAX_BATCH_SIZE, MAX_LATENCY_MS = 64, int(os.environ.get("FANZHA_MAX_LATENCY_MS", 2000))

BODY_LIMITS = {
    "/classify_text": 8 * MB,
    "/classify_image": 21 * MB,
    "/classify_video": 201 * MB,
    "/classify_batch": 64 * MB,
    "/scan_video/submit": 201 * MB,
    "/classify_archive/submit": 64 * MB,
}


class UnsupportedMediaType(BentoMLException):
    error_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class TooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def _bad_input(e: InputError) -> BentoMLException:
    """The Detector's InputError as the right 4xx: 413 over a limit, 415 not media we read, else 400."""
    if isinstance(e, LimitExceeded):
        return TooLarge(str(e))
    if isinstance(e, UnsupportedMedia):
        return UnsupportedMediaType(str(e))
    return bentoml.exceptions.InvalidArgument(str(e))


@bentoml.service(workers=WORKERS, traffic={"timeout": 600}, http={"port": 3000})
class Fanzha(PlatformDuties):  # + account/group risk, alerts and fraud reports (duties.py)
    model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.detector = Detector.load(self.model.path, threads=THREADS)
        self.tag = str(self.model.tag)
        _ = self.detector.ocr  # build the OCR engine now, not on the first image request
        self._open_platform_stores()  # risk state and reports: FANZHA_DATABASE_URL or the default SQLite file
        logger.info("fanzha model %s (%s), %d onnxruntime threads", self.tag, self.detector.model_version, THREADS)

    def __is_ready__(self) -> bool:
        return self.detector is not None

    # -- text ---------------------------------------------------------------------------------------------
    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def classify_text(self, items: Annotated[list[TextItem], Field(min_length=1, max_length=MAX_TEXT_ITEMS)]) -> list[Verdict]:
        """Classify messages; one verdict per item, in order. Concurrent requests are batched together."""
        return self._texts(items, "classify_text")

    # -- media ----------------------------------------------------------------------------------------------
    @bentoml.api
    def classify_image(self, file: Path, id: str | None = None) -> Verdict:
        """Upload an image (JPEG, PNG, WebP, GIF, BMP, TIFF): OCR + QR codes → verdict with boxes."""
        return self._media(file.read_bytes(), "image", "classify_image", {"id": id})

    @bentoml.api
    def classify_video(self, file: Path, id: str | None = None) -> Verdict:
        """Upload a short video (MP4, MOV, WebM, MKV, FLV): captions → verdict with a timeline.
        Clips longer than FANZHA_MAX_SYNC_VIDEO_SECONDS go through the scan_video task."""
        return self._media(file.read_bytes(), "video", "classify_video", {"id": id}, max_seconds=MAX_SYNC_VIDEO_SECONDS)

    @bentoml.api
    def classify_batch(self, items: Annotated[list[BatchItem], Field(min_length=1, max_length=MAX_BATCH_ITEMS)]) -> list[BatchResult]:
        """A bounded list of mixed items; a bad item gets its own error and the others are still scored."""
        return self._mixed(items, "classify_batch", MAX_SYNC_VIDEO_SECONDS)

    # -- long jobs ------------------------------------------------------------------------------------------
    @bentoml.task
    def scan_video(self, file: Path, id: str | None = None) -> Verdict:
        """A long video as a task: POST /scan_video/submit, then /scan_video/status and /scan_video/get."""
        return self._media(file.read_bytes(), "video", "scan_video", {"id": id})

    @bentoml.task
    def classify_archive(self, items: Annotated[list[BatchItem], Field(min_length=1, max_length=MAX_ARCHIVE_ITEMS)]) -> JobStatus:
        """A bounded archive job (up to FANZHA_MAX_ARCHIVE_ITEMS mixed items) as a task."""
        results = self._mixed(items, "classify_archive")
        failed = sum(r.error is not None for r in results)
        return JobStatus(scored=len(results) - failed, failed=failed, results=results)

    # -- shared helpers (plain methods: a batchable API must not be called from another API) ------------------
    def _verdict(self, verdict, endpoint: str, ids: dict) -> Verdict:
        d = verdict.to_dict()
        count_verdict(endpoint, d)
        return Verdict(**{k: v for k, v in ids.items() if v is not None}, **d, model_tag=self.tag)

    def _texts(self, items: list[TextItem], endpoint: str) -> list[Verdict]:
        verdicts = self.detector.classify_texts([item.text for item in items])
        return self._track([self._verdict(v, endpoint, item.model_dump(exclude={"text"})) for item, v in zip(items, verdicts, strict=True)])

    def _media(self, data: bytes, expected: str, endpoint: str, ids: dict, max_seconds: float | None = None) -> Verdict:
        try:
            kind = sniff(data[:512])
            if kind != expected:
                raise UnsupportedMedia(f"unsupported media: this endpoint takes a{'n' if expected == 'image' else ''} {expected}, "
                                 f"the upload is a{'n' if kind == 'image' else ''} {kind}")
            if kind == "image":
                verdict = self.detector.classify_image(data)
            else:
                verdict = self.detector.classify_video(data, max_seconds=max_seconds)
        except DurationExceeded as e:
            if max_seconds is not None:
                e = DurationExceeded(f"{e}: this endpoint answers synchronously (FANZHA_MAX_SYNC_VIDEO_SECONDS); "
                                     "submit longer videos to /scan_video/submit")
            raise _bad_input(e) from None
        except InputError as e:
            raise _bad_input(e) from None
        return self._track([self._verdict(verdict, endpoint, ids)])[0]

    def _mixed(self, items: list[BatchItem], endpoint: str, max_seconds: float | None = None) -> list[BatchResult]:
        results: list[BatchResult | None] = [None] * len(items)
        texts = [i for i, item in enumerate(items) if item.type == "text"]
        if texts:
            for i, verdict in zip(texts, self._texts([TextItem(**items[i].model_dump(exclude={"type", "data"})) for i in texts], endpoint), strict=True):
                results[i] = BatchResult(id=items[i].id, verdict=verdict)
        for i, item in enumerate(items):
            if item.type == "text":
                continue
            ids = item.model_dump(include={"id", "account_id", "group_id", "source"})
            try:
                results[i] = BatchResult(id=item.id, verdict=self._media(item.payload(), item.type, endpoint, ids, max_seconds))
            except (InputError, BentoMLException) as e:  # bad base64 / an upload _media refused
                results[i] = BatchResult(id=item.id, error=str(e))
        return [r for r in results if r is not None]


# BentoML also routes a task's plain POST /<task> and runs it synchronously: only /<task>/submit is ours
REFUSED_PATHS = {f"/{task}": f"submit it to /{task}/submit, then poll /{task}/status" for task in ("scan_video", "classify_archive")}
Fanzha.add_asgi_middleware(Gate, body_limits={**BODY_LIMITS, **DUTY_BODY_LIMITS}, moderator_paths=MODERATOR_PATHS,
                           refused_paths=REFUSED_PATHS)

# BentoML 1.4.40 works out a JSON response's media type by generating the output's JSON Schema again for
# every response: a third of the server's CPU under load (py-spy, bench/serve_load.py). Every answer here
# is JSON, so say so once.
for _api in Fanzha.apis.values():
    _api.output_spec.media_type = "application/json"
