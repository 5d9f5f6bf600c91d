"""One ASGI middleware in front of every endpoint: request ids, API keys, body limits, logs, latency.

- Every request gets an id (the client's X-Request-ID, else a new one), echoed in the response header and
  in the one structured log line written per request.
- With FANZHA_API_KEYS set (comma-separated), every path but the health probes needs
  `Authorization: Bearer <key>` or `X-API-Key: <key>`; without it the service is open (local use).
- With FANZHA_MODERATOR_KEYS set, the moderator paths (reading and resolving fraud reports) need one of
  those keys (401 without a key, 403 with another key); a moderator key also opens every other path.
- Bodies over the endpoint's limit are refused with 413 before they are read (Content-Length) or as soon
  as they pass the limit (chunked uploads).
- Error bodies are always one JSON object with an "error" field (BentoML wraps some in a list).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
import uuid

from fanzha.models.settings import MB, settings

from .metrics import metrics

logger = logging.getLogger("fanzha.serving")
OPEN_PATHS = ("/healthz", "/livez", "/readyz")


class Gate:
    def __init__(self, app, body_limits: dict[str, int], default_limit: int = 2 * MB, moderator_paths: tuple[str, ...] = (),
                 refused_paths: dict[str, str] | None = None) -> None:
        self.app = app
        self.refused_paths = refused_paths or {}  # path → what to use instead (404 with that hint)
        self.body_limits = body_limits
        self.default_limit = default_limit
        s = settings()  # FANZHA_API_KEYS, FANZHA_MODERATOR_KEYS: taken when the gate is built
        self.moderator_keys = [k.encode() for k in s.moderator_keys]
        platform_keys = [k.encode() for k in s.api_keys]
        self.keys = platform_keys + self.moderator_keys if platform_keys else []  # unset: open, but for moderator paths
        self.moderator_paths = moderator_paths

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        path = scope.get("path", "")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request_id = (headers.get("x-request-id") or uuid.uuid4().hex)[:64]
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
                    await self._send_json(send, 413, {"error": too_large["message"], "request_id": request_id},
                                          [(b"x-request-id", request_id.encode())])
                return
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
                if message["status"] >= 400 and _is_json(message):
                    status["start"] = message  # held back: the error body is rewritten into one object
                    return
            elif message["type"] == "http.response.body" and "start" in status:
                error_body.append(message.get("body", b""))
                if message.get("more_body"):
                    return
                body = _one_error_object(b"".join(error_body), request_id)
                start = status.pop("start")
                start["headers"] = [(k, v) for k, v in start["headers"] if k.lower() != b"content-length"]
                start["headers"].append((b"content-length", str(len(body)).encode()))
                await send(start)
                message = {"type": "http.response.body", "body": body}
            await send(message)

        try:
            if self.keys and path not in OPEN_PATHS and not self._authorised(headers):
                return await reply(401, "missing or wrong API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
            if self.moderator_keys and path in self.moderator_paths and not self._authorised(headers, self.moderator_keys):
                offered = self._offered(headers)
                return await reply(403 if offered else 401, f"{path} is for moderators: send a moderator key (FANZHA_MODERATOR_KEYS)")
            if path in self.refused_paths:
                return await reply(404, f"{path} is not served: {self.refused_paths[path]}")
            limit = self.body_limits.get(path, self.default_limit)
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                return await reply(413, f"request body is {int(length):,} bytes; the limit for {path} is {limit:,}")
            await self.app(scope, _limited(receive, limit, path, too_large), send_with_id)
        except BodyTooLarge:
            if not too_large.get("sent") and "start" not in status:
                too_large["sent"] = "yes"
                status["code"] = 413
                await self._send_json(send, 413, {"error": too_large["message"], "request_id": request_id},
                                      [(b"x-request-id", request_id.encode())])
        finally:
            elapsed = time.perf_counter() - started
            # a label per known route only: arbitrary paths must not grow the metric series without bound
            known = path in self.body_limits or path in self.moderator_paths
            endpoint = path if known else "other"
            if path not in OPEN_PATHS and path != "/metrics":
                metrics().latency.labels(endpoint).observe(elapsed)
                if status["code"] >= 400:
                    metrics().errors.labels(endpoint, str(status["code"])).inc()
            logger.info("request", extra={"fields": {"request_id": request_id, "method": scope.get("method"), "path": path,
                                                     "status": status["code"], "ms": round(elapsed * 1000, 2)}})

    @staticmethod
    def _offered(headers: dict[str, str]) -> str:
        return headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ").strip()

    def _authorised(self, headers: dict[str, str], keys: list[bytes] | None = None) -> bool:
        offered = self._offered(headers).encode()
        return any(hmac.compare_digest(offered, key) for key in (self.keys if keys is None else keys))

    @staticmethod
    async def _send_json(send, code: int, obj: dict, extra_headers: list[tuple[bytes, bytes]] = ()) -> None:
        body = json.dumps(obj, ensure_ascii=False).encode()
        await send({"type": "http.response.start", "status": code,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *extra_headers]})
        await send({"type": "http.response.body", "body": body})


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's `fields` (request logs)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": round(record.created, 3), "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
                 **getattr(record, "fields", {})}
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str | None = None) -> None:
    """fanzha's own loggers write JSON lines to stderr (BentoML keeps its own access log)."""
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


def _is_json(start_message) -> bool:
    return any(k.lower() == b"content-type" and b"json" in v for k, v in start_message.get("headers", []))


def _one_error_object(body: bytes, request_id: str) -> bytes:
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        return body
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]  # BentoML 1.4 answers a 4xx BentoMLException as [{"error": ...}]
    if isinstance(data, dict):
        if isinstance(data.get("detail"), list) and data["detail"] and "msg" in data["detail"][0]:
            # pydantic's "1 validation error for Input" says nothing: name the field and the problem instead
            data["error"] = "; ".join(f"{'.'.join(str(p) for p in d.get('loc', [])) or 'body'}: {d['msg']}" for d in data["detail"][:5])
        data.setdefault("request_id", request_id)
        return json.dumps(data, ensure_ascii=False).encode()
    return body
