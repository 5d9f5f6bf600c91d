"""What the batch job reads and writes, told by file suffix; where a CSV record ends."""

from __future__ import annotations

from collections.abc import Iterator

from fanzha.models.errors import InputError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv", ".flv", ".avi", ".ts", ".m4v"}
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
TABLE_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
}


class ArchiveError(InputError):
    """The job cannot start: a missing input, an unknown format, an output from a different job."""


def output_format(output: str) -> str:
    return "jsonl" if output.endswith((".jsonl", ".ndjson")) else "parquet"


def csv_records(f) -> Iterator[bytes]:
    """Raw CSV records from a binary file, by the csv module's own quoting rule: a quote opens a quoted field
    only at the start of a field, `""` inside one is a literal quote, and only a newline outside quotes
    ends a record (a stray quote in `5" screen` does not swallow the lines after it)."""
    pending, quoted = b"", False
    for line in f:
        pending += line
        if b'"' in line or quoted:
            quoted = _still_quoted(line, quoted)
        if not quoted:
            yield pending
            pending = b""
    if pending:
        yield pending


def _still_quoted(line: bytes, quoted: bool) -> bool:
    """Whether a quoted field is still open at the end of `line`, given whether one was open at its start."""
    at_field_start = not quoted
    i, n = 0, len(line)
    while i < n:
        c = line[i : i + 1]
        if quoted:
            if c == b'"':
                if line[i + 1 : i + 2] == b'"':
                    i += 1  # an escaped quote
                else:
                    quoted = False
        elif c == b'"' and at_field_start:
            quoted = True
        at_field_start = c == b"," and not quoted
        i += 1
    return quoted
