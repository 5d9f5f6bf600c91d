"""`fanzha score`: stream JSONL / CSV / Parquet files and folders of images and videos through the Detector.

    fanzha score posts.jsonl comments.csv old.parquet screenshots/ --output verdicts.parquet

The inputs are cut into chunks (plan.py) planned up front, so both engines — this process, or Ray actors —
read and score the same chunks into the same rows. Each chunk's rows go to their own part file (parts.py): a
part is either whole or absent. A run started again with the same arguments skips the parts that exist, so
after any interruption (Ctrl-C, kill -9, power loss) every input record ends up in the output exactly once.
When every part is there they are merged into the output file and the parts folder is removed (merge.py).
Rows that name a `conversation_id` are then scored as conversations too (conversations.py).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from .conversations import score_conversations
from .formats import ArchiveError, output_format
from .local import run_local
from .merge import merge_parts
from .parts import JobSpec, identity, pending, prepare
from .plan import plan
from .readers import Columns
from .summary import Summary, summarize
from .tracking import TrackerFactory


def score_archive(
    inputs: list[str],
    output: str | Path,
    *,
    engine: str = "local",
    chunk_size: int = 2000,
    columns: Columns | None = None,
    model_dir: str | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    ray_address: str | None = None,
    actors: int | None = None,
    tracker: TrackerFactory | None = None,
) -> Summary:
    """Plan, resume, score, merge, summarise: the whole `fanzha score` job.

    `tracker` (e.g. fanzha.platform.open_tracker) opens what every scored record that names an account or
    group is fed to, as the service feeds its verdicts, so archives raise early-warning alerts too."""
    from tqdm.auto import tqdm

    from fanzha.models import Detector

    columns = columns or Columns()
    if engine not in ("local", "ray"):
        raise ArchiveError(f"unknown engine {engine!r}: local or ray")
    output = Path(output)
    fmt = output_format(str(output))
    chunks = plan(inputs, chunk_size)
    detector = Detector.load(model_dir, threads=threads)
    spec = JobSpec(list(inputs), chunk_size, asdict(columns), detector.model_version, fmt, identity(inputs))
    parts_dir = prepare(spec, output, overwrite)
    todo = pending(chunks, parts_dir, fmt)
    total = sum(c.count for c in chunks)
    done = total - sum(c.count for c in todo)
    started = time.perf_counter()
    with tqdm(
        total=total, initial=done, desc="score", unit=" records", disable=not progress, smoothing=0.05
    ) as bar:
        if engine == "local":
            opened = tracker() if tracker else None
            try:
                scored, alerts = run_local(detector, todo, parts_dir, fmt, columns, bar, opened)
            finally:
                if opened is not None:
                    opened.close()
        else:
            from .ray_engine import run_ray

            scored, alerts = run_ray(
                todo,
                parts_dir,
                fmt,
                columns,
                model_dir,
                address=ray_address,
                actors=actors,
                threads=threads or 1,
                progress=bar,
                tracker=tracker,
            )
    seconds = time.perf_counter() - started
    merge_parts(parts_dir, chunks, output, fmt)
    summary = summarize(output)
    summary.scored_this_run, summary.seconds, summary.alerts = scored, seconds, alerts
    # rows that share a conversation_id: each conversation scored as one chat, beside the output
    summary.conversations = score_conversations(detector, chunks, output, columns, progress)
    return summary
