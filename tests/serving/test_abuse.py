"""The service probed as an attacker and a careless client would (issue 11), in-process through its ASGI app
and through the gate alone. No request here may get a 500; each answer is one JSON object with the request id.

What needs a real server (task ids and replays, /metrics growth, path tricks as raw request targets, races,
overload under load, keys) is in test_abuse_server.py.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import threading
import time
import zlib

import pytest
from starlette.testclient import TestClient

from fanzha.serving.gate import OVERLOADED, Gate

from ..conftest import MEDIA

PNG = (MEDIA / "qr.png").read_bytes()
MP = "multipart/form-data"


def assert_error(r, status: int, says: str = "") -> dict:
    """One JSON object naming the problem, with the request id; never a 500."""
    assert r.status_code == status, f"{r.status_code} {r.text[:300]}"
    body = r.json()
    assert isinstance(body, dict) and body["error"] and body["request_id"] == r.headers["x-request-id"], body
    assert says in body["error"], body
    return body


# -- 1. malformed multipart: 400, not 500 --------------------------------------------------------------------------


def _fields(n: int, boundary: str = "bb") -> bytes:
    parts = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nx\r\n' for i in range(n)
    )
    return (parts + f"--{boundary}--\r\n").encode()


MALFORMED_FORMS = {
    "no boundary": (b"x", MP),
    "wrong boundary": (_fields(2, "aa"), f"{MP}; boundary=bb"),
    "5,000-character boundary": (_fields(1, "B" * 5000), f"{MP}; boundary={'B' * 5000}"),
    "1,001 fields": (_fields(1001), f"{MP}; boundary=bb"),
    "a part that never ends": (
        b'--bb\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n' + PNG[:100],
        f"{MP}; boundary=bb",
    ),
    "no part headers": (b"--bb\r\n\r\n\r\n--bb--\r\n", f"{MP}; boundary=bb"),
}

LENIENT = ("a part that never ends", "no part headers")


@pytest.mark.parametrize(
    "path",
    [
        "/classify_image",
        "/classify_video",
        "/classify_text",
        "/classify_batch",
        "/report",
        "/reports",
        "/account_risk",
        "/scan_video/submit",
        "/classify_archive/submit",
    ],
)
@pytest.mark.parametrize("case", MALFORMED_FORMS)
def test_malformed_multipart_is_400(client, path, case) -> None:
    body, content_type = MALFORMED_FORMS[case]
    r = client.post(path, content=body, headers={"Content-Type": content_type})
    if case in LENIENT and path in ("/reports", "/account_risk", "/alerts", "/clusters"):
        # python-multipart reads a body without its closing boundary as what arrived; an endpoint that needs
        # no field may answer it
        assert r.status_code in (200, 400), f"{case}: {r.status_code} {r.text[:300]}"
        return
    assert r.status_code == 400, f"{case}: {r.status_code} {r.text[:300]}"
    assert_error(r, 400)


def test_malformed_urlencoded_is_400(client) -> None:
    r = client.post(
        "/classify_text",
        content=b"&".join([b"a=1"] * 1001),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(r, 400, "Too many fields")


# -- 2. a string where a file is expected: 400, and nothing is fetched ---------------------------------------------


@pytest.fixture
def listener():
    """A loopback socket that records every connection made to it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    seen: list = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                seen.append(conn.recv(1024))
                conn.close()
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", seen
    stop.set()
    thread.join(2)
    sock.close()


@pytest.mark.parametrize("path", ["/classify_image", "/classify_video", "/scan_video/submit"])
def test_a_text_value_for_file_is_400_and_nothing_is_fetched(client, listener, path) -> None:
    url, seen = listener
    for value in (f"{url}/x.png", f'"{url}/x.png"', "file:///etc/passwd", "/etc/passwd"):
        r = client.post(
            path, files={"file": (None, value), "id": (None, "x")}
        )  # a multipart part without a filename
        assert_error(r, 400, "must be an uploaded file")
        r = client.post(path, data={"file": value, "id": "x"})  # application/x-www-form-urlencoded
        assert_error(r, 400, "must be an uploaded file")
    # a real file part and a text part of the same name
    r = client.post(path, files=[("file", ("a.png", PNG, "image/png")), ("file", (None, f"{url}/x.png"))])
    assert_error(r, 400, "must be an uploaded file")
    time.sleep(0.3)
    assert seen == []


