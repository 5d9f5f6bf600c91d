"""Property-based fuzzing of the OpenAPI surface (schemathesis): no generated request gets a 5xx.

Task status/get/retry/cancel need the task store a real server starts, and /metrics hangs under the test
client (BentoML's multiprocess collector): both are exercised against a real server in test_server.py.
"""

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

EXAMPLES_PER_OPERATION = 30


def test_no_generated_request_gets_a_server_error(app, client) -> None:  # client: the app has started
    schema = schemathesis.openapi.from_asgi("/docs.json", app).exclude(path_regex=r"^/(metrics|scan_video|classify_archive)")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/classify_text", "/classify_image", "/classify_video", "/classify_batch"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case) -> None:
            case.validate_response(case.call(), checks=[not_a_server_error])

        no_server_error()
