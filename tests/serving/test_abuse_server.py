"""The abuse suite against a real `bentoml serve` on loopback (issue 11): what depends on the real server — its
task store, BentoML's own middlewares and metrics, raw request targets, concurrency and load shedding.

The server runs with an API key, one worker and a 20 ms adaptive-batching latency budget (a burst sheds load
with 503s; one request at a time is never shed). Every request loop is bounded in count and time. No answer
here may be a 500.
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import re
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fanzha.serving.launch import local_server

from ..conftest import BENIGN, MEDIA, SCAM

KEY = "abuse-key-0123456789"
RANDOM_PATHS = 10_000  # keyless requests to invented paths (the "done when")


class Server:
    def __init__(self, port: int) -> None:
        self.port = port
        self.local = threading.local()

    def request(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: dict | None = None,
        key: str | None = KEY,
        timeout: float = 120,
    ) -> tuple[int, dict, bytes]:
        """One request on this thread's keep-alive connection; the target is sent exactly as given."""
        headers = dict(headers or {})
        if key:
            headers["X-API-Key"] = key
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                conn.putrequest(method, target, skip_host="Host" in headers, skip_accept_encoding=True)
                for k, v in headers.items():
                    conn.putheader(k, v)
                if body is not None:
                    conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                r = conn.getresponse()
                return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
            except (http.client.HTTPException, OSError):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, target: str, obj=None, **kw) -> tuple[int, object]:
        body = None if obj is None else json.dumps(obj, ensure_ascii=False).encode()
        status, _, raw = self.request(
            method, target, body, {"Content-Type": "application/json"} if body is not None else {}, **kw
        )
        return status, json.loads(raw) if raw else None

    def wait_task(self, task: str, task_id: str, seconds: float = 120) -> str:
        deadline = time.time() + seconds
        while time.time() < deadline:
            status, state = self.json("GET", f"/{task}/status?task_id={task_id}")
            assert status == 200, state
            if state["status"] in ("completed", "failed"):
                return state["status"]
            time.sleep(0.3)
        raise AssertionError(f"task {task_id} not done in {seconds} s")


def multipart(
    fields: dict[str, tuple[str | None, bytes]], boundary: str = "abuse-boundary"
) -> tuple[bytes, dict]:
    out = b""
    for name, (filename, data) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture(scope="module")
def server(model_tag, tmp_path_factory):
    env = {
        "FANZHA_API_KEYS": KEY,
        "FANZHA_WORKERS": "1",
        "FANZHA_THREADS": "1",
        "FANZHA_MAX_LATENCY_MS": "20",
    }
    log = tmp_path_factory.mktemp("abuse-server") / "serve.log"
    with local_server(env, unset=("FANZHA_MODERATOR_KEYS",), log=log) as live:
        srv = Server(live.port)
        srv.log = log
        yield srv


def assert_error(status: int, headers: dict, raw: bytes, expected: int, says: str = "") -> dict:
    assert status == expected, f"{status} {raw[:300]!r}"
    body = json.loads(raw)
    assert isinstance(body, dict) and body["error"] and body["request_id"] == headers["x-request-id"], body
    assert says in body["error"], body
    return body


# -- 1. malformed multipart, under concurrency ------------------------------------------------------------------------


def test_malformed_multipart_under_load_is_always_400(server) -> None:
    bodies = [
        (b"x", "multipart/form-data"),
        (b"--a\r\nxx", "multipart/form-data; boundary=b"),
        (b"x", f"multipart/form-data; boundary={'B' * 5000}"),
        (
            "".join(
                f'--bb\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nx\r\n' for i in range(1001)
            ).encode()
            + b"--bb--\r\n",
            "multipart/form-data; boundary=bb",
        ),
    ]
    paths = [
        "/classify_image",
        "/classify_text",
        "/report",
        "/reports",
        "/scan_video/submit",
        "/classify_archive/submit",
    ]
    jobs = [(path, *bodies[i % len(bodies)]) for i, path in enumerate(paths * 16)]

    def one(job):
        path, body, content_type = job
        return path, server.request("POST", path, body, {"Content-Type": content_type})

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, jobs))
    assert len(answers) == 96
    for path, (status, headers, raw) in answers:
        assert status == 400, (path, raw[:200])
        assert_error(status, headers, raw, 400)


