"""Task endpoints (`/<task>/submit`, `/status`, `/get`, `/retry`, `/cancel`) held to what the synchronous ones do.

BentoML accepts any body at `/<task>/submit`, answers 200 with a task id and lets the task fail later, and it
answers a task id at every task's `/status` and `/get`, whichever endpoint made it. Two checks the gate runs
before BentoML sees the request:

- `SubmitCheck`: the body is parsed and validated exactly as the task will parse it (the API's own input
  spec), plus a per-task check of the content (a long video is probed: an image, a truncated file or no video
  stream is refused now, not later). A refusal is the status the synchronous endpoint would answer.
- `TaskOwners`: which task endpoint made a task id, read from BentoML's task result store, so that
  `/scan_video/get` refuses an archive task's id with a 404.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import anyio
from bentoml.exceptions import BentoMLException
from pydantic import ValidationError
from starlette.requests import Request

from fanzha.models.errors import FanzhaError

from .errors import http_error

TASK_ACTIONS = ("status", "get", "retry", "cancel")


class Refusal(Exception):
    """An answer the gate sends instead of passing the request on: a status and a JSON object."""

    def __init__(self, status: int, body: dict) -> None:
        super().__init__(body.get("error"))
        self.status, self.body = status, body


class SubmitCheck:
    """Validate a task submission as the task itself will: `await check(scope, body)` raises Refusal."""

    def __init__(self, service, name: str, content_check: Callable[[object], None] | None = None) -> None:
        self.service, self.api = service, service.apis[name]
        self.content_check = (
            content_check  # called (in a thread) with the validated input: raise a FanzhaError
        )

    async def __call__(self, scope: dict, body: bytes) -> None:
        from _bentoml_impl.serde import ALL_SERDE  # the parser BentoML will pick for this media type

        sent = {"done": False}

        async def replay() -> dict:
            if sent["done"]:
                return {"type": "http.disconnect"}
            sent["done"] = True
            return {"type": "http.request", "body": body, "more_body": False}

        request = Request(dict(scope), replay)  # a copy: BentoML's context adds keys to the scope it is given
        media_type = request.headers.get("Content-Type", "application/json").split(";")[0].strip()
        serde = ALL_SERDE.get(media_type, ALL_SERDE["application/json"])()
        try:
            with self.service.context.in_request(
                request
            ):  # uploaded files go to this request's temp dir, removed after
                try:
                    data = await self.api.input_spec.from_http_request(request, serde)
                    if self.content_check is not None:
                        await anyio.to_thread.run_sync(self.content_check, data)
                finally:
                    await request.close()
        except ValidationError as e:
            raise Refusal(
                400,
                {
                    "error": f"{e.error_count()} validation error for {e.title}",
                    "detail": e.errors(include_context=False, include_input=False, include_url=False),
                },
            ) from None
        except FanzhaError as e:
            mapped = http_error(e)
            if mapped is None:
                raise
            raise Refusal(int(mapped.error_code), {"error": str(e)}) from None
        except BentoMLException as e:
            status = int(e.error_code)
            if status >= 500:
                raise
            raise Refusal(status, {"error": str(e)}) from None


def probe_video(data) -> None:
    """scan_video's content check: a readable video with a video stream, within the byte limit (else the error
    the synchronous endpoint answers: 400, 413 or 415)."""
    from fanzha.models.errors import UnsupportedMedia
    from fanzha.models.media import sniff
    from fanzha.models.video import open_video

    path = Path(data.file)
    with path.open("rb") as f:
        kind = sniff(f.read(512))
    if kind != "video":
        raise UnsupportedMedia("unsupported media: this endpoint takes a video, the upload is an image")
    open_video(path).close()


class TaskOwners:
    """Which task endpoint made a task id, from BentoML's task result store (SQLite, read-only)."""

    def __init__(self, path: str | None = None) -> None:
        if path is None:
            from bentoml._internal.configuration.containers import BentoMLContainer

            path = BentoMLContainer.result_store_file.get()
        self.path = path

    async def __call__(self, task_id: str) -> str | None:
        """The task's endpoint name; None when the id is unknown or the store cannot be read (BentoML answers)."""
        if self.path == ":memory:" or not Path(self.path).is_file():
            return None
        return await anyio.to_thread.run_sync(self._owner, task_id)

    def _owner(self, task_id: str) -> str | None:
        try:
            with closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5)) as conn:
                row = conn.execute("SELECT name FROM result WHERE task_id = ?", (task_id,)).fetchone()
        except sqlite3.Error:
            return None
        return row[0] if row else None