# -- 3. unknown paths never reach BentoML ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        "/classify_text/",
        "/classify_text%2F",
        "/Classify_Text",
        "/metrics/x",
        "/docs.json/",
        "/static_content/../../../etc/passwd",
        "/static_content/nope.js",
        "/reports/",
    ],
)
def test_unknown_paths_are_404_json(client, path) -> None:
    r = client.post(path, json={}, headers={"Host": "evil.example"}, follow_redirects=False)
    assert_error(r, 404, "no such endpoint")
    assert "location" not in r.headers  # no redirect, least of all to the Host a client sent


def test_the_openapi_ui_and_its_files_still_load(client) -> None:
    assert client.get("/").status_code == 200 and client.get("/docs.json").status_code == 200
    assert client.get("/static_content/swagger-ui.css").status_code == 200


def test_plain_text_errors_become_json(client) -> None:
    assert_error(client.get("/classify_text"), 405, "Method Not Allowed")
    assert_error(client.put("/account_risk", json={}), 405)


# -- 4. task submissions are validated at submit --------------------------------------------------------------------


@pytest.mark.parametrize(
    "body,status,says",
    [
        ({}, 400, "items: Field required"),
        ({"items": []}, 400, "at least 1 item"),
        ({"items": [{"type": "text", "text": "你好啊"}] * 10_001}, 400, "at most 10000 items"),
        ({"items": [{"type": "text", "text": "   "}]}, 400, "text is empty"),
        ({"items": [{"type": "image"}]}, 400, "base64 `data`"),
        ({"items": [{"type": "text", "text": "你好", "id": "x" * 257}]}, 400, "at most 256 characters"),
    ],
)
def test_archive_submit_validates_like_the_sync_endpoints(client, body, status, says) -> None:
    assert_error(client.post("/classify_archive/submit", json=body), status, says)


def test_archive_submit_refuses_bodies_that_are_not_json(client) -> None:
    assert_error(
        client.post(
            "/classify_archive/submit", content=b"hello", headers={"Content-Type": "application/json"}
        ),
        400,
        "Invalid JSON",
    )
    assert_error(
        client.post(
            "/classify_archive/submit", content=b"[" * 100_000, headers={"Content-Type": "application/json"}
        ),
        400,
    )


@pytest.mark.parametrize(
    "upload,status,says",
    [
        (None, 400, "file: Field required"),
        (("a.png", PNG, "image/png"), 415, "takes a video, the upload is an image"),
        (("a.mp4", b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100, "video/mp4"), 400, "not a readable video"),
        (("a.bin", b"hello world", "application/octet-stream"), 415, "unsupported media"),
        (("a.mp4", b"", "video/mp4"), 415, "unsupported media"),
    ],
)
def test_video_submit_is_probed_at_submit(client, upload, status, says) -> None:
    r = (
        client.post("/scan_video/submit", json={})
        if upload is None
        else client.post("/scan_video/submit", files={"file": upload})
    )
    assert_error(r, status, says)


def test_video_submit_id_is_capped(client) -> None:
    r = client.post(
        "/scan_video/submit",
        files={"file": ("v.mp4", (MEDIA / "flash_scam.mp4").read_bytes(), "video/mp4")},
        data={"id": "x" * 257},
    )
    assert_error(r, 400, "at most 256 characters")


def test_plain_task_routes_stay_refused(client) -> None:
    assert_error(
        client.post("/classify_archive", json={"items": [{"type": "text", "text": "你好啊"}]}),
        404,
        "/classify_archive/submit",
    )


# -- 7. one cap for every id ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path,name", [("/classify_image", "qr.png"), ("/classify_video", "flash_scam.mp4")])
def test_multipart_ids_have_the_json_cap(client, path, name) -> None:
    upload = {"file": (name, (MEDIA / name).read_bytes(), "application/octet-stream")}
    assert_error(client.post(path, files=upload, data={"id": "x" * 257}), 400, "at most 256 characters")
    assert_error(client.post(path, files=upload, data={"id": ""}), 400, "at least 1 character")


