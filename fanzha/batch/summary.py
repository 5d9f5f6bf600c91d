"""The counts a run ends with: rows, errors, decisions and labels, and this run's rate."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .conversations import ConversationSummary
from .merge import iter_output


@dataclass
class Summary:
    rows: int = 0
    errors: int = 0
    decisions: Counter = field(default_factory=Counter)
    labels: Counter = field(default_factory=Counter)
    scored_this_run: int = 0
    seconds: float = 0.0
    alerts: int = 0  # early-warning alerts raised by this run (with a tracker)
    conversations: ConversationSummary | None = None  # rows that named a conversation_id

    def to_dict(self) -> dict:
        return {
            "rows": self.rows,
            "errors": self.errors,
            "decisions": dict(self.decisions),
            "labels": dict(self.labels),
            "scored_this_run": self.scored_this_run,
            "seconds": round(self.seconds, 2),
            "alerts": self.alerts,
            "records_per_s": round(self.scored_this_run / self.seconds, 1) if self.seconds else None,
            "conversations": self.conversations.to_dict() if self.conversations else None,
        }


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
