"""Reading records: a planned chunk of a JSONL / CSV / Parquet file or a batch of media files, or a JSONL stream.

Every input item becomes one Record — a text, an image or a video, or the reason it could not be read — and
nothing here raises for bad content: a bad line is a Record with an `error`, so every input line gets its
output row. `fanzha score` reads chunks; `fanzha classify --input` reads a stream through the same line parser
and the same field rules.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from .formats import VIDEO_SUFFIXES, csv_records

if TYPE_CHECKING:
    from .plan import Chunk


@dataclass(frozen=True)
class Columns:
    """Which fields of a record hold what (JSONL keys, CSV headers, Parquet columns). `image` / `video` None:
    a text-only input, where a record without its text field is "missing field 'text'"."""

    text: str = "text"
    id: str = "id"
    image: str | None = "image"
    video: str | None = "video"
    account_id: str = "account_id"
    group_id: str = "group_id"
    conversation_id: str = "conversation_id"  # rows sharing one are also scored as a conversation
    sender: str = "sender"
    ts: str = "ts"


TEXT_ONLY = Columns(image=None, video=None)


@dataclass
class Record:
    """One input item: a text, an image or a video (or the reason it could not be read)."""

    id: str  # the record's own id, else its place (`posts.jsonl:line 7`)
    source: str  # file and line / record / row
    kind: str = "text"  # text / image / video
    text: str | None = None
    path: str | None = None  # image or video file
    account_id: str | None = None
    group_id: str | None = None
    error: str | None = None
    line: int | None = None  # the line / record / row number in its input
    key: Any = None  # the id as the input gave it (any JSON value), else the line number; None for an unreadable line
    conversation_id: str | None = None  # a message of this conversation (fanzha.batch.conversations)
    sender: str | None = None
    ts: float | None = None


def parse_line(raw: bytes) -> tuple[dict | None, str | None]:
    """One JSONL line → (object, None), (None, why it cannot be read), or (None, None) for a blank line."""
    try:
        line = raw.decode("utf-8").removeprefix(
            "\ufeff"
        )  # a byte-order mark on the first line is not content
    except UnicodeDecodeError as e:
        return None, f"invalid UTF-8 at byte {e.start}"
    if not line.strip():
        return None, None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        return None, f"invalid JSON: {e.msg} (column {e.colno})"
    if not isinstance(obj, dict):
        return None, f"expected a JSON object, got {type(obj).__name__}"
    return obj, None


def from_mapping(row: dict, where: str, line: int | None, base: Path, columns: Columns) -> Record:
    """A record from one parsed row; field problems become its `error`. Media paths are relative to `base`."""

    def value(key: str | None) -> str | None:
        v = row.get(key) if key else None
        return None if v is None or v == "" else str(v)

    record = Record(
        id=value(columns.id) or where,
        source=where,
        account_id=value(columns.account_id),
        group_id=value(columns.group_id),
        line=line,
        key=row.get(columns.id, line),
        conversation_id=value(columns.conversation_id),
        sender=value(columns.sender),
        ts=_seconds(row.get(columns.ts)),
    )
    text, image, video = row.get(columns.text), value(columns.image), value(columns.video)
    if image or video:
        record.kind = "image" if image else "video"
        record.path = str(base / (image or video))  # relative paths are relative to the table file
    elif text is None:
        media = [repr(c) for c in (columns.image, columns.video) if c]
        record.error = (
            f"no {columns.text!r}, {' or '.join(media)} field" if media else f"missing field {columns.text!r}"
        )
    elif text == "":
        record.error = f"field {columns.text!r} is empty"
    elif not isinstance(text, str):
        record.error = f"field {columns.text!r} must be a string, got {type(text).__name__}"
    else:
        record.text = text
    return record


def _seconds(v: Any) -> float | None:
    """A timestamp as seconds since the epoch (a number, a number in a CSV cell, a Parquet timestamp, an ISO 8601
    string); None when it is not one."""
    if isinstance(v, bool) or v is None or v == "":
        return None
    if hasattr(v, "timestamp"):  # a Parquet timestamp column reads as datetime
        return float(v.timestamp())
    try:
        t = float(v)
    except (TypeError, ValueError):
        try:  # an ISO 8601 time: 2026-11-30T08:00:00+08:00
            return datetime.fromisoformat(str(v)).timestamp()
        except ValueError:
            return None
    return t if math.isfinite(t) else None


def unreadable(where: str, line: int | None, error: str) -> Record:
    return Record(id=where, source=where, error=error, line=line)


def iter_jsonl(stream: BinaryIO, name: str, columns: Columns = TEXT_ONLY, first: int = 1) -> Iterator[Record]:
    """Records from a JSONL stream (a file, stdin), in order; blank lines are skipped."""
    base = Path(name).parent
    for n, raw in enumerate(stream, first):
        obj, error = parse_line(raw)
        where = f"{Path(name).name}:line {n}"
        if error:
            yield unreadable(where, n, error)
        elif obj is not None:
            yield from_mapping(obj, where, n, base, columns)


def read_chunk(chunk: Chunk, columns: Columns = Columns()) -> list[Record]:
    """Every record of a planned chunk, in order (a blank line is an error record: lines are counted)."""
    name = Path(chunk.path).name
    base = Path(chunk.path).parent
    if chunk.kind == "media":
        return [
            Record(
                id=os.path.relpath(f, chunk.path) if Path(chunk.path).is_dir() else f,
                source=f,
                kind="video" if Path(f).suffix.lower() in VIDEO_SUFFIXES else "image",
                path=f,
            )
            for f in chunk.files
        ]
    if chunk.kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(chunk.path).read_row_group(chunk.start)
        return [
            from_mapping(row, f"{name}:row {chunk.first + i + 1}", chunk.first + i + 1, base, columns)
            for i, row in enumerate(table.to_pylist())
        ]
    records = []
    with open(chunk.path, "rb") as f:
        f.seek(chunk.start)
        raws = csv_records(f) if chunk.kind == "csv" else iter(f)
        for i in range(chunk.count):
            raw = next(raws, None)
            if raw is None:  # the file shrank since planning
                break
            n = chunk.first + i
            where = f"{name}:{'record' if chunk.kind == 'csv' else 'line'} {n}"
            records.append(
                _csv_record(raw, chunk.header, where, n, base, columns)
                if chunk.kind == "csv"
                else _json_record(raw, where, n, base, columns)
            )
    return records


def _json_record(raw: bytes, where: str, n: int, base: Path, columns: Columns) -> Record:
    obj, error = parse_line(raw)
    if obj is None:
        return unreadable(where, n, error or "blank line")
    return from_mapping(obj, where, n, base, columns)


def _csv_record(
    raw: bytes, header: tuple[str, ...], where: str, n: int, base: Path, columns: Columns
) -> Record:
    try:
        line = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        return unreadable(where, n, f"invalid UTF-8 at byte {e.start}")
    if not line.strip():
        return unreadable(where, n, "blank line")
    rows = list(csv.reader(io.StringIO(line)))
    if len(rows) != 1:  # never drop rows silently
        return unreadable(where, n, f"one record read as {len(rows)} CSV rows")
    values = rows[0]
    if len(values) != len(header):
        return unreadable(where, n, f"expected {len(header)} columns, got {len(values)}")
    return from_mapping(dict(zip(header, values, strict=True)), where, n, base, columns)
