"""Errors every door maps the same way: InputError → HTTP 4xx / a per-record error in batch jobs."""


class InputError(ValueError):
    """The caller's input cannot be scored; the message says why (HTTP 400, a per-record error in batch)."""


class LimitExceeded(InputError):
    """The input is over a configured size, pixel, duration or frame limit (HTTP 413)."""


class DurationExceeded(LimitExceeded):
    """A video longer than the limit the caller set (or FANZHA_MAX_VIDEO_SECONDS)."""


class UnsupportedMedia(InputError):
    """Not an image or video we read: unknown bytes or a format we do not take (HTTP 415)."""