# -- 2. nothing is fetched on a client's behalf -----------------------------------------------------------------------


def test_a_url_or_path_for_file_is_400_and_never_fetched(server) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    sock.settimeout(0.5)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/x.png"
    try:
        for value in (url, "file:///etc/passwd", "/etc/passwd", "http://169.254.169.254/latest/meta-data/"):
            for path in ("/classify_image", "/classify_video", "/scan_video/submit"):
                body, headers = multipart({"file": (None, value.encode()), "id": (None, b"x")})
                assert_error(*server.request("POST", path, body, headers), 400, "must be an uploaded file")
        with pytest.raises(OSError):
            sock.accept()  # nobody connected
    finally:
        sock.close()


# -- 3. bounded metrics, unknown paths and path tricks --------------------------------------------------------------


def _metrics(server) -> str:
    status, _, raw = server.request("GET", "/metrics")
    assert status == 200
    return raw.decode()


def _series(text: str) -> set[str]:
    return {line.split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}


def test_invented_paths_do_not_grow_the_metrics(server) -> None:
    # every kind of answer once first, so that the series they make exist before the measurement
    server.json("POST", "/classify_text", {"items": [{"text": BENIGN}]})
    server.request("GET", "/nope-warmup", key=None)
    server.request("GET", "/nope-warmup")
    before = _metrics(server)
    rng = random.Random(11)
    deadline = time.time() + 240
    sent = {"n": 0}

    def worker(i: int) -> None:
        while time.time() < deadline:
            with lock:
                if sent["n"] >= RANDOM_PATHS:
                    return
                sent["n"] += 1
                path = "/" + "/".join(f"{rng.getrandbits(40):x}" for _ in range(rng.randint(1, 3)))
            status = server.request(rng.choice(["GET", "POST", "PUT", "DELETE"]), path, key=None)[0]
            assert status == 401

    lock = threading.Lock()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = _metrics(server)
    assert sent["n"] == RANDOM_PATHS, f"only {sent['n']} requests in the time allowed"
    assert _series(after) == _series(before), sorted(_series(after) ^ _series(before))[:10]
    assert len(after) <= 1.1 * len(before), (len(before), len(after))
    assert 'fanzha_request_errors_total{endpoint="other",status="401"}' in after
    print(
        f"\n/metrics: {len(before):,} bytes before, {len(after):,} after {RANDOM_PATHS:,} keyless requests to random paths "
        f"({len(_series(before)):,} series both times)"
    )


@pytest.mark.parametrize(
    "target",
    [
        "//classify_text",
        "/./classify_text",
        "/classify_text/.",
        "/classify_text/",
        "/classify_text%2F",
        "/%2Fclassify_text",
        "/x/../classify_text",
        "/%2e/classify_text",
        "/classify_text;x",
        "/classify_text%00",
        "/CLASSIFY_TEXT",
        "/static_content/..%2F..%2Fservice.py",
        "/reports/",
        "/docs.json/",
        "http://evil.example/classify_text",
    ],
)
def test_path_tricks_are_404(server, target) -> None:
    body = json.dumps({"items": [{"text": BENIGN}]}).encode()
    status, headers, raw = server.request(
        "POST", target, body, {"Content-Type": "application/json", "Host": "evil.example"}
    )
    if target.startswith("http://"):  # an absolute-form target: uvicorn takes its path
        assert status in (200, 404), raw
        return
    assert_error(status, headers, raw, 404, "no such endpoint")
    assert "location" not in headers


