"""How scored rows reach a platform's risk state without the batch package knowing the platform.

`fanzha score --track` passes a TrackerFactory (fanzha.platform.open_tracker); each engine opens one tracker
per process (the local engine once, every Ray actor its own) and hands it every chunk's rows before the
chunk's part is written, so a crash in between re-ingests that chunk on resume (at least once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sized
from typing import Protocol


class Tracker(Protocol):
    def ingest_verdicts(self, records: Iterable[dict]) -> Sized:
        """Take output rows (JSONL shape: evidence as a list); return the alerts they raised."""
        ...

    def close(self) -> None:
        """Deliver what is pending (a webhook's queue) and let go of the database."""
        ...


TrackerFactory = Callable[[], Tracker]