# -- hostile JSON ---------------------------------------------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(
    "path", ["/classify_text", "/classify_batch", "/report", "/account_risk", "/alerts", "/resolve_report"]
)
def test_json_nested_100000_deep_is_400(client, path) -> None:
    r = client.post(path, content=b'{"items": ' + DEEP + b"}", headers={"Content-Type": "application/json"})
    assert_error(r, 400)
    r = client.post(path, content=DEEP, headers={"Content-Type": "application/json"})
    assert_error(r, 400)


def test_form_fields_nested_100000_deep_are_400(client) -> None:
    assert_error(
        client.post(
            "/classify_image", files={"file": ("a.png", PNG, "image/png")}, data={"id": DEEP.decode()}
        ),
        400,
        "nested too deeply",
    )
    assert_error(client.post("/classify_text", data={"items": DEEP.decode()}), 400, "nested too deeply")


@pytest.mark.parametrize(
    "path,body",
    [
        ("/clusters", b'{"min_accounts": NaN}'),
        ("/clusters", b'{"limit": Infinity}'),
        ("/alerts", b'{"after_id": -Infinity}'),
        ("/alerts", b'{"after_id": 1e999}'),
        ("/classify_text", b'{"items": [{"text": NaN}]}'),
        ("/resolve_report", b'{"report_id": "r1", "status": "confirmed", "moderator_id": NaN}'),
    ],
)
def test_nan_and_infinity_are_400(client, path, body) -> None:
    assert_error(client.post(path, content=body, headers={"Content-Type": "application/json"}), 400)


@pytest.mark.parametrize(
    "body",
    [
        b'{"items": [{"text": "\\ud800\xe4\xbd\xa0\xe5\xa5\xbd\xe5\x95\x8a"}]}',
        b'{"items": [{"text": "\xe4\xbd\xa0\xe5\xa5\xbd\xe5\x95\x8a", "id": "\\udc00"}]}',
        b'{"items": [{"text": "\xe4\xbd\xa0\xe5\xa5\xbd\xe5\x95\x8a", "account_id": "\\ud83d"}]}',
        b'{"items": [{"text": "\xed\xa0\x80"}]}',  # a surrogate encoded as UTF-8 bytes: invalid UTF-8
    ],
)
def test_lone_surrogates_in_json_are_400(client, body) -> None:
    assert_error(
        client.post("/classify_text", content=body, headers={"Content-Type": "application/json"}), 400
    )


def test_lone_surrogates_in_form_fields_are_400(client) -> None:
    r = client.post("/classify_image", files={"file": ("a.png", PNG, "image/png")}, data={"id": '"\\ud800"'})
    assert_error(r, 400, "unicode")
    r = client.post("/classify_text", data={"items": '[{"text": "你好啊", "account_id": "\\udc00"}]'})
    assert_error(r, 400, "unicode")


def test_a_gzip_body_is_not_inflated(client) -> None:
    bomb = zlib.compress(b"[" * 10_000_000, 9)
    r = client.post(
        "/classify_text",
        content=bomb,
        headers={"Content-Type": "application/json", "Content-Encoding": "deflate"},
    )
    assert_error(r, 400, "Invalid JSON")


# -- decompression bombs and a 5,000-frame GIF ----------------------------------------------------------------------


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def _png(width: int, height: int, idat: bytes, extra: bytes = b"") -> bytes:
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    return b"\x89PNG\r\n\x1a\n" + header + extra + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def _zeros_png(width: int, height: int) -> bytes:
    z = zlib.compressobj(9)
    row = b"\0" * (width + 1)
    return _png(width, height, b"".join(z.compress(row) for _ in range(height)) + z.flush())


def test_a_50_megapixel_png_of_48_kb_is_413_before_decoding(client) -> None:
    bomb = _zeros_png(10_000, 5_000)
    assert len(bomb) < 100_000
    started = time.perf_counter()
    assert_error(
        client.post("/classify_image", files={"file": ("b.png", bomb, "image/png")}), 413, "pixel limit"
    )
    assert time.perf_counter() - started < 2


def test_compressed_text_chunk_bomb_is_400(client) -> None:
    ztxt = _chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"\0" * 50_000_000, 9))
    small = _png(8, 8, zlib.compress(b"\0" * 72), ztxt)
    assert_error(
        client.post("/classify_image", files={"file": ("z.png", small, "image/png")}), 400, "too large"
    )


