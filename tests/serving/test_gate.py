"""The ASGI gate on its own, around a tiny app: API keys, body limits, error bodies, request ids."""

import json

import pytest
from starlette.testclient import TestClient

from fanzha.serving.gate import Gate


async def echo_app(scope, receive, send) -> None:
    """Reads the whole body; answers 200 with its size, or BentoML's list-wrapped 400 for /fail."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    status, body = (400, [{"error": "bad thing"}]) if scope["path"] == "/fail" else (200, {"bytes": size})
    data = json.dumps(body).encode()
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": data})


@pytest.fixture
def gate(monkeypatch):
    def make(keys: str = "") -> TestClient:
        monkeypatch.setenv("FANZHA_API_KEYS", keys)
        return TestClient(Gate(echo_app, body_limits={"/small": 10}, default_limit=1000))

    return make


def test_open_without_keys(gate) -> None:
    r = gate().post("/anything", content=b"12345")
    assert r.status_code == 200 and r.json() == {"bytes": 5} and len(r.headers["x-request-id"]) == 32


def test_keys_guard_everything_but_health_probes(gate) -> None:
    client = gate("alpha,beta")
    assert client.get("/healthz").status_code == 200 and client.get("/readyz").status_code == 200
    assert client.post("/classify_text").status_code == 401 and client.get("/metrics").status_code == 401
    assert client.post("/classify_text", headers={"Authorization": "Bearer beta"}).status_code == 200
    assert client.post("/classify_text", headers={"X-API-Key": "alpha"}).status_code == 200
    assert client.post("/classify_text", headers={"X-API-Key": "alpha "}).status_code == 401


def test_body_limits_by_content_length_and_while_streaming(gate) -> None:
    client = gate()
    r = client.post("/small", content=b"x" * 11)
    assert r.status_code == 413 and "limit for /small is 10" in r.json()["error"]

    def chunks():  # no Content-Length: the limit applies as the body arrives
        for _ in range(5):
            yield b"x" * 400

    r = client.post("/other", content=chunks())
    assert r.status_code == 413 and "over the limit for /other" in r.json()["error"]


def test_error_bodies_are_one_object_with_the_request_id(gate) -> None:
    r = gate().post("/fail", headers={"X-Request-ID": "abc"})
    assert (
        r.status_code == 400
        and r.json() == {"error": "bad thing", "request_id": "abc"}
        and r.headers["x-request-id"] == "abc"
    )


def test_one_structured_log_line_per_request(gate) -> None:
    import logging

    from fanzha.serving.gate import JsonLogFormatter

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    log = logging.getLogger("fanzha.serving")
    log.addHandler(handler)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        gate().post("/classify_text", content=b"{}", headers={"X-Request-ID": "req-9"})
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    line = json.loads(JsonLogFormatter().format(records[-1]))
    assert (line["request_id"], line["path"], line["status"], line["level"]) == (
        "req-9",
        "/classify_text",
        200,
        "INFO",
    )
