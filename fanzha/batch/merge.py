"""Parts → the output file (in chunk order, then the parts folder is removed); an output read back in batches."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from .formats import output_format
from .parts import SCHEMA
from .plan import Chunk


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


def iter_output(
    output: Path, columns: list[str] | None = None, batch_size: int = 10_000
) -> Iterator[dict[str, list]]:
    """The output (Parquet or JSONL) in column batches (flat memory, whatever its size)."""
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
