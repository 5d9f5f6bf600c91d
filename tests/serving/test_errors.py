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