# -- 4. tasks are validated at submit ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task,body,content_type,expected",
    [
        ("classify_archive", b"{}", "application/json", 400),
        ("classify_archive", b'{"items": []}', "application/json", 400),
        (
            "classify_archive",
            json.dumps({"items": [{"type": "text", "text": "你好啊"}] * 10_001}).encode(),
            "application/json",
            400,
        ),
        ("classify_archive", b"not json", "application/json", 400),
        ("scan_video", b"{}", "application/json", 400),
    ],
)
def test_bad_submissions_get_no_task(server, task, body, content_type, expected) -> None:
    status, headers, raw = server.request("POST", f"/{task}/submit", body, {"Content-Type": content_type})
    assert_error(status, headers, raw, expected)


def test_a_video_submission_that_is_an_image_is_415(server) -> None:
    body, headers = multipart({"file": ("qr.png", (MEDIA / "qr.png").read_bytes())})
    assert_error(*server.request("POST", "/scan_video/submit", body, headers), 415, "takes a video")


# -- 5. replays count once ----------------------------------------------------------------------------------------------


def test_a_retried_archive_task_counts_once(server) -> None:
    account, group = f"acct-{uuid.uuid4().hex[:8]}", f"grp-{uuid.uuid4().hex[:8]}"
    image = base64.b64encode((MEDIA / "poster.png").read_bytes()).decode()
    items = [
        {
            "type": "text",
            "text": SCAM,
            "id": "a1",
            "account_id": account,
            "group_id": group,
            "source": "comment",
        },
        {
            "type": "text",
            "text": SCAM.replace("29", "39"),
            "id": "a2",
            "account_id": account,
            "group_id": group,
        },
        {"type": "text", "text": BENIGN, "id": "a3", "account_id": account},
        {"type": "image", "data": image, "id": "a4", "account_id": account, "group_id": group},
    ]
    status, submitted = server.json("POST", "/classify_archive/submit", {"items": items})
    assert status == 200, submitted
    assert server.wait_task("classify_archive", submitted["task_id"]) == "completed"

    def counts() -> tuple:
        _, a = server.json("POST", "/account_risk", {"account_id": account})
        _, g = server.json("POST", "/group_risk", {"group_id": group})
        return (
            a["items"],
            a["flagged"],
            a["labels"],
            len(a["recent_flagged"]),
            g["items"],
            g["flagged"],
            g["labels"],
        )

    once = counts()
    assert once[0] == 4 and once[4] == 3 and once[1] >= 2, once
    task_id = submitted["task_id"]
    for _ in range(2):  # retry the completed task, twice
        status, retried = server.json("POST", f"/classify_archive/retry?task_id={task_id}")
        assert status == 200, retried
        assert server.wait_task("classify_archive", retried["task_id"]) == "completed"
        task_id = retried["task_id"]
    assert counts() == once
    # the same items through the synchronous endpoint: still the same items
    server.json("POST", "/classify_batch", {"items": items[:2]})
    assert counts() == once
    print(
        f"\naccount (items, flagged) and group (items, flagged) after one run {once[:2]} {once[4:6]}, "
        f"after two retries and a resend {counts()[:2]} {counts()[4:6]}"
    )


# -- 7. task ids belong to their endpoint; Bearer is a scheme ------------------------------------------------------


def test_a_task_id_is_refused_at_another_tasks_endpoints(server) -> None:
    status, submitted = server.json(
        "POST", "/classify_archive/submit", {"items": [{"type": "text", "text": BENIGN, "id": "t"}]}
    )
    assert status == 200
    task_id = submitted["task_id"]
    assert server.wait_task("classify_archive", task_id) == "completed"
    for method, action in (("GET", "status"), ("GET", "get"), ("POST", "retry"), ("PUT", "cancel")):
        status, headers, raw = server.request(method, f"/scan_video/{action}?task_id={task_id}")
        assert_error(status, headers, raw, 404, "belongs to another endpoint")
    status, job = server.json("GET", f"/classify_archive/get?task_id={task_id}")
    assert status == 200 and job["scored"] == 1
    assert_error(*server.request("GET", "/scan_video/get?task_id=" + "0" * 32), 404)  # unknown: BentoML's 404


