"""Against a real `bentoml serve` process on loopback, with API keys on: batching under concurrency, tasks, /metrics."""

import json
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from fanzha.serving.launch import local_server

from ..conftest import BENIGN, MEDIA, SCAM

KEY = "test-key-1"


def request(
    url: str, body: bytes | None = None, headers: dict | None = None, key: str | None = KEY
) -> tuple[int, bytes]:
    headers = dict(headers or {})
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(
        url, data=body, headers=headers, method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def multipart(name: str, data: bytes) -> tuple[bytes, dict]:
    boundary = "fanzha-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.fixture(scope="module")
def server(model_tag, tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "serve.log"
    with local_server({"FANZHA_API_KEYS": KEY, "FANZHA_THREADS": "1"}, log=log, ready_seconds=90) as live:
        yield live.url


def classify(url: str, texts: list[str], key: str | None = KEY) -> tuple[int, list]:
    body = json.dumps({"items": [{"text": t, "id": str(i)} for i, t in enumerate(texts)]}).encode()
    status, raw = request(url + "/classify_text", body, {"Content-Type": "application/json"}, key=key)
    return status, json.loads(raw)


def test_keys_are_enforced(server) -> None:
    assert classify(server, [BENIGN], key=None)[0] == 401
    assert classify(server, [BENIGN], key="nope")[0] == 401
    assert request(server + "/healthz", key=None)[0] == 200


def batch_sizes(url: str) -> tuple[float, float, float]:
    """BentoML's adaptive-batch histogram for classify_text, summed over workers: (batches, requests in them,
    batches that held a single request)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, raw = request(url + "/metrics")
    assert status == 200
    batches = requests = single = 0.0
    for family in text_string_to_metric_families(raw.decode()):
        if family.name != "bentoml_service_adaptive_batch_size":
            continue
        for sample in family.samples:
            if sample.labels.get("method_name") != "classify_text":
                continue
            if sample.name.endswith("_count"):
                batches += sample.value
            elif sample.name.endswith("_sum"):
                requests += sample.value
            elif sample.name.endswith("_bucket") and float(sample.labels["le"]) == 1.0:
                single += sample.value
    return batches, requests, single


def test_concurrent_requests_are_batched_and_answered_in_order(server) -> None:
    def one(i: int) -> tuple[int, list]:
        return classify(server, [SCAM, BENIGN] if i % 2 else [BENIGN])

    before = batch_sizes(server)
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(32)))
    for i, (status, verdicts) in enumerate(answers):
        assert status == 200
        expected = ["block", "pass"] if i % 2 else ["pass"]
        assert [v["decision"] != "pass" for v in verdicts] == [d != "pass" for d in expected]
        assert [v["id"] for v in verdicts] == [str(j) for j in range(len(expected))]
    batches, requests, single = (after - b for after, b in zip(batch_sizes(server), before, strict=True))
    print(f"\n32 concurrent requests: {batches:.0f} batches, {single:.0f} of a single request")
    assert requests == 32  # every request went through the adaptive batcher…
    assert batches - single >= 1 and batches < 32, (
        batches,
        single,
    )  # …and at least one batch held more than one


def test_video_task_submit_status_get(server) -> None:
    body, headers = multipart("flash_scam.mp4", (MEDIA / "flash_scam.mp4").read_bytes())
    status, raw = request(server + "/scan_video/submit", body, headers)
    assert status == 200, raw
    task_id = json.loads(raw)["task_id"]
    deadline = time.time() + 60
    while time.time() < deadline:
        state = json.loads(request(f"{server}/scan_video/status?task_id={task_id}")[1])["status"]
        if state in ("completed", "failed"):
            break
        time.sleep(0.3)
    assert state == "completed"
    verdict = json.loads(request(f"{server}/scan_video/get?task_id={task_id}")[1])
    assert verdict["decision"] != "pass" and [s["triggered"] for s in verdict["timeline"]] == [
        False,
        True,
        False,
    ]


def test_archive_task_records_per_item_errors(server) -> None:
    import base64

    items = [
        {"type": "text", "text": SCAM, "id": "a"},
        {"type": "image", "data": base64.b64encode(b"junk").decode(), "id": "b"},
    ]
    status, raw = request(
        server + "/classify_archive/submit",
        json.dumps({"items": items}).encode(),
        {"Content-Type": "application/json"},
    )
    task_id = json.loads(raw)["task_id"]
    assert status == 200, raw
    deadline, state = time.time() + 60, None
    while time.time() < deadline:
        state = json.loads(request(f"{server}/classify_archive/status?task_id={task_id}")[1])["status"]
        if state in ("completed", "failed"):
            break
        time.sleep(0.2)
    assert state == "completed"  # finished, and finished well, before its results are read
    job = json.loads(request(f"{server}/classify_archive/get?task_id={task_id}")[1])
    assert (job["scored"], job["failed"]) == (1, 1) and "unsupported media" in job["results"][1]["error"]


def test_metrics_count_our_decisions_next_to_bentoml(server) -> None:
    classify(server, [SCAM, BENIGN])
    status, raw = request(server + "/metrics")
    text = raw.decode()
    assert status == 200 and "bentoml_service_request_duration_seconds" in text
    assert 'fanzha_decisions_total{decision="block",endpoint="classify_text"}' in text
    assert 'fanzha_labels_total{endpoint="classify_text",label="fake_giveaway"}' in text
    assert 'fanzha_request_seconds_count{endpoint="/classify_text"}' in text
    assert 'fanzha_request_errors_total{endpoint="/classify_text",status="401"}' in text


def test_fuzz_task_and_metrics_routes(server) -> None:
    """The routes the in-process fuzz cannot reach (tasks need the task store a real server starts; /metrics
    hangs under the test client), fuzzed against the real server: schema-valid requests (and the task
    endpoints with a real task id) get no 5xx and, when 2xx, answers that match /docs.json; schema-invalid
    requests (schemathesis' negative generation) are refused with a 4xx, with an error body as published."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import negative_data_rejection, response_schema_conformance

    auth = {"Authorization": f"Bearer {KEY}"}
    spec = json.loads(request(server + "/docs.json")[1])
    schema = schemathesis.openapi.from_dict(spec).include(
        path_regex=r"^/(metrics|scan_video|classify_archive)"
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= {
        ("GET", "/metrics"),
        ("POST", "/classify_archive/submit"),
        ("GET", "/classify_archive/status"),
        ("GET", "/classify_archive/get"),
        ("POST", "/classify_archive/retry"),
        ("PUT", "/classify_archive/cancel"),
        ("POST", "/scan_video/submit"),
        ("GET", "/scan_video/status"),
        ("GET", "/scan_video/get"),
    }
    status, raw = request(
        server + "/classify_archive/submit",
        json.dumps({"items": [{"type": "text", "text": BENIGN}]}).encode(),
        {"Content-Type": "application/json"},
    )
    assert status == 200, raw
    real_task = json.loads(raw)["task_id"]
    answered: Counter = Counter()
    unsatisfiable = []

    def fuzzer(operation, mode, fixed):
        checks = [not_a_server_error, response_schema_conformance]
        form = "multipart/form-data" in str(
            operation.definition.raw.get("requestBody", {}).get("content", {})
        )
        if mode is GenerationMode.NEGATIVE and not form:  # a form cannot say "array" (test_fuzz.py says more)
            checks.append(negative_data_rejection)

        @given(case=operation.as_strategy(generation_mode=mode, **fixed))
        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case) -> None:
            response = case.call(base_url=server, headers=auth, timeout=60)
            case.validate_response(response, checks=checks)  # raises, naming the request and the violation
            answered[(mode.value, response.status_code // 100)] += 1

        return fuzz

    for operation in operations:
        takes_task = any(p.get("name") == "task_id" for p in operation.definition.raw.get("parameters", []))
        runs = [(GenerationMode.POSITIVE, {}), (GenerationMode.NEGATIVE, {})]
        if takes_task and "archive" in operation.path:
            runs.append((GenerationMode.POSITIVE, {"query": {"task_id": real_task}}))
        for mode, fixed in runs:
            try:
                fuzzer(operation, mode, fixed)()
            except Unsatisfiable:  # nothing about it can be made invalid (GET /metrics takes no input)
                unsatisfiable.append((mode.value, operation.method.upper(), operation.path))
    print("\ntask and metrics routes:", dict(answered), "no negative case for", unsatisfiable)
    assert answered[("positive", 2)] > 0 and answered[("negative", 4)] > 0
    assert all(path == "/metrics" or mode == "positive" for mode, _, path in unsatisfiable), unsatisfiable
