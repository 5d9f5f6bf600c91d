"""Errors every door maps the same way: InputError → HTTP 4xx / a per-record error in batch jobs."""


class InputError(ValueError):
    """The caller's input cannot be scored; the message says why (HTTP 4xx, a per-record error in batch)."""
