"""The one mapping from fanzha's errors to HTTP statuses."""

import pytest

from fanzha.models import errors
from fanzha.platform import InvalidTransition, UnknownEntity, UnknownReport


@pytest.mark.parametrize(
    "error,status",
    [
        (errors.InputError("bad"), 400),
        (errors.LimitExceeded("big"), 413),
        (errors.DurationExceeded("long"), 413),
        (errors.UnsupportedMedia("what"), 415),
        (UnknownEntity("who"), 404),
        (UnknownReport("which"), 404),
        (InvalidTransition("final"), 409),
    ],
)
def test_each_domain_error_has_one_status(error, status) -> None:
    from fanzha.serving.errors import http_error, http_errors

    mapped = http_error(error)
    assert int(mapped.error_code) == status and str(mapped) == str(error)
    with pytest.raises(type(mapped)), http_errors():
        raise error


def test_setup_errors_stay_server_errors() -> None:
    from fanzha.serving.errors import http_error, http_errors

    assert http_error(errors.DatabaseError("down")) is None
    with pytest.raises(errors.DatabaseError), http_errors():
        raise errors.DatabaseError("down")


@pytest.mark.parametrize(
    "path, body",
    [
        ("/clusters", {"limit": True}),
        ("/alerts", {"after_id": True}),
        ("/clusters", {"min_accounts": 2.5}),
        ("/alerts", {"limit": "10"}),
    ],
)
def test_a_count_must_be_a_json_integer(client, path, body) -> None:
    """true is not 1 and "10" is not 10: pydantic's lax mode would take them, the schema says integer."""
    r = client.post(path, json=body)
    assert r.status_code == 400, r.text
