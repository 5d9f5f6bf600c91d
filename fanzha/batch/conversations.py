"""Conversations in an archive: rows that share a `conversation_id` are also scored as one chat.

    fanzha score chats.jsonl -o verdicts.parquet        # rows: {"conversation_id", "sender", "ts", "text", …}
    → verdicts.parquet                (one row per message, as for any text; with its conversation_id)
    → verdicts.conversations.jsonl    (one verdict per conversation: stages, trigger, evidence per message)

The message pass is the archive job (chunks, parts, resume); this pass runs once it has merged, reading the
same planned chunks again in input order and folding each conversation's messages through the Detector's
conversation scorer, in arrival order (the order of the rows; timestamps out of order are kept and named).
The fold's state is bounded, so a conversation of any length is scored, not only the 200 messages a single
request may carry. A row that cannot be read is named in its conversation's `warnings`; a conversation
with no readable message gets an error record. The file is written whole or not at all.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
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


def group_messages(chunks: list[Chunk], columns: Columns) -> dict[str, list[Record]]:
    """Every text row that names a conversation, grouped by it, in input order."""
    groups: dict[str, list[Record]] = {}
    for chunk in chunks:
        if chunk.kind == "media":
            continue
        for record in read_chunk(chunk, columns):
            if record.conversation_id is not None:
                groups.setdefault(record.conversation_id, []).append(record)
    return groups


def score_conversations(
    detector, chunks: list[Chunk], output: Path, columns: Columns, progress: bool = True
) -> ConversationSummary | None:
    """Score the archive's conversations into `<output>.conversations.jsonl`; None when no row names one."""
    from tqdm.auto import tqdm

    groups = group_messages(chunks, columns)
    if not groups:
        return None
    scorer = detector.conversations
    path = conversations_path(output)
    summary = ConversationSummary(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for cid, records in tqdm(
            groups.items(), desc="conversations", unit=" conv", disable=not progress, total=len(groups)
        ):
            result = _score_one(scorer, cid, records)
            summary.conversations += 1
            summary.errors += "error" in result
            summary.flagged += result.get("decision") in ("review", "block")
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return summary


def _score_one(scorer, cid: str, records: list[Record]) -> dict:
    state, read, warnings = ConversationState(), [], []
    seen: dict[str, str] = {}
    for r in records:
        if r.id in seen:
            warnings.append(f"{r.source}: id {r.id!r} repeats {seen[r.id]}'s (not read again)")
            continue
        seen[r.id] = r.source
        if r.error is not None:
            warnings.append(f"{r.source}: {r.error} (not read)")
            continue
        try:
            scorer.text_check(r.text)
        except InputError as e:
            warnings.append(f"{r.source}: {e} (not read)")
            continue
        if r.sender is None:
            warnings.append(f"{r.source}: no sender (read as {UNKNOWN_SENDER})")
        message = Message(sender=r.sender or UNKNOWN_SENDER, text=r.text, id=r.id, ts=r.ts)
        state, verdict = scorer.step(state, message, evidence_cap=None)
        read.append(verdict)
    if not read:
        return {"conversation_id": cid, "error": "no readable message", "warnings": warnings}
    verdict = scorer.verdict(state, messages=read, warnings=warnings + state.warnings)
    return {
        "conversation_id": cid,
        "account_ids": sorted({r.account_id for r in records if r.account_id}),
        "group_id": next((r.group_id for r in records if r.group_id), None),
        **verdict.to_dict(timings=False),
    }
