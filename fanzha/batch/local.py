"""The per-chunk work both engines do (read, score, track, write), and the local engine: this process."""

from __future__ import annotations

from pathlib import Path

from .parts import jsonl_row, write_part
from .plan import Chunk
from .readers import Columns, read_chunk
from .scoring import score_rows
from .tracking import Tracker


def process_chunk(
    detector, chunk: Chunk, columns: Columns, parts_dir: Path, fmt: str, tracker: Tracker | None = None
) -> tuple[int, int]:
    """Read, score, (track,) write one chunk. Returns (records, alerts)."""
    rows = score_rows(detector, read_chunk(chunk, columns))
    alerts = 0
    if tracker is not None:
        # before the part is written: a crash in between re-ingests this chunk on resume (at least once)
        alerts = len(tracker.ingest_verdicts(jsonl_row(row) for row in rows))
    write_part(rows, parts_dir, chunk, fmt)
    return len(rows), alerts


def run_local(
    detector,
    chunks: list[Chunk],
    parts_dir: Path,
    fmt: str,
    columns: Columns,
    progress=None,
    tracker: Tracker | None = None,
) -> tuple[int, int]:
    """Score the pending chunks in this process; returns (records scored, alerts raised)."""
    scored = alerts = 0
    for chunk in chunks:
        n, raised = process_chunk(detector, chunk, columns, parts_dir, fmt, tracker)
        scored, alerts = scored + n, alerts + raised
        if progress is not None:
            progress.update(n)
    return scored, alerts
