"""Inputs → chunks: the unit of work both engines score and the unit of resuming.

Chunks are planned up front from a fast pass over each file (byte offsets of every `chunk_size` lines or CSV
records, Parquet row groups, batches of media files), never overlap and cover every record.
"""

from __future__ import annotations

import csv
import glob
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .formats import MEDIA_SUFFIXES, TABLE_SUFFIXES, ArchiveError, csv_records

MEDIA_CHUNK = 16  # media files per chunk: one OCR'd video can take seconds


@dataclass(frozen=True)
class Chunk:
    """A unit of work: where to start reading and how much. Chunks never overlap and cover every record."""

    input: int  # index of the input this chunk belongs to
    index: int  # chunk number within that input
    path: str
    kind: str  # jsonl / csv / parquet / media
    start: int  # byte offset (jsonl, csv), row group (parquet), file index (media)
    count: int  # lines / records / - / files
    first: int  # number of the first line / record / row in the input, for `source`
    files: tuple[str, ...] = ()  # media chunks: the files
    header: tuple[str, ...] = ()  # csv chunks: the column names

    @property
    def part_name(self) -> str:
        return f"part-{self.input:04d}-{self.index:07d}"


def discover(inputs: list[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(path, kind, media files) per input; a folder or glob becomes one media input of its sorted files."""
    found = []
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES)
            found.append((spec, "media", tuple(files)))
        elif path.is_file():
            kind = TABLE_SUFFIXES.get(path.suffix.lower())
            if kind is None and path.suffix.lower() in MEDIA_SUFFIXES:
                found.append((spec, "media", (spec,)))
            elif kind is None:
                raise ArchiveError(
                    f"{spec}: unknown format; give .jsonl, .csv, .parquet files, or folders/globs of images and videos"
                )
            else:
                found.append((spec, kind, ()))
        elif any(c in spec for c in "*?["):
            files = sorted(
                p for p in glob.glob(spec, recursive=True) if Path(p).suffix.lower() in MEDIA_SUFFIXES
            )
            if not files:
                raise ArchiveError(f"{spec}: the pattern matches no image or video files")
            found.append((spec, "media", tuple(files)))
        else:
            raise ArchiveError(f"{spec}: no such file or folder")
    return found


def plan(inputs: list[str], chunk_size: int) -> list[Chunk]:
    if chunk_size < 1:
        raise ArchiveError(f"chunk size must be at least 1, got {chunk_size}")
    chunks: list[Chunk] = []
    for i, (path, kind, files) in enumerate(discover(inputs)):
        if kind == "jsonl":
            starts = [(offset, first, count) for offset, first, count in _line_chunks(path, chunk_size)]
            chunks += [
                Chunk(i, k, path, kind, offset, count, first)
                for k, (offset, first, count) in enumerate(starts)
            ]
        elif kind == "csv":
            try:
                header, starts = _csv_chunks(path, chunk_size)
            except UnicodeDecodeError as e:
                raise ArchiveError(f"{path}: the CSV header is not UTF-8 (byte {e.start})") from None
            chunks += [
                Chunk(i, k, path, kind, offset, count, first, header=header)
                for k, (offset, first, count) in enumerate(starts)
            ]
        elif kind == "parquet":
            try:
                meta = pq.ParquetFile(path).metadata
            except (pa.ArrowException, OSError) as e:
                raise ArchiveError(f"{path}: not a readable Parquet file: {e}") from None
            first = 0
            for g in range(meta.num_row_groups):
                rows = meta.row_group(g).num_rows
                chunks.append(Chunk(i, g, path, kind, g, rows, first))
                first += rows
        else:
            for k, j in enumerate(range(0, len(files), MEDIA_CHUNK)):
                batch = files[j : j + MEDIA_CHUNK]
                chunks.append(Chunk(i, k, path, kind, j, len(batch), j, files=batch))
    return chunks


def _chunk_offsets(records, offset: int, chunk_size: int) -> list[tuple[int, int, int]]:
    """(byte offset, number of the first record, records) for every `chunk_size` raw records."""
    chunks, start, first, count = [], offset, 1, 0
    for n, record in enumerate(records, 1):
        if count == 0:
            start, first = offset, n
        offset += len(record)
        count += 1
        if count == chunk_size:
            chunks.append((start, first, count))
            count = 0
    if count:
        chunks.append((start, first, count))
    return chunks


def _line_chunks(path: str, chunk_size: int) -> list[tuple[int, int, int]]:
    """JSONL chunks from one buffered pass over the lines, no parsing."""
    with open(path, "rb") as f:
        return _chunk_offsets(f, 0, chunk_size)


def _csv_chunks(path: str, chunk_size: int) -> tuple[tuple[str, ...], list[tuple[int, int, int]]]:
    """The header, then (byte offset, first record number, records) for every `chunk_size` records."""
    with open(path, "rb") as f:
        records = csv_records(f)
        try:
            raw_header = next(records)
        except StopIteration:
            return (), []
        header = tuple(next(csv.reader([raw_header.decode("utf-8-sig")])))
        return header, _chunk_offsets(records, len(raw_header), chunk_size)
