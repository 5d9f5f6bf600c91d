"""Property-based fuzzing of the OpenAPI surface (schemathesis): no generated request gets a 5xx, every answer
validates against the published schema (response-schema conformance, error bodies included), and schema-invalid
requests (negative generation) are refused with a 4xx.

Requests go through the session's test client, on the event loop the app started on (the adaptive
batcher belongs to that loop). Task status/get/retry/cancel need the task store a real server starts,
and /metrics hangs under the test client: test_server.py fuzzes those against a real server.
"""

from collections import Counter

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

EXAMPLES_PER_OPERATION = 30
REQUEST_KEYS = ("method", "url", "headers", "params", "cookies", "json", "data", "files")


def test_no_generated_request_gets_a_server_error(client) -> None:
    spec = client.get("/docs.json").json()
    schema = schemathesis.openapi.from_dict(spec).exclude(
        path_regex=r"^/(metrics|scan_video|classify_archive)"
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {
        "/classify_text",
        "/classify_image",
        "/classify_video",
        "/classify_batch",
    }
    conforming: Counter[str] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,  # the same examples on every run: a failure in CI reproduces here
        )
        def no_server_error(case) -> None:
            # requests encodes the body exactly as schemathesis means it (multipart included); the test
            # client sends those bytes
            kwargs = case.as_transport_kwargs(base_url="http://testserver")
            prepared = requests.Request(**{k: v for k, v in kwargs.items() if k in REQUEST_KEYS}).prepare()
            response = client.request(
                prepared.method, prepared.url, content=prepared.body, headers=dict(prepared.headers)
            )
            assert response.status_code < 500, (
                f"{case.as_curl_command(base_url='http://testserver')}\n→ {response.status_code} {response.text[:500]}"
            )
            case.operation.validate_response(response)  # raises, naming the violations (a 4xx body too)
            if response.is_success:
                conforming[case.operation.path] += 1

        no_server_error()
    # valid generated requests got conforming answers (every endpoint's real answers: test_clients.py)
    print("2xx answers validated against /docs.json:", dict(conforming))
    assert (
        min(
            conforming[path]
            for path in ("/classify_text", "/classify_image", "/clusters", "/alerts", "/reports")
        )
        > 0
    ), conforming


def test_schema_invalid_requests_are_refused(client) -> None:
    """schemathesis' negative generation: bodies that break the schema (wrong types, missing or extra fields,
    out-of-range values) get a 4xx, never a 5xx, with an error body as published.

    Multipart endpoints are held to no 5xx and a published body only: a form cannot say "array" (a list
    becomes the field repeated, or absent when empty), and a repeated field is read as its last value, so
    schemathesis' "this should have been refused" does not apply to them."""
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import negative_data_rejection, response_schema_conformance

    spec = client.get("/docs.json").json()
    schema = schemathesis.openapi.from_dict(spec).exclude(
        path_regex=r"^/(metrics|scan_video|classify_archive)"
    )
    refused: Counter[str] = Counter()
    nothing_to_break = []

    def negative(operation):
        form = "multipart/form-data" in str(
            operation.definition.raw.get("requestBody", {}).get("content", {})
        )
        checks = [not_a_server_error, response_schema_conformance] + (
            [] if form else [negative_data_rejection]
        )

        @given(case=operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        @settings(
            max_examples=EXAMPLES_PER_OPERATION // 2,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=True,
        )
        def refused_with_a_4xx(case) -> None:
            kwargs = case.as_transport_kwargs(base_url="http://testserver")
            prepared = requests.Request(**{k: v for k, v in kwargs.items() if k in REQUEST_KEYS}).prepare()
            response = client.request(
                prepared.method, prepared.url, content=prepared.body, headers=dict(prepared.headers)
            )
            case.validate_response(response, checks=checks)
            refused[f"{case.operation.path} {response.status_code}"] += 1

        return refused_with_a_4xx

    for operation in (result.ok() for result in schema.get_all_operations()):
        try:
            negative(operation)()
        except Unsatisfiable:  # takes no input to break (the probes)
            nothing_to_break.append(operation.path)
    print("negative cases answered:", dict(refused))
    assert sorted(nothing_to_break) == ["/healthz", "/livez", "/readyz"]
    for path in (
        "/classify_text",
        "/classify_image",
        "/classify_batch",
        "/report",
        "/resolve_report",
        "/alerts",
        "/dispose",
        "/lift_action",
    ):
        assert refused[f"{path} 400"] > 0, refused