def test_a_gif_claiming_3_6_gigapixels_is_413(client) -> None:
    gif = (
        b"GIF89a"
        + struct.pack("<HH", 60000, 60000)
        + b"\x00\x00\x00"
        + b"\x2c"
        + struct.pack("<HHHH", 0, 0, 60000, 60000)
        + b"\x00\x02\x02\x44\x01\x00\x3b"
    )
    assert_error(
        client.post("/classify_image", files={"file": ("g.gif", gif, "image/gif")}), 413, "pixel limit"
    )


def test_a_5000_frame_gif_is_answered_quickly(client) -> None:
    from PIL import Image

    frames = []
    for i in range(5000):
        frame = Image.new("L", (16, 16), 255)
        frame.putpixel((i % 16, (i // 16) % 16), 0)
        frames.append(frame)
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=20, loop=0)
    with Image.open(io.BytesIO(buf.getvalue())) as check:
        assert check.n_frames >= 250  # Pillow merges identical neighbours; these differ
    started = time.perf_counter()
    r = client.post(
        "/classify_image", files={"file": ("many.gif", buf.getvalue(), "image/gif")}, data={"id": "gif"}
    )
    assert r.status_code == 200 and r.json()["media"]["kind"] == "image", r.text[:300]
    assert time.perf_counter() - started < 10


# -- the gate alone: keys, overload, plain-text errors ---------------------------------------------------------------


def _app(status: int, body: bytes, content_type: bytes = b"application/json"):
    async def app(scope, receive, send) -> None:
        while (await receive()).get("more_body"):
            pass
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]}
        )
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.fixture
def gate(monkeypatch):
    def make(app=None, keys: str = "", **kwargs) -> TestClient:
        monkeypatch.setenv("FANZHA_API_KEYS", keys)
        monkeypatch.delenv("FANZHA_MODERATOR_KEYS", raising=False)
        return TestClient(
            Gate(app or _app(200, b'{"ok": true}'), body_limits={}, **kwargs), raise_server_exceptions=False
        )

    return make


