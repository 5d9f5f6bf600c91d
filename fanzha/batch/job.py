"""Archive scoring: stream JSONL / CSV / Parquet files and folders of images and videos through the Detector.

    fanzha score posts.jsonl comments.csv old.parquet screenshots/ --output verdicts.parquet

The inputs are cut into chunks (a run of lines, CSV records, a Parquet row group, a batch of media files)
planned up front from a fast pass over each file, so both engines — this process, or Ray actors — read
and score the same chunks into the same rows. Each chunk's rows go to their own part file, written to a
temporary name and renamed, in `<output>.parts/`: a part is either whole or absent. A run started again
with the same arguments skips the parts that exist, so after any interruption (Ctrl-C, kill -9, power
loss) every input record ends up in the output exactly once. When every part is there they are merged
into the output file and the parts folder is removed.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fanzha.models import InputError, validate_text
from fanzha.models.labels import LABELS

log = logging.getLogger("fanzha.archive")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv", ".flv", ".avi", ".ts", ".m4v"}
TABLE_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
MEDIA_CHUNK = 16  # media files per chunk: one OCR'd video can take seconds

# one flat row per input record; evidence is a JSON string so every format holds it the same way
SCHEMA = pa.schema([
    ("id", pa.string()), ("source", pa.string()), ("kind", pa.string()),
    ("account_id", pa.string()), ("group_id", pa.string()),
    ("fraud_score", pa.float64()),
    *[(f"score_{label}", pa.float64()) for label in LABELS],
    ("labels", pa.list_(pa.string())), ("decision", pa.string()), ("evidence", pa.string()),
    ("model_version", pa.string()), ("error", pa.string()),
])


class ArchiveError(ValueError):
    """The job cannot start: a missing input, an unknown format, an output from a different job."""


@dataclass(frozen=True)
class Columns:
    """Which columns of a table hold what (JSONL keys, CSV headers, Parquet columns)."""

    text: str = "text"
    id: str = "id"
    image: str = "image"
    video: str = "video"
    account_id: str = "account_id"
    group_id: str = "group_id"


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


# -- planning -----------------------------------------------------------------------------------------------

def discover(inputs: list[str]) -> list[tuple[str, str, tuple[str, ...]]]:
    """(path, kind, media files) per input; a folder or glob becomes one media input of its sorted files."""
    found = []
    for spec in inputs:
        path = Path(spec)
        if path.is_dir():
            files = sorted(str(p) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
            found.append((spec, "media", tuple(files)))
        elif path.is_file():
            kind = TABLE_SUFFIXES.get(path.suffix.lower())
            if kind is None and path.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
                found.append((spec, "media", (spec,)))
            elif kind is None:
                raise ArchiveError(f"{spec}: unknown format; give .jsonl, .csv, .parquet files, or folders/globs of images and videos")
            else:
                found.append((spec, kind, ()))
        elif any(c in spec for c in "*?["):
            files = sorted(p for p in glob.glob(spec, recursive=True) if Path(p).suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
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
            chunks += [Chunk(i, k, path, kind, offset, count, first) for k, (offset, first, count) in enumerate(starts)]
        elif kind == "csv":
            try:
                header, starts = _csv_chunks(path, chunk_size)
            except UnicodeDecodeError as e:
                raise ArchiveError(f"{path}: the CSV header is not UTF-8 (byte {e.start})") from None
            chunks += [Chunk(i, k, path, kind, offset, count, first, header=header) for k, (offset, first, count) in enumerate(starts)]
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
                batch = files[j:j + MEDIA_CHUNK]
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


def _csv_records(f) -> Iterator[bytes]:
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
        c = line[i:i + 1]
        if quoted:
            if c == b'"':
                if line[i + 1:i + 2] == b'"':
                    i += 1  # an escaped quote
                else:
                    quoted = False
        elif c == b'"' and at_field_start:
            quoted = True
        at_field_start = c == b"," and not quoted
        i += 1
    return quoted


def _csv_chunks(path: str, chunk_size: int) -> tuple[tuple[str, ...], list[tuple[int, int, int]]]:
    """The header, then (byte offset, first record number, records) for every `chunk_size` records."""
    with open(path, "rb") as f:
        records = _csv_records(f)
        try:
            raw_header = next(records)
        except StopIteration:
            return (), []
        header = tuple(next(csv.reader([raw_header.decode("utf-8-sig")])))
        return header, _chunk_offsets(records, len(raw_header), chunk_size)


# -- reading ------------------------------------------------------------------------------------------------

@dataclass
class Record:
    """One input item: a text, an image or a video (or the reason it could not be read)."""

    id: str
    source: str
    kind: str = "text"  # text / image / video
    text: str | None = None
    path: str | None = None  # image or video file
    account_id: str | None = None
    group_id: str | None = None
    error: str | None = None


def read_chunk(chunk: Chunk, columns: Columns = Columns()) -> list[Record]:
    name = Path(chunk.path).name
    if chunk.kind == "media":
        return [Record(id=os.path.relpath(f, chunk.path) if Path(chunk.path).is_dir() else f, source=f,
                       kind="video" if Path(f).suffix.lower() in VIDEO_SUFFIXES else "image", path=f) for f in chunk.files]
    if chunk.kind == "parquet":
        table = pq.ParquetFile(chunk.path).read_row_group(chunk.start)
        return [_from_mapping(row, f"{name}:row {chunk.first + i + 1}", Path(chunk.path).parent, columns)
                for i, row in enumerate(table.to_pylist())]
    records = []
    with open(chunk.path, "rb") as f:
        f.seek(chunk.start)
        raws = _csv_records(f) if chunk.kind == "csv" else iter(f)
        for i in range(chunk.count):
            raw = next(raws, None)
            if raw is None:  # the file shrank since planning
                break
            where = f"{name}:{'record' if chunk.kind == 'csv' else 'line'} {chunk.first + i}"
            records.append(_parse(raw, chunk, where, columns))
    return records


def _parse(raw: bytes, chunk: Chunk, where: str, columns: Columns) -> Record:
    try:
        line = raw.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark on the first line is not content
    except UnicodeDecodeError as e:
        return Record(id=where, source=where, error=f"invalid UTF-8 at byte {e.start}")
    if not line.strip():
        return Record(id=where, source=where, error="blank line")
    if chunk.kind == "csv":
        rows = list(csv.reader(io.StringIO(line)))
        if len(rows) != 1:  # never drop rows silently
            return Record(id=where, source=where, error=f"one record read as {len(rows)} CSV rows")
        values = rows[0]
        if len(values) != len(chunk.header):
            return Record(id=where, source=where, error=f"expected {len(chunk.header)} columns, got {len(values)}")
        return _from_mapping(dict(zip(chunk.header, values, strict=True)), where, Path(chunk.path).parent, columns)
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        return Record(id=where, source=where, error=f"invalid JSON: {e.msg} (column {e.colno})")
    if not isinstance(obj, dict):
        return Record(id=where, source=where, error=f"expected a JSON object, got {type(obj).__name__}")
    return _from_mapping(obj, where, Path(chunk.path).parent, columns)


def _from_mapping(row: dict, where: str, base: Path, columns: Columns) -> Record:
    def value(key: str) -> str | None:
        v = row.get(key)
        return None if v is None or v == "" else str(v)

    record = Record(id=value(columns.id) or where, source=where, account_id=value(columns.account_id), group_id=value(columns.group_id))
    text, image, video = row.get(columns.text), value(columns.image), value(columns.video)
    if image or video:
        record.kind = "image" if image else "video"
        record.path = str(base / (image or video))  # relative paths are relative to the table file
    elif text is None:
        record.error = f"no {columns.text!r}, {columns.image!r} or {columns.video!r} field"
    elif text == "":
        record.error = f"field {columns.text!r} is empty"
    elif not isinstance(text, str):
        record.error = f"field {columns.text!r} must be a string, got {type(text).__name__}"
    else:
        record.text = text
    return record


# -- scoring ------------------------------------------------------------------------------------------------

def score_records(detector, records: list[Record]) -> list[dict]:
    """One output row per record, in order. A record that cannot be read or scored gets an error row."""
    rows: list[dict | None] = [None] * len(records)
    texts = []
    for i, r in enumerate(records):
        if r.error is None and r.kind == "text":
            try:
                validate_text(r.text, detector.max_chars)
                texts.append(i)
            except InputError as e:
                r.error = str(e)
    for start in range(0, len(texts), 64):
        batch = texts[start:start + 64]
        for i, verdict in zip(batch, detector.classify_texts([records[i].text for i in batch]), strict=True):
            rows[i] = _row(records[i], verdict.to_dict())
    for i, r in enumerate(records):
        if rows[i] is not None:
            continue
        if r.error is None:  # media
            try:
                rows[i] = _row(r, detector.classify_file(r.path).to_dict())
                continue
            except InputError as e:
                r.error = str(e)
            except Exception as e:  # a decoder or OCR failure on one file must not stop the archive
                log.exception("%s: could not be scored", r.source)
                r.error = f"could not be scored: {type(e).__name__}: {e}"
        rows[i] = _row(r, None)
    return rows  # type: ignore[return-value]


def _row(r: Record, verdict: dict | None) -> dict:
    row = {"id": r.id, "source": r.source, "kind": r.kind, "account_id": r.account_id, "group_id": r.group_id,
           "fraud_score": None, **{f"score_{label}": None for label in LABELS}, "labels": [], "decision": None,
           "evidence": None, "model_version": None, "error": r.error}
    if verdict is not None:
        row.update(fraud_score=verdict["fraud_score"], labels=verdict["labels"], decision=verdict["decision"],
                   evidence=json.dumps(verdict["evidence"], ensure_ascii=False), model_version=verdict["model_version"],
                   **{f"score_{label}": verdict["scores"][label] for label in LABELS})
    return row


# -- parts, merging, resuming ------------------------------------------------------------------------------

def output_format(output: str) -> str:
    return "jsonl" if output.endswith((".jsonl", ".ndjson")) else "parquet"


def write_part(rows: list[dict], parts_dir: Path, chunk: Chunk, fmt: str) -> Path:
    """Write atomically: a part file exists only when it is complete."""
    final = parts_dir / f"{chunk.part_name}.{fmt}"
    tmp = parts_dir / f".{chunk.part_name}.{fmt}.tmp"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp)
    else:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(_jsonl_row(row), ensure_ascii=False) + "\n")
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return final


def _jsonl_row(row: dict) -> dict:
    return {**row, "evidence": json.loads(row["evidence"]) if row["evidence"] else None}


def merge_parts(parts_dir: Path, chunks: list[Chunk], output: Path, fmt: str) -> None:
    tmp = output.with_name(f".{output.name}.tmp")
    if fmt == "parquet":
        with pq.ParquetWriter(tmp, SCHEMA) as writer:
            for chunk in chunks:
                writer.write_table(pq.read_table(parts_dir / f"{chunk.part_name}.parquet", schema=SCHEMA))
    else:
        with open(tmp, "wb") as out:
            for chunk in chunks:
                with open(parts_dir / f"{chunk.part_name}.jsonl", "rb") as part:
                    shutil.copyfileobj(part, out)
    os.replace(tmp, output)
    shutil.rmtree(parts_dir)


@dataclass
class JobSpec:
    """What makes two runs the same job (so the second may resume the first)."""

    inputs: list[str]
    chunk_size: int
    columns: dict
    model_version: str
    format: str
    input_identity: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def _identity(inputs: list[str]) -> list[str]:
    """What each input is now: a table's size and modification time, a media input's file list with theirs."""
    def stamp(path: str) -> str:
        st = Path(path).stat()
        return f"{path}:{st.st_size}:{st.st_mtime_ns}"

    out = []
    for path, kind, files in discover(inputs):
        listing = [stamp(f) for f in files] if kind == "media" else [stamp(path)]
        out.append(hashlib.sha256("\n".join(listing).encode()).hexdigest()[:16])
    return out


def prepare(spec: JobSpec, output: Path, overwrite: bool) -> Path:
    """The parts folder for this job: created, or reused when it belongs to the same job."""
    parts_dir = output.with_name(output.name + ".parts")
    marker = parts_dir / "job.json"
    if output.exists() and not parts_dir.exists():
        if not overwrite:
            raise ArchiveError(f"{output} exists (a finished job); pass --overwrite to score again")
        output.unlink()
    if parts_dir.exists():
        previous = json.loads(marker.read_text()) if marker.is_file() else {}
        if previous.get("fingerprint") != spec.fingerprint:
            if not overwrite:
                raise ArchiveError(f"{parts_dir} holds an unfinished job with other inputs, options or model; "
                                   "rerun that job's command to finish it, or pass --overwrite to start over")
            shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"fingerprint": spec.fingerprint, **asdict(spec)}, ensure_ascii=False, indent=2))
    for stale in parts_dir.glob(".*.tmp"):  # a part being written when the last run died
        stale.unlink()
    return parts_dir


def pending(chunks: list[Chunk], parts_dir: Path, fmt: str) -> list[Chunk]:
    return [c for c in chunks if not (parts_dir / f"{c.part_name}.{fmt}").exists()]


# -- summary ------------------------------------------------------------------------------------------------

@dataclass
class Summary:
    rows: int = 0
    errors: int = 0
    decisions: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    scored_this_run: int = 0
    seconds: float = 0.0
    alerts: int = 0  # early-warning alerts raised by this run (with track)

    def to_dict(self) -> dict:
        return {"rows": self.rows, "errors": self.errors, "decisions": dict(self.decisions), "labels": dict(self.labels),
                "scored_this_run": self.scored_this_run, "seconds": round(self.seconds, 2), "alerts": self.alerts,
                "records_per_s": round(self.scored_this_run / self.seconds, 1) if self.seconds else None}


def summarize(output: Path) -> Summary:
    """Counts from the finished output (streamed column by column, flat memory)."""
    summary = Summary()
    for batch in iter_output(output, columns=["decision", "labels", "error"]):
        for decision, labels, error in zip(batch["decision"], batch["labels"], batch["error"], strict=True):
            summary.rows += 1
            if error is not None:
                summary.errors += 1
                continue
            summary.decisions[decision] += 1
            summary.labels.update(labels or [])
    return summary


def iter_output(output: Path, columns: list[str] | None = None, batch_size: int = 10_000) -> Iterator[dict[str, list]]:
    """The output (Parquet or JSONL) in column batches."""
    if output_format(str(output)) == "parquet":
        for batch in pq.ParquetFile(output).iter_batches(batch_size=batch_size, columns=columns):
            yield batch.to_pydict()
        return
    names = columns or SCHEMA.names
    batch: dict[str, list] = {name: [] for name in names}
    with open(output, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            for name in names:
                batch[name].append(row.get(name))
            if len(batch[names[0]]) == batch_size:
                yield batch
                batch = {name: [] for name in names}
    if batch[names[0]]:
        yield batch


def process_chunk(detector, chunk: Chunk, columns: Columns, parts_dir: Path, fmt: str, tracker=None) -> tuple[int, int]:
    """Read, score, (track,) write one chunk: what both engines do per chunk. Returns (records, alerts)."""
    rows = score_records(detector, read_chunk(chunk, columns))
    alerts = 0
    if tracker is not None:
        # before the part is written: a crash in between re-ingests this chunk on resume (at least once)
        alerts = len(tracker.ingest_verdicts(_jsonl_row(row) for row in rows))
    write_part(rows, parts_dir, chunk, fmt)
    return len(rows), alerts


def run_local(detector, chunks: list[Chunk], parts_dir: Path, fmt: str, columns: Columns, progress=None,
              tracker=None) -> tuple[int, int]:
    """Score the pending chunks in this process; returns (records scored, alerts raised)."""
    scored = alerts = 0
    for chunk in chunks:
        n, raised = process_chunk(detector, chunk, columns, parts_dir, fmt, tracker)
        scored, alerts = scored + n, alerts + raised
        if progress is not None:
            progress.update(n)
    return scored, alerts


def score_archive(inputs: list[str], output: str | Path, *, engine: str = "local", chunk_size: int = 2000,
                  columns: Columns = Columns(), model_dir: str | None = None, threads: int | None = None,
                  overwrite: bool = False, progress: bool = True, ray_address: str | None = None,
                  actors: int | None = None, track: bool = False) -> Summary:
    """Plan, resume, score, merge, summarise: the whole `fanzha score` job.

    `track` also feeds every scored record that names an account or group to the risk store
    (FANZHA_DATABASE_URL), as the service does, so archives raise early-warning alerts too."""
    from tqdm.auto import tqdm

    from fanzha.models import Detector

    output = Path(output)
    fmt = output_format(str(output))
    chunks = plan(inputs, chunk_size)
    detector = Detector.load(model_dir, threads=threads)
    spec = JobSpec(list(inputs), chunk_size, asdict(columns), detector.model_version, fmt, _identity(inputs))
    parts_dir = prepare(spec, output, overwrite)
    todo = pending(chunks, parts_dir, fmt)
    total = sum(c.count for c in chunks)
    done = total - sum(c.count for c in todo)
    started = time.perf_counter()
    with tqdm(total=total, initial=done, desc="score", unit=" records", disable=not progress, smoothing=0.05) as bar:
        if engine == "local":
            tracker = None
            if track:
                from .risk import RiskStore

                tracker = RiskStore.from_env()
            scored, alerts = run_local(detector, todo, parts_dir, fmt, columns, bar, tracker)
        elif engine == "ray":
            from .ray_engine import run_ray

            scored, alerts = run_ray(todo, parts_dir, fmt, columns, model_dir, address=ray_address, actors=actors,
                                     threads=threads or 1, progress=bar, track=track)
        else:
            raise ArchiveError(f"unknown engine {engine!r}: local or ray")
    seconds = time.perf_counter() - started
    merge_parts(parts_dir, chunks, output, fmt)
    summary = summarize(output)
    summary.scored_this_run, summary.seconds, summary.alerts = scored, seconds, alerts
    return summary
