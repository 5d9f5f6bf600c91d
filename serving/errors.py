"""The one mapping from fanzha's errors to HTTP: every endpoint raises fanzha's own errors (or lets the Detector
and the Platform raise them) inside `http_errors()`.

    InputError → 400 · LimitExceeded → 413 · UnsupportedMedia → 415 · NotFound → 404 · Conflict → 409 ·
    Busy → 503 (send it again)

Anything else is a bug or an outage, and stays a 500. The gate (gate.py) turns every error body into one
JSON object with the request id.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus

from bentoml.exceptions import BentoMLException, InvalidArgument
from bentoml.exceptions import NotFound as HttpNotFound

from fanzha.models.errors import (
    Busy,
    Conflict,
    FanzhaError,
    InputError,
    LimitExceeded,
    NotFound,
    UnsupportedMedia,
)


class PayloadTooLarge(BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class UnsupportedMediaType(BentoMLException):
    error_code = HTTPStatus.UNSUPPORTED_MEDIA_TYPE


class HttpConflict(BentoMLException):
    error_code = HTTPStatus.CONFLICT


class Unavailable(BentoMLException):
    """A capability this deployment's model lacks (e.g. no conversation head): 503, naming what is missing."""

    error_code = HTTPStatus.SERVICE_UNAVAILABLE


# most specific first
STATUS: tuple[tuple[type[FanzhaError], type[BentoMLException]], ...] = (
    (LimitExceeded, PayloadTooLarge),
    (UnsupportedMedia, UnsupportedMediaType),
    (InputError, InvalidArgument),
    (NotFound, HttpNotFound),
    (Conflict, HttpConflict),
    (Busy, Unavailable),
)


def http_error(e: FanzhaError) -> BentoMLException | None:
    """The HTTP error for a fanzha error, or None when it is not the caller's doing (a 500)."""
    for kind, http in STATUS:
        if isinstance(e, kind):
            return http(str(e))
    return None


@contextmanager
def http_errors() -> Iterator[None]:
    try:
        yield
    except FanzhaError as e:
        mapped = http_error(e)
        if mapped is None:
            raise
        raise mapped from None
