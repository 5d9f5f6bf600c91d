"""Conversations in an archive: rows that share a `conversation_id` are also scored as one chat.

    fanzha score chats.jsonl -o verdicts.parquet        # rows: {"conversation_id", "sender", "ts", "text", …}
    → verdicts.parquet                (one row per message, as for any text; with its conversation_id)
    → verdicts.conversations.jsonl    (one verdict per conversation: stages, trigger, evidence per message)

The message pass is the archive job (chunks, parts, resume); this pass runs once it has merged, reading the
same planned chunks again in input order and folding each row into its conversation through the Detector's
conversation scorer as it is read, in arrival order (the order of the rows; timestamps out of order are kept
and named; a repeated row id is named and read once).
The fold's state is bounded, so a conversation of any length is scored, not only the 200 messages a single
request may carry. A row that cannot be read is named in its conversation's `warnings`; a conversation
with no readable message gets an error record. The file is written whole or not at all.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from fanzha.models.conversation import ConversationState, Message
from fanzha.models.errors import InputError

from .plan import Chunk
from .readers import Columns, Record, read_chunk

UNKNOWN_SENDER = "(unknown)"


@dataclass
class ConversationSummary:
    path: Path
    conversations: int = 0
    flagged: int = 0
    errors: int = 0

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "conversations": self.conversations,
            "flagged": self.flagged,
            "errors": self.errors,
        }


def conversations_path(output: Path) -> Path:
    return output.with_name(f"{output.name.split('.')[0]}.conversations.jsonl")


@dataclass
class _Chat:
    """One archive conversation being folded: its state, its messages' verdicts, and what it noted."""

    state: ConversationState = field(default_factory=ConversationState)
    read: list = field(default_factory=list)  # MessageVerdict per message read
    warnings: list[str] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)  # row id → where it was first read
    account_ids: set[str] = field(default_factory=set)
    group_id: str | None = None

    def add(self, scorer, r: Record) -> None:
        if r.id in self.seen:
            self.warnings.append(f"{r.source}: id {r.id!r} repeats {self.seen[r.id]}'s (not read again)")
            return
        self.seen[r.id] = r.source
        if r.account_id:
            self.account_ids.add(r.account_id)
        self.group_id = self.group_id or r.group_id
        if r.text is None and r.error is not None:  # no text could be taken from the row
            self.warnings.append(f"{r.source}: {r.error} (not read)")
            return
        try:  # the chat's own check: 👍 alone is a chat message, though as a message row it has nothing to score
            scorer.text_check(r.text)
        except InputError as e:
            self.warnings.append(f"{r.source}: {e} (not read)")
            return
        if r.sender is None:
            self.warnings.append(f"{r.source}: no sender (read as {UNKNOWN_SENDER})")
        message = Message(sender=r.sender or UNKNOWN_SENDER, text=r.text, id=r.id, ts=r.ts)
        self.state, verdict = scorer.step(self.state, message, evidence_cap=None)
        self.read.append(verdict)

    def result(self, scorer, cid: str) -> dict:
        if not self.read:
            return {"conversation_id": cid, "error": "no readable message", "warnings": self.warnings}
        verdict = scorer.verdict(self.state, messages=self.read, warnings=self.warnings + self.state.warnings)
        return {
            "conversation_id": cid,
            "account_ids": sorted(self.account_ids),
            "group_id": self.group_id,
            **verdict.to_dict(timings=False),
        }


def score_conversations(
    detector, chunks: list[Chunk], output: Path, columns: Columns, progress: bool = True
) -> ConversationSummary | None:
    """Score the archive's conversations into `<output>.conversations.jsonl`; None when no row names one.
    Each row is folded into its conversation as it is read: what is held is the conversations' states and
    verdicts, never their texts."""
    from tqdm.auto import tqdm

    chats: dict[str, _Chat] = {}
    scorer = None
    text_chunks = [c for c in chunks if c.kind != "media"]
    with tqdm(
        total=sum(c.count for c in text_chunks), desc="conversations", unit=" rows", disable=not progress
    ) as bar:
        for chunk in text_chunks:
            for record in read_chunk(chunk, columns):
                if record.conversation_id is not None:
                    scorer = (
                        scorer or detector.conversations
                    )  # a model without one fails only if it is needed
                    chats.setdefault(record.conversation_id, _Chat()).add(scorer, record)
            bar.update(chunk.count)
    if not chats:
        return None
    path = conversations_path(output)
    summary = ConversationSummary(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for cid, chat in chats.items():
            result = chat.result(scorer, cid)
            summary.conversations += 1
            summary.errors += "error" in result
            summary.flagged += result.get("decision") in ("review", "block")
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return summary
