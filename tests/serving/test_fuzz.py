"""Property-based fuzzing of the OpenAPI surface (schemathesis): no generated request gets a 5xx, and every 2xx
answer validates against the published schema (response-schema conformance).

Requests go through the session's test client, on the event loop the app started on (the adaptive
batcher belongs to that loop). Task status/get/retry/cancel need the task store a real server starts,
and /metrics hangs under the test client: test_server.py exercises those against a real server.
"""

from collections import Counter

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings

EXAMPLES_PER_OPERATION = 30
REQUEST_KEYS = ("method", "url", "headers", "params", "cookies", "json", "data", "files")


def test_no_generated_request_gets_a_server_error(client) -> None:
    spec = client.get("/docs.json").json()
    schema = schemathesis.openapi.from_dict(spec).exclude(path_regex=r"^/(metrics|scan_video|classify_archive)")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/classify_text", "/classify_image", "/classify_video", "/classify_batch"}
    conforming: Counter[str] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case) -> None:
            # requests encodes the body exactly as schemathesis means it (multipart included); the test
            # client sends those bytes
            kwargs = case.as_transport_kwargs(base_url="http://testserver")
            prepared = requests.Request(**{k: v for k, v in kwargs.items() if k in REQUEST_KEYS}).prepare()
            response = client.request(prepared.method, prepared.url, content=prepared.body, headers=dict(prepared.headers))
            assert response.status_code < 500, f"{case.as_curl_command(base_url='http://testserver')}\n→ {response.status_code} {response.text[:500]}"
            if response.is_success:
                case.operation.validate_response(response)  # raises, naming the violations
                conforming[case.operation.path] += 1

        no_server_error()
    # valid generated requests got conforming answers (every endpoint's real answers: test_clients.py)
    print("2xx answers validated against /docs.json:", dict(conforming))
    assert min(conforming[path] for path in ("/classify_text", "/classify_image", "/clusters", "/alerts", "/reports")) > 0, conforming