@pytest.mark.parametrize(
    "headers,expected",
    [
        ({"Authorization": f"Bearer {KEY}"}, 200),
        ({"Authorization": f"bearer {KEY}"}, 200),
        ({"Authorization": f"BEARER {KEY}"}, 200),
        ({"Authorization": KEY}, 401),
        ({"Authorization": f"Basic {KEY}"}, 401),
        ({"X-API-Key": KEY[:-1]}, 401),
        ({"X-API-Key": KEY + "0"}, 401),
        ({"Cookie": f"X-API-Key={KEY}; api_key={KEY}"}, 401),
        ({}, 401),
    ],
)
def test_keys_only_whole_and_only_in_their_headers(server, headers, expected) -> None:
    body = json.dumps({"items": [{"text": BENIGN}]}).encode()
    status, got, raw = server.request(
        "POST", "/classify_text", body, {"Content-Type": "application/json", **headers}, key=None
    )
    assert status == expected, raw
    status, got, raw = server.request(
        "POST",
        f"/classify_text?api_key={KEY}&X-API-Key={KEY}",
        body,
        {"Content-Type": "application/json"},
        key=None,
    )
    assert_error(status, got, raw, 401, "API key")


# -- races -------------------------------------------------------------------------------------------------------------


def test_confirm_against_reject_exactly_one_wins(server) -> None:
    rounds = 12
    outcomes = []
    for i in range(rounds):
        status, receipt = server.json(
            "POST",
            "/report",
            {"reporter_id": f"race-{i}", "reason": "骗子", "target": {"type": "text", "text": SCAM}},
        )
        assert status == 200, receipt
        barrier = threading.Barrier(2)

        def decide(
            decision: str, report_id: str = receipt["report_id"], barrier: threading.Barrier = barrier
        ) -> tuple[str, int]:
            barrier.wait(10)
            status, _ = server.json(
                "POST",
                "/resolve_report",
                {
                    "report_id": report_id,
                    "status": decision,
                    "moderator_id": f"mod-{decision}",
                    "reason": decision,
                },
            )
            return decision, status

        with ThreadPoolExecutor(2) as pool:
            answers = dict(pool.map(decide, ["confirmed", "rejected"]))
        assert sorted(answers.values()) == [200, 409], answers
        winner = next(d for d, s in answers.items() if s == 200)
        _, final = server.json(
            "POST", "/report_status", {"report_id": receipt["report_id"], "reporter_id": f"race-{i}"}
        )
        assert final["status"] == winner and [e["status"] for e in final["history"]].count(winner) == 1
        outcomes.append(winner)
    assert len(outcomes) == rounds


# -- 6. overload: a burst sheds load with 503s that say so --------------------------------------------------------------


def test_a_burst_sheds_load_with_the_overload_body(server) -> None:
    # 256 texts a request and a 20 ms latency budget (FANZHA_MAX_LATENCY_MS): queued requests are shed
    body = json.dumps({"items": [{"text": f"{SCAM} {i}"} for i in range(256)]}, ensure_ascii=False).encode()
    deadline = time.time() + 90

    def one(_):
        if time.time() > deadline:
            return None
        return server.request("POST", "/classify_text", body, {"Content-Type": "application/json"})

    with ThreadPoolExecutor(12) as pool:
        answers = [a for a in pool.map(one, range(48)) if a is not None]
    statuses = [status for status, _, _ in answers]
    assert set(statuses) <= {200, 503}, statuses
    for status, headers, raw in answers:
        if status == 503:
            assert json.loads(raw) == {
                "error": "overloaded, retry later",
                "request_id": headers["x-request-id"],
            }
            assert headers["retry-after"] == "1"
    assert 503 in statuses, (
        f"no request was shed ({len(answers)} answered): the burst was too small for this machine"
    )


def test_the_server_logged_no_unhandled_error(server) -> None:
    text = Path(server.log).read_text(errors="replace")
    assert not re.search(r'"status": 5(?!03)\d\d', text), re.findall(r'.{200}"status": 5\d\d.{50}', text)[:3]
