"""fanzha's errors: one root, and a tree that every door maps the same way.

    FanzhaError
    ├── InputError          the caller's input cannot be used: HTTP 400, a per-record error in batch, exit 2
    │   ├── LimitExceeded   over a size, pixel, duration or frame limit: HTTP 413
    │   │   └── DurationExceeded
    │   └── UnsupportedMedia   not an image or video we read: HTTP 415
    ├── NotFound            no such account, group, cluster or report: HTTP 404
    ├── Conflict            the state does not allow it (a final report changed again): HTTP 409
    └── SetupError          fanzha cannot run as configured: exit 2, the service does not start
        ├── ModelError      model files missing, unreadable or not belonging together
        ├── OcrError        the OCR engine cannot be built
        ├── DatabaseError   the database is unreachable or newer than this fanzha
        ├── MissingExtra    an optional dependency is not installed (ray, psycopg, paddleocr)
        └── SettingsError   a FANZHA_* variable or an option has a value that cannot work

The HTTP mapping is `fanzha.serving.errors`; the CLI's is `fanzha.cli.main`. Each class keeps the builtin
base it had before the tree existed (ValueError, LookupError, RuntimeError), so older `except` clauses hold.
"""


class FanzhaError(Exception):
    """Every error fanzha raises on purpose; its message is meant for the person who can fix the cause."""


class InputError(FanzhaError, ValueError):
    """The caller's input cannot be scored; the message says why (HTTP 400, a per-record error in batch)."""


class LimitExceeded(InputError):
    """The input is over a configured size, pixel, duration or frame limit (HTTP 413)."""


class DurationExceeded(LimitExceeded):
    """A video longer than the limit the caller set (or FANZHA_MAX_VIDEO_SECONDS)."""


class UnsupportedMedia(InputError):
    """Not an image or video we read: unknown bytes or a format we do not take (HTTP 415)."""


class NotFound(FanzhaError, LookupError):
    """The thing named does not exist, or is not the caller's to see (HTTP 404)."""


class Conflict(FanzhaError, RuntimeError):
    """The request is well-formed but the current state does not allow it (HTTP 409)."""


class Busy(FanzhaError, RuntimeError):
    """Contention the caller can wait out: nothing was stored, send the same request again (HTTP 503)."""


class SetupError(FanzhaError, RuntimeError):
    """fanzha cannot run as configured: files, engines, databases, optional packages, settings."""


class ModelError(SetupError):
    """The model files are missing, unreadable or do not belong together."""


class OcrError(SetupError):
    """The OCR engine cannot be built (a missing optional package, missing model files)."""


class DatabaseError(SetupError):
    """The database cannot be used: unreachable, or its schema is newer than this fanzha."""


class MissingExtra(SetupError):
    """An optional dependency is not installed; the message names the extra to install."""


class SettingsError(SetupError, ValueError):
    """A setting (a FANZHA_* variable, a command-line option) has a value that cannot work."""
