"""One ASGI middleware in front of everything, BentoML's own middlewares included: request ids, API keys,
known routes, body limits, task checks, error bodies, logs, latency.

- Every request gets an id (the client's X-Request-ID, else a new one), echoed in the response header and
  in the one structured log line written per request.
- With FANZHA_API_KEYS set (comma-separated), every path but the health probes needs
  `Authorization: Bearer <key>` (the scheme in any case, RFC 7235) or `X-API-Key: <key>`; a key anywhere
  else (the query string, a cookie, a header without the scheme) is no key. Without keys the service is
  open (local use).
- With FANZHA_MODERATOR_KEYS set, the moderator paths (reading and resolving fraud reports) need one of
  those keys (401 without a key, 403 with another key); a moderator key also opens every other path.
- Only the paths the app serves get past the gate (`routes`): any other path is a 404 here, so BentoML's
  metrics (labelled with the raw path) never see it, and no redirect is built from a client's Host header.
- Bodies over the endpoint's limit are refused with 413 before they are read (Content-Length) or as soon
  as they pass the limit (chunked uploads).
- Task submissions are validated before BentoML stores them (`checks`, tasks.py), and a task id is refused
  at another task's endpoints (`task_owner`).
- Error bodies are always one JSON object with an "error" field (BentoML wraps some in a list, Starlette
  answers some in plain text); a 503 (adaptive batching shedding load) says so and carries Retry-After.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs

from fanzha.models.settings import MB, settings

from .metrics import metrics

logger = logging.getLogger("fanzha.serving")
OPEN_PATHS = ("/healthz", "/livez", "/readyz")
OVERLOADED = "overloaded, retry later"
RETRY_AFTER_S = 1
TASK_ACTIONS = ("status", "get", "retry", "cancel")

# a check run on a buffered request body before the app sees it: raises tasks.Refusal to answer instead
Check = Callable[[dict, bytes], Awaitable[None]]


class Gate:
    def __init__(
        self,
        app,
        body_limits: dict[str, int],
        default_limit: int = 2 * MB,
        moderator_paths: tuple[str, ...] = (),
        refused_paths: dict[str, str] | None = None,
        routes: Iterable[str | re.Pattern] | None = None,
        checks: dict[str, Check] | None = None,
        task_owner: Callable[[str], Awaitable[str | None]] | None = None,
        tasks: Iterable[str] = (),
        apps: dict[str, object] | None = None,
        app_limit: int = 64 * 1024,
    ) -> None:
        """`routes`: the paths the app serves (plain strings, or compiled patterns for routes with parameters);
        None lets every path through. `checks`: path → a check of the whole body (task submissions).
        `task_owner`: task id → the task that made it; `tasks`: the task names whose /status, /get, /retry and
        /cancel must only see their own ids. `apps`: path prefix → a mounted ASGI app (the review console) that the
        gate hands its requests to directly, past BentoML's middlewares (whose metrics label the raw path, and the
        console's paths carry case ids); it authenticates its own users, answers its own errors (HTML pages) and
        gets a request id, a log line, a latency sample under its prefix, and a body limit of `app_limit`."""
        self.app = app
        self.apps = dict(apps or {})
        self.app_limit = app_limit
        self.refused_paths = refused_paths or {}  # path → what to use instead (404 with that hint)
        self.body_limits = body_limits
        self.default_limit = default_limit
        self.routes = None if routes is None else {r for r in routes if isinstance(r, str)}
        self.route_patterns = [] if routes is None else [r for r in routes if not isinstance(r, str)]
        self.checks = checks or {}
        self.task_owner = task_owner
        self.task_paths = {f"/{task}/{action}": task for task in tasks for action in TASK_ACTIONS}
        s = settings()  # FANZHA_API_KEYS, FANZHA_MODERATOR_KEYS: taken when the gate is built
        self.moderator_keys = [k.encode() for k in s.moderator_keys]
        platform_keys = [k.encode() for k in s.api_keys]
        self.keys = (
            platform_keys + self.moderator_keys if platform_keys else []
        )  # unset: open, but for moderator paths
        self.moderator_paths = moderator_paths

    def served(self, path: str) -> bool:
        return (
            self.routes is None or path in self.routes or any(p.fullmatch(path) for p in self.route_patterns)
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":  # the service has none: refused before anything counts the path
            return await send({"type": "websocket.close", "code": 1008})
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request_id = (headers.get("x-request-id") or uuid.uuid4().hex)[:64]
        for prefix, mounted in self.apps.items():
            if path == prefix or path.startswith(prefix + "/"):
                return await self._mounted(
                    prefix, mounted, scope, receive, send, headers, request_id, started
                )
        status = {"code": 500}
        error_body: list[bytes] = []
        too_large: dict[str, str] = {}  # set by the body counter: the app's own answer is replaced by a 413

        async def reply(code: int, message: str) -> None:
            await self._send_json(send_with_id, code, {"error": message, "request_id": request_id})

        async def send_with_id(message) -> None:
            if too_large.get("message"):
                # the app caught BodyTooLarge inside its own error handler (BentoML answers any exception with a
                # 500): whatever it sends instead, the client gets one 413
                if not too_large.get("sent"):
                    too_large["sent"] = "yes"
                    status["code"] = 413
                    await self._send_json(
                        send,
                        413,
                        {"error": too_large["message"], "request_id": request_id},
                        [(b"x-request-id", request_id.encode())],
                    )
                return
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())],
                }
                if message["status"] >= 400:
                    status["start"] = message  # held back: the error body is rewritten into one object
                    return
            elif message["type"] == "http.response.body" and "start" in status:
                error_body.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                start = status.pop("start")
                code = start["status"]
                headers = [
                    (k, v)
                    for k, v in start["headers"]
                    if k.lower() not in (b"content-length", b"content-type")
                ]
                if code == 503 and path not in OPEN_PATHS:
                    # adaptive batching (or BentoML's concurrency limit) shedding load: say so, and when to come back
                    body = json.dumps({"error": OVERLOADED, "request_id": request_id}).encode()
                    headers = [(k, v) for k, v in headers if k.lower() != b"retry-after"] + [
                        (b"retry-after", str(RETRY_AFTER_S).encode())
                    ]
                else:
                    body = _one_error_object(b"".join(error_body), request_id, code, _is_json(start))
                headers += [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ]
                status["sent_start"] = True
                await send({**start, "headers": headers})
                message = {"type": "http.response.body", "body": body}
            if message["type"] == "http.response.start":
                status["sent_start"] = True
            await send(message)

        try:
            if self.keys and path not in OPEN_PATHS and not self._authorised(headers):
                return await reply(
                    401, "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
                )
            if (
                self.moderator_keys
                and path in self.moderator_paths
                and not self._authorised(headers, self.moderator_keys)
            ):
                offered = self._offered(headers)
                return await reply(
                    403 if offered else 401,
                    f"{path} is for moderators: send a moderator key (FANZHA_MODERATOR_KEYS)",
                )
            if path in self.refused_paths:
                return await reply(404, f"{path} is not served: {self.refused_paths[path]}")
            if not self.served(path):
                return await reply(404, f"no such endpoint: {path[:200]!r} (the API is listed at /docs.json)")
            limit = self.body_limits.get(path, self.default_limit)
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                return await reply(
                    413, f"request body is {int(length):,} bytes; the limit for {path} is {limit:,}"
                )
            receive = _limited(receive, limit, path, too_large)
            if path in self.task_paths and self.task_owner is not None:
                task_id = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("task_id") or [""])[
                    0
                ]
                owner = await self.task_owner(task_id) if task_id else None
                if owner is not None and owner != self.task_paths[path]:
                    return await reply(
                        404,
                        f"no {self.task_paths[path]} task {task_id[:64]!r}: the id belongs to another endpoint",
                    )
            if path in self.checks:
                from .tasks import Refusal

                body = await _read_all(receive)
                try:
                    await self.checks[path](scope, body)
                except Refusal as refusal:
                    status["code"] = refusal.status
                    data = _one_error_object(
                        json.dumps(refusal.body).encode(), request_id, refusal.status, True
                    )
                    return await self._send_raw(
                        send, refusal.status, data, [(b"x-request-id", request_id.encode())]
                    )
                receive = replay(body)
            await self.app(scope, receive, send_with_id)
        except BodyTooLarge:
            if not too_large.get("sent") and "start" not in status:
                too_large["sent"] = "yes"
                status["code"] = 413
                await self._send_json(
                    send,
                    413,
                    {"error": too_large["message"], "request_id": request_id},
                    [(b"x-request-id", request_id.encode())],
                )
        except ClientGone:
            status["code"] = 499  # the client closed the connection before its body was read (nginx's code)
        except Exception:
            # a bug below the gate (BentoML answers its own exceptions; this is anything that escaped it)
            logger.exception("unhandled error", extra={"fields": {"request_id": request_id, "path": path}})
            if status.get("sent_start") or too_large.get("sent"):
                raise
            status["code"] = 500
            await self._send_json(
                send,
                500,
                {"error": "internal error (logged with this request id)", "request_id": request_id},
                [(b"x-request-id", request_id.encode())],
            )
        finally:
            elapsed = time.perf_counter() - started
            # a label per known route only: arbitrary paths must not grow the metric series without bound
            known = (
                path in self.routes
                if self.routes is not None
                else path in self.body_limits or path in self.moderator_paths
            )
            endpoint = path if known and path not in self.refused_paths else "other"
            if path not in OPEN_PATHS and path != "/metrics":
                metrics().latency.labels(endpoint).observe(elapsed)
                if status["code"] >= 400:
                    metrics().errors.labels(endpoint, str(status["code"])).inc()
            logger.info(
                "request",
                extra={
                    "fields": {
                        "request_id": request_id,
                        "method": scope.get("method"),
                        "path": path,
                        "status": status["code"],
                        "ms": round(elapsed * 1000, 2),
                    }
                },
            )

    async def _mounted(self, prefix, app, scope, receive, send, headers, request_id, started) -> None:
        """A request for a mounted app: its body limited, its answer passed on as it is (with the request id)."""
        status = {"code": 500}

        async def send_with_id(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())],
                }
            await send(message)

        too_large: dict[str, str] = {}
        length = headers.get("content-length")
        try:
            if length is not None and length.isdigit() and int(length) > self.app_limit:
                status["code"] = 413
                return await self._send_json(
                    send,
                    413,
                    {"error": f"request body over {self.app_limit:,} bytes", "request_id": request_id},
                    [(b"x-request-id", request_id.encode())],
                )
            child = {**scope, "root_path": scope.get("root_path", "") + prefix}
            await app(child, _limited(receive, self.app_limit, prefix, too_large), send_with_id)
        except BodyTooLarge:
            if status["code"] == 500:
                status["code"] = 413
                await self._send_json(
                    send,
                    413,
                    {"error": too_large["message"], "request_id": request_id},
                    [(b"x-request-id", request_id.encode())],
                )
        finally:
            elapsed = time.perf_counter() - started
            metrics().latency.labels(prefix).observe(elapsed)
            if status["code"] >= 400:
                metrics().errors.labels(prefix, str(status["code"])).inc()
            logger.info(
                "request",
                extra={
                    "fields": {
                        "request_id": request_id,
                        "method": scope.get("method"),
                        "path": scope.get("path", "")[:200],
                        "status": status["code"],
                        "ms": round(elapsed * 1000, 2),
                    }
                },
            )

    @staticmethod
    def _offered(headers: dict[str, str]) -> str:
        return offered_key(headers)

    def _authorised(self, headers: dict[str, str], keys: list[bytes] | None = None) -> bool:
        offered = self._offered(headers).encode()
        return any(hmac.compare_digest(offered, key) for key in (self.keys if keys is None else keys))

    @classmethod
    async def _send_json(
        cls, send, code: int, obj: dict, extra_headers: list[tuple[bytes, bytes]] = ()
    ) -> None:
        await cls._send_raw(send, code, json.dumps(obj, ensure_ascii=False).encode(), extra_headers)

    @staticmethod
    async def _send_raw(send, code: int, body: bytes, extra_headers: list[tuple[bytes, bytes]] = ()) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": code,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    *extra_headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def offered_key(headers: dict[str, str]) -> str:
    """The key a request offers: X-API-Key, or the credentials of an `Authorization: Bearer` header (the scheme
    in any case); an Authorization header with another scheme, or none, offers nothing. `headers`: lower-case
    names. The console (serving/console/auth.py) takes moderator keys the same way."""
    if headers.get("x-api-key"):
        return headers["x-api-key"]
    scheme, _, credentials = headers.get("authorization", "").strip().partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" else ""


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's `fields` (request logs)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str | None = None) -> None:
    """fanzha's own loggers write JSON lines to stderr; the gate's "request" line is the access log (BentoML's
    own is turned off in service.py)."""
    root = logging.getLogger("fanzha")
    if not any(isinstance(h.formatter, JsonLogFormatter) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(JsonLogFormatter())
        root.addHandler(handler)
    root.setLevel(level or settings().log_level)
    root.propagate = False


class BodyTooLarge(Exception):
    pass


def _limited(receive, limit: int, path: str, too_large: dict[str, str]):
    seen = {"bytes": 0}

    async def wrapped():
        message = await receive()
        if message["type"] == "http.request":
            seen["bytes"] += len(message.get("body", b""))
            if seen["bytes"] > limit:
                too_large["message"] = f"request body is over the limit for {path}: {limit:,} bytes"
                raise BodyTooLarge(too_large["message"])
        return message

    return wrapped


async def _read_all(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def replay(body: bytes):
    """A receive channel that hands the app a body the gate already read, then waits like a real one."""
    sent = {"done": False}

    async def receive():
        if not sent["done"]:
            sent["done"] = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


class ClientGone(Exception):
    pass


def _is_json(start_message) -> bool:
    return any(k.lower() == b"content-type" and b"json" in v for k, v in start_message.get("headers", []))


def _one_error_object(body: bytes, request_id: str, status: int = 500, is_json: bool = True) -> bytes:
    """Any error body as one JSON object {"error": …, "request_id": …} (a plain-text body becomes its error)."""
    try:
        data = json.loads(body or b"{}") if is_json else None
    except ValueError:
        data = None
    if data is None:
        text = body.decode("utf-8", "replace").strip()[:500]
        data = {"error": text or _phrase(status)}
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]  # BentoML 1.4 answers a 4xx BentoMLException as [{"error": ...}]
    if isinstance(data, dict):
        if isinstance(data.get("detail"), list) and data["detail"] and "msg" in data["detail"][0]:
            # pydantic's "1 validation error for Input" says nothing: name the field and the problem instead
            data["error"] = "; ".join(
                f"{'.'.join(str(p) for p in d.get('loc', [])) or 'body'}: {d['msg']}"
                for d in data["detail"][:5]
            )
        data.setdefault("error", _phrase(status))
        data.setdefault("request_id", request_id)
        return json.dumps(data, ensure_ascii=False).encode()
    return json.dumps(
        {"error": _phrase(status), "detail": data, "request_id": request_id}, ensure_ascii=False
    ).encode()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class RequestTimeout:
    """BentoML's TimeoutMiddleware (traffic.timeout: a 504 when no response has started in time), without its leak.

    BentoML 1.4.40 schedules `loop.call_later(timeout, …)` for every request and never cancels it: the timer
    keeps a copy of the request's context — its OpenTelemetry span, ~4.5 KB — alive for the whole timeout
    (600 s here), so memory grows with the request rate (bench/soak.py: +2 KB a request, linearly). This one
    runs the timer in an empty context and cancels it when the request is done. GatedService.to_asgi puts it
    in BentoML's place."""

    def __init__(self, app, timeout: float) -> None:
        self.app, self.timeout = app, timeout

    async def __call__(self, scope, receive, send) -> None:
        import asyncio
        import contextvars

        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, _time_out, waiter, context=contextvars.Context())

        async def started(message) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, started))
        task.add_done_callback(lambda t: waiter.done() or waiter.set_result(None))
        try:
            await waiter
        except asyncio.CancelledError:
            task.cancel()
            raise
        except TimeoutError:
            if task.cancel():
                body = json.dumps({"error": f"no answer in {self.timeout:g} seconds"}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 504,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        finally:
            timer.cancel()
        await task


def _time_out(waiter) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


def without_leaking_timeouts(app) -> None:
    """Replace BentoML's TimeoutMiddleware in a Starlette app not yet started by RequestTimeout, same timeout."""
    from bentoml._internal.server.http.traffic import TimeoutMiddleware
    from starlette.middleware import Middleware

    for i, middleware in enumerate(app.user_middleware):
        if middleware.cls is TimeoutMiddleware:
            app.user_middleware[i] = Middleware(RequestTimeout, *middleware.args, **middleware.kwargs)


def served_routes(app) -> list[str | re.Pattern]:
    """The paths a Starlette app serves: its routes, and the files of its static mounts (the OpenAPI UI's)."""
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    out: list[str | re.Pattern] = []
    for route in app.routes:
        if isinstance(route, Route):
            out.append(route.path if "{" not in route.path else route.path_regex)
        elif isinstance(route, Mount) and isinstance(route.app, StaticFiles) and route.app.directory:
            root = Path(route.app.directory)
            out += [f"{route.path}/{f.relative_to(root).as_posix()}" for f in root.rglob("*") if f.is_file()]
    return out
