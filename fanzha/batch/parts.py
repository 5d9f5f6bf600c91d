"""Part files: each chunk's rows in `<output>.parts/`, written under a temporary name and renamed, so a part is
either whole or absent; and what makes two runs the same job, so that a second run may resume the first."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fanzha.models.labels import LABELS

from .formats import ArchiveError
from .plan import Chunk, discover

# the output rows' columns (scoring.ROW_FIELDS) with their Arrow types
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("kind", pa.string()),
        ("account_id", pa.string()),
        ("group_id", pa.string()),
        ("conversation_id", pa.string()),
        ("fraud_score", pa.float64()),
        *[(f"score_{label}", pa.float64()) for label in LABELS],
        ("labels", pa.list_(pa.string())),
        ("decision", pa.string()),
        ("evidence", pa.string()),
        ("model_version", pa.string()),
        ("error", pa.string()),
    ]
)


def write_part(rows: list[dict], parts_dir: Path, chunk: Chunk, fmt: str) -> Path:
    """Write atomically: a part file exists only when it is complete."""
    final = parts_dir / f"{chunk.part_name}.{fmt}"
    tmp = parts_dir / f".{chunk.part_name}.{fmt}.tmp"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp)
    else:
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(jsonl_row(row), ensure_ascii=False) + "\n")
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return final


def jsonl_row(row: dict) -> dict:
    """A row as JSONL holds it (and trackers read it): the evidence as a list, not a JSON string."""
    return {**row, "evidence": json.loads(row["evidence"]) if row["evidence"] else None}


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


def identity(inputs: list[str]) -> list[str]:
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
                raise ArchiveError(
                    f"{parts_dir} holds an unfinished job with other inputs, options or model; "
                    "rerun that job's command to finish it, or pass --overwrite to start over"
                )
            shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(
        json.dumps({"fingerprint": spec.fingerprint, **asdict(spec)}, ensure_ascii=False, indent=2)
    )
    for stale in parts_dir.glob(".*.tmp"):  # a part being written when the last run died
        stale.unlink()
    return parts_dir


def pending(chunks: list[Chunk], parts_dir: Path, fmt: str) -> list[Chunk]:
    return [c for c in chunks if not (parts_dir / f"{c.part_name}.{fmt}").exists()]