def test_keys_only_in_their_headers_and_only_whole(gate) -> None:
    client = gate(keys="s3cret-key-1")
    ok = {"X-API-Key": "s3cret-key-1"}
    assert client.post("/x", headers=ok).status_code == 200
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):  # RFC 7235: the scheme is case-insensitive
        assert client.post("/x", headers={"Authorization": f"{scheme} s3cret-key-1"}).status_code == 200
    refused = [
        {"Authorization": "s3cret-key-1"},  # no scheme
        {"Authorization": "Basic s3cret-key-1"},
        {"Authorization": "Token s3cret-key-1"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearers3cret-key-1"},
        {"X-API-Key": "s3cret-key"},
        {"X-API-Key": "s3cret-key-1x"},
        {"X-API-Key": "S3CRET-KEY-1"},
        {"X-API-Key": ""},
        {"Authorization": "Bearer s3cret"},
        {"Cookie": "api_key=s3cret-key-1; X-API-Key=s3cret-key-1"},
        {"X-Api-Key-Extra": "s3cret-key-1"},
    ]
    for headers in refused:
        assert_error(client.post("/x", headers=headers), 401, "API key")
    for query in ("?api_key=s3cret-key-1", "?X-API-Key=s3cret-key-1", "?key=s3cret-key-1&token=s3cret-key-1"):
        assert_error(client.post("/x" + query), 401, "API key")


def test_overload_503_says_so_with_retry_after(gate) -> None:
    bentoml_503 = b'{"error": "An unexpected error has occurred, please check the server log."}'
    r = gate(_app(503, bentoml_503)).post("/classify_text", headers={"X-Request-ID": "busy-1"})
    assert (
        r.status_code == 503
        and r.json() == {"error": OVERLOADED, "request_id": "busy-1"}
        and r.headers["retry-after"] == "1"
    )
    r = gate(_app(503, b"Service Unavailable", b"text/plain")).post("/classify_text")
    assert r.status_code == 503 and r.json()["error"] == OVERLOADED and r.headers["retry-after"] == "1"
    # a readiness probe's 503 keeps its own message
    r = gate(_app(503, b'{"error": "not ready"}')).get("/readyz")
    assert r.status_code == 503 and r.json()["error"] == "not ready"


def test_plain_text_and_odd_error_bodies_become_one_object(gate) -> None:
    assert (
        gate(_app(405, b"Method Not Allowed", b"text/plain")).post("/x").json()["error"]
        == "Method Not Allowed"
    )
    assert gate(_app(404, b"", b"text/plain")).post("/x").json()["error"] == "Not Found"
    odd = gate(_app(400, b"[1, 2]")).post("/x").json()
    assert odd["error"] == "Bad Request" and odd["detail"] == [1, 2] and odd["request_id"]


def test_an_exception_below_the_gate_is_a_json_500(gate) -> None:
    async def broken(scope, receive, send) -> None:
        raise RuntimeError("bug")

    r = gate(broken).post("/x", headers={"X-Request-ID": "bug-1"})
    assert r.status_code == 500 and r.json() == {
        "error": "internal error (logged with this request id)",
        "request_id": "bug-1",
    }


def test_unknown_routes_and_websockets_are_refused_before_the_app(gate) -> None:
    client = gate(routes=["/known"])
    assert client.post("/known").status_code == 200
    assert_error(client.post("/unknown"), 404, "no such endpoint")
    with pytest.raises(Exception):  # noqa: B017 (the close before accept is the refusal)
        with client.websocket_connect("/known"):
            pass


def test_task_ids_are_refused_at_another_tasks_endpoints(gate) -> None:
    async def owner(task_id: str) -> str | None:
        return {"a1": "classify_archive", "v1": "scan_video"}.get(task_id)

    client = gate(tasks=("scan_video", "classify_archive"), task_owner=owner)
    for action in ("status", "get"):
        assert client.get(f"/scan_video/{action}?task_id=v1").status_code == 200
        assert_error(client.get(f"/scan_video/{action}?task_id=a1"), 404, "belongs to another endpoint")
        assert client.get(f"/classify_archive/{action}?task_id=a1").status_code == 200
        assert_error(client.get(f"/classify_archive/{action}?task_id=v1"), 404, "belongs to another endpoint")
    assert_error(client.post("/scan_video/retry?task_id=a1"), 404, "belongs to another endpoint")
    assert_error(client.put("/scan_video/cancel?task_id=a1"), 404, "belongs to another endpoint")
    assert (
        client.get("/scan_video/get?task_id=unknown").status_code == 200
    )  # unknown ids: BentoML answers its 404


def test_error_bodies_never_echo_more_than_a_bounded_path(gate) -> None:
    body = assert_error(gate(routes=[]).post("/" + "x" * 10_000), 404)
    assert len(json.dumps(body)) < 400


# -- memory: no per-request timer outlives its request ----------------------------------------------------------------


def test_the_gate_is_outermost_and_bentomls_leaking_timeout_is_replaced(app) -> None:
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    from fanzha.serving.gate import RequestTimeout

    classes = [m.cls for m in app.user_middleware]
    assert classes[0] is Gate and RequestTimeout in classes and TimeoutMiddleware not in classes


def test_request_timeout_cancels_its_timer_and_keeps_no_context() -> None:
    import asyncio
    import contextvars

    from fanzha.serving.gate import RequestTimeout

    marker = contextvars.ContextVar("marker")

    async def quick(scope, receive, send) -> None:
        marker.set(b"x" * 10_000)  # what a request leaves in its context (BentoML's: the OpenTelemetry span)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def slow(scope, receive, send) -> None:
        await asyncio.sleep(5)

    async def call(app, timeout: float) -> list[dict]:
        sent: list[dict] = []

        async def send(message) -> None:
            sent.append(message)

        async def receive() -> dict:
            return {"type": "http.request", "body": b""}

        await RequestTimeout(app, timeout)({"type": "http"}, receive, send)
        return sent

    async def main() -> None:
        for _ in range(500):
            assert (await call(quick, 600))[0]["status"] == 200
        loop = asyncio.get_running_loop()
        live = [h for h in loop._scheduled if not h.cancelled()]
        assert (
            live == []
        )  # BentoML's TimeoutMiddleware leaves 500 timers here, each holding its request's context
        timed_out = await call(slow, 0.05)
        assert timed_out[0]["status"] == 504 and b"no answer in 0.05 seconds" in timed_out[1]["body"]

    asyncio.run(main())
