"""`fanzha score --engine ray`: the same chunks, read and scored by a pool of Ray Data actors.

Each actor loads the Detector once and turns chunk descriptions into part files, exactly as the local
engine does (same reader, same scorer, same writer), so the output rows are the same and resuming works
the same way. The driver only plans, tracks progress and merges.

Local mode needs nothing (`pip install -e ".[distributed]"`). On a cluster (`--ray-address
ray://head:10001` or `auto`), every node needs fanzha installed and the inputs and the output folder on
storage all nodes see (NFS, a mounted bucket).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict

from fanzha.models.errors import MissingExtra

from .local import process_chunk
from .plan import Chunk
from .readers import Columns
from .tracking import TrackerFactory


class ChunkScorer:
    """A Ray actor: one Detector, many chunks."""

    def __init__(
        self,
        model_dir: str | None,
        parts_dir: str,
        fmt: str,
        columns: dict,
        threads: int,
        tracker: TrackerFactory | None,
    ) -> None:
        from pathlib import Path

        from fanzha.models import Detector

        self.detector = Detector.load(model_dir, threads=threads)
        self.parts_dir, self.fmt, self.columns = Path(parts_dir), fmt, Columns(**columns)
        # every actor opens its own tracker: on a cluster they share the risk database (PostgreSQL)
        self.tracker = tracker() if tracker else None

    def __call__(self, batch: dict) -> dict:
        records, alerts = [], []
        for spec in batch["chunk"]:
            chunk = Chunk(**{**spec, "files": tuple(spec["files"]), "header": tuple(spec["header"])})
            n, raised = process_chunk(
                self.detector, chunk, self.columns, self.parts_dir, self.fmt, self.tracker
            )
            records.append(n)
            alerts.append(raised)
        return {"records": records, "alerts": alerts}


def run_ray(
    chunks: list[Chunk],
    parts_dir,
    fmt: str,
    columns: Columns,
    model_dir: str | None,
    *,
    address: str | None = None,
    actors: int | None = None,
    threads: int = 1,
    progress=None,
    tracker: TrackerFactory | None = None,
) -> tuple[int, int]:
    """Score `chunks` on a Ray actor pool; returns (records scored, alerts raised)."""
    try:
        import ray
        from ray.data import ActorPoolStrategy
    except ImportError as e:
        raise MissingExtra('--engine ray needs the distributed extra: pip install -e ".[distributed]"') from e
    if not chunks:
        return 0, 0
    started_here = not ray.is_initialized()
    if started_here:
        # local mode unless told otherwise; no dashboard, worker logs stay out of the progress bar
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # ours counts records, not blocks
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        cpus = int(ray.cluster_resources().get("CPU", os.cpu_count() or 1))
        # an actor pool that takes every CPU leaves none for Ray Data's own tasks and hangs (seen on 2 CPUs)
        if cpus > 1:
            threads = min(threads, cpus - 1)
        size = actors or max(1, (cpus - 1) // threads)
        if size * threads >= cpus and cpus > 1:
            size = max(1, (cpus - 1) // threads)
        items = [{"chunk": asdict(c)} for c in chunks]
        dataset = ray.data.from_items(items, override_num_blocks=min(len(items), 4 * size))
        scored = dataset.map_batches(
            ChunkScorer,
            batch_size=1,
            num_cpus=threads,
            compute=ActorPoolStrategy(size=size),
            fn_constructor_kwargs={
                "model_dir": model_dir,
                "parts_dir": str(parts_dir),
                "fmt": fmt,
                "columns": asdict(columns),
                "threads": threads,
                "tracker": tracker,
            },
        )
        total = alerts = 0
        for row in scored.iter_rows():
            total += row["records"]
            alerts += row["alerts"]
            if progress is not None:
                progress.update(row["records"])
        return total, alerts
    finally:
        if started_here:
            ray.shutdown()
