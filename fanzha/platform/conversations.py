"""Live conversations, streamed message by message: each one's bounded state in the platform's database.

    book = ConversationBook(database)
    step = book.advance("qq-group-42", Message("管理-阿豪", "登记先转29元认证费", id="m9", ts=…), scorer)
    step.verdict, step.message, step.tipped        # the verdict after this message; whether it tipped the chat

A conversation's row holds a ConversationState (the recent context window, running maxima, trigger): a
fixed-size summary, so a message costs the same however long its conversation has grown. The ids of its
last SEEN_IDS messages are kept: a repeated one is refused with Conflict (HTTP 409), never scored twice.
A conversation idle for FANZHA_CONVERSATION_IDLE_S starts afresh with its next message (`restarted`); its
row and ids are deleted once it has been idle twice that long (purge_now_and_then, which the caller runs
after a message: Platform.conversation_message does).

The model runs outside any transaction (two workers never hold the database's write lock through
inference): the state is read, the message is scored, and the new state is written only if nobody wrote the
conversation meanwhile (compare-and-swap on its message count); otherwise the message is scored again on the
newer state. If that keeps happening (ATTEMPTS times, with a growing random pause), the message is
refused with Contended, a Busy (HTTP 503): nothing was stored, and the client sends it again. A caller on an
event loop asks for one try that never waits (`wait=False`) and retries in a thread on Contended.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

import sqlalchemy as sa

from fanzha.models.conversation import ConversationScorer, ConversationState, Message, MessageReading
from fanzha.models.errors import Busy, Conflict, InputError
from fanzha.models.normalize import Normalized
from fanzha.models.settings import settings
from fanzha.models.verdict import ConversationVerdict, MessageVerdict

from .database import Database, WriteBusy

log = logging.getLogger("fanzha.platform.conversations")

MAX_ID_CHARS = 256
ATTEMPTS = 8  # compare-and-swap retries when several messages of one conversation arrive at once
PURGE_EVERY_S = 60.0
SEEN_IDS = 1000  # message ids remembered per conversation (older ones are forgotten, in batches of 100)


class DuplicateMessage(Conflict):
    """A message id the conversation has already received."""


class Contended(Busy):
    """Another writer advanced the conversation first, every attempt, or (not waiting) held the write lock:
    nothing was stored (HTTP 503). `prepared`: the message's reading, for a caller that tries again."""

    def __init__(self, message: str, prepared: tuple[Normalized, MessageReading] | None = None) -> None:
        super().__init__(message)
        self.prepared = prepared


@dataclass
class Step:
    verdict: ConversationVerdict  # the conversation after this message (recent messages only)
    message: MessageVerdict  # this message
    tipped: bool  # this message flagged the conversation
    restarted: bool  # the conversation had expired (idle) and started afresh with this message
    state: ConversationState  # after this message


class ConversationBook:
    def __init__(self, db: Database, clock=time.time, idle_s: float | None = None) -> None:
        self.db = db
        self.clock = clock
        self.idle_s = settings().conversation_idle_s if idle_s is None else idle_s
        self.conversations = db.tables["conversations"]
        self.ids = db.tables["conversation_message_ids"]
        self._last_purge = 0.0
        self._sql = _Statements(self.conversations, self.ids, db)

    def advance(
        self,
        conversation_id: str,
        message: Message,
        scorer: ConversationScorer,
        account_id: str | None = None,
        group_id: str | None = None,
        *,
        wait: bool = True,
        normalized: Normalized | None = None,
        prepared: tuple[Normalized, MessageReading] | None = None,
    ) -> Step:
        """Score one more message of a conversation and store its new state. `wait=False` (a caller on an event
        loop): one try that never waits, Contended when another writer wins the swap or holds the write lock;
        else up to ATTEMPTS tries with growing pauses. `normalized` (normalize(message.text)) or `prepared`
        (that and the encoder's reading, from an earlier Contended) spare the work. The store's periodic
        purge is the caller's (purge_now_and_then)."""
        if not isinstance(conversation_id, str) or not 0 < len(conversation_id) <= MAX_ID_CHARS:
            raise InputError(f"conversation_id must be 1–{MAX_ID_CHARS} characters")
        if message.id is not None and len(message.id) > MAX_ID_CHARS:
            raise InputError(f"message id must be at most {MAX_ID_CHARS} characters")
        for name, value in (("conversation_id", conversation_id), ("message id", message.id or "")):
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):  # ids are names: nothing unprintable
                raise InputError(f"{name} must not contain control characters")
        scorer.text_check(message.text)
        attempts = ATTEMPTS if wait else 1
        for attempt in range(attempts):
            if attempt:
                time.sleep(random.uniform(0, 0.002 * 2**attempt))  # let the other writer finish
            now = self.clock()
            with self.db.driver() as cur:  # the row and, in the same statement, whether the id was seen
                row = cur.execute(self._sql.read, {"cid": conversation_id, "mid": message.id}).first()
            stored = None
            if row is not None and now - row.updated_at <= self.idle_s:
                stored = ConversationState.from_json(row.state)  # None: written in another layout
            expired = row is not None and stored is None  # idle too long, or unreadable: start afresh
            if stored is not None and row.seen_idx is not None:
                raise _duplicate(conversation_id, message.id, row.seen_idx)
            state = stored or ConversationState()
            before = state.count
            if prepared is None:  # the encoder reads the message once, however many attempts it takes
                prepared = scorer.prepare(message.text, normalized)
            state, verdict = scorer.step(state, message, prepared=prepared)
            tipped = state.trigger_index == verdict.index
            try:
                stored_now = self._store(
                    conversation_id, row, expired, before, state, message, account_id, group_id, now, wait
                )
            except WriteBusy as e:
                raise Contended(f"conversation {conversation_id!r} not stored: {e}", prepared) from None
            if stored_now:
                return Step(scorer.verdict(state), verdict, tipped, restarted=expired, state=state)
        raise Contended(
            f"conversation {conversation_id!r} received other messages while this one was scored, {attempts} "
            "times over; it was not stored: send it again",
            prepared,
        )

    def _refuse_duplicate(self, cur, conversation_id: str, message_id: str) -> None:
        seen = cur.execute(self._sql.seen, {"cid": conversation_id, "mid": message_id}).first()
        if seen is not None:
            raise _duplicate(conversation_id, message_id, seen.idx)

    def _store(
        self, conversation_id, row, expired, before, state, message, account_id, group_id, now, wait=True
    ) -> bool:
        """Write the new state if the conversation still has `before` messages; False when another writer won."""
        values = {  # bound as p_<column>: a key named like a column would add it to an UPDATE's SET clause
            "cid": conversation_id,
            "p_state": state.to_json(),
            "p_message_count": state.count,
            "p_trigger_index": state.trigger_index,
            "p_updated_at": now,
            "p_account_id": account_id or None,
            "p_group_id": group_id or None,
            "p_created_at": now,  # used by the insert and by a restart only
        }
        sql = self._sql
        try:
            with self.db.driver(write=True, wait=wait) as cur:
                if row is None:
                    cur.execute(sql.insert, values)
                else:
                    if expired:
                        cur.execute(sql.forget_ids, {"cid": conversation_id})
                    update = sql.restart if expired else sql.advance
                    done = cur.execute(
                        update, {**values, "seen_count": row.message_count, "seen_at": row.updated_at}
                    )
                    if done.rowcount != 1:
                        raise _Lost
                if message.id is not None:
                    cur.execute(sql.remember, {"cid": conversation_id, "mid": message.id, "idx": before})
                if before >= SEEN_IDS and before % 100 == 0:  # forget the oldest ids: the table stays bounded
                    cur.execute(sql.forget_old_ids, {"cid": conversation_id, "below": before - SEEN_IDS})
        except _Lost:
            return False
        except sa.exc.IntegrityError:
            # a new conversation raced in from another worker, or the same message id did: look again
            with self.db.driver() as cur:
                if message.id is not None:
                    self._refuse_duplicate(cur, conversation_id, message.id)
            return False
        return True

    def forget(self, conversation_id: str) -> bool:
        """Drop a conversation's state and message ids now (a platform closing a chat); whether it existed."""
        with self.db.write() as conn:
            conn.execute(sa.delete(self.ids).where(self.ids.c.conversation_id == conversation_id))
            gone = conn.execute(
                sa.delete(self.conversations).where(self.conversations.c.conversation_id == conversation_id)
            )
        return gone.rowcount > 0

    def purge(self, now: float | None = None) -> int:
        """Drop conversations idle for twice the idle time, with their message ids; how many. (Between one and
        two idle times a conversation's next message still finds its row, and says it restarted.)"""
        cutoff = (self.clock() if now is None else now) - 2 * self.idle_s
        c = self.conversations
        with self.db.write() as conn:
            stale = sa.select(c.c.conversation_id).where(c.c.updated_at < cutoff)
            conn.execute(sa.delete(self.ids).where(self.ids.c.conversation_id.in_(stale)))
            return conn.execute(sa.delete(c).where(c.c.updated_at < cutoff)).rowcount

    def purge_due(self) -> bool:
        """Whether purge_now_and_then would purge now."""
        return self.clock() - self._last_purge >= PURGE_EVERY_S

    def purge_now_and_then(self) -> None:
        """purge() at most every PURGE_EVERY_S, run after a message is stored (its own expiry is then reported to
        it as a restart, not deleted under it); a failure is logged, never raised (the message is stored)."""
        if self.purge_due():
            now = self._last_purge = self.clock()
            try:
                self.purge(now)
            except Exception:
                log.exception("idle conversations not purged")


class _Lost(Exception):
    """Another writer advanced the conversation first."""


def _duplicate(conversation_id: str, message_id: str, index: int) -> DuplicateMessage:
    return DuplicateMessage(
        f"message id {message_id!r} was already received in conversation {conversation_id!r} "
        f"(as message {index}); it was not scored again"
    )


class _Statements:
    """The store's per-message statements, built and compiled once, run on the driver's connection: a message
    then only binds values (SQLAlchemy's per-statement work had cost ten times SQLite's own)."""

    def __init__(self, c: sa.Table, ids: sa.Table, db: Database) -> None:
        cid, mid = sa.bindparam("cid"), sa.bindparam("mid")
        self.seen = sa.select(ids.c.idx).where(ids.c.conversation_id == cid, ids.c.message_id == mid)
        seen_idx = self.seen.scalar_subquery().label("seen_idx")
        self.read = sa.select(c.c.state, c.c.message_count, c.c.updated_at, seen_idx).where(
            c.c.conversation_id == cid
        )
        columns = ("state", "message_count", "trigger_index", "updated_at")
        bound = {k: sa.bindparam(f"p_{k}") for k in columns}
        created = sa.bindparam("p_created_at")
        self.insert = c.insert().values(
            conversation_id=cid,
            created_at=created,
            account_id=sa.bindparam("p_account_id"),
            group_id=sa.bindparam("p_group_id"),
            **bound,
        )
        # compare-and-swap: only if nobody advanced the conversation since it was read; an id given now is kept,
        # one left out keeps the stored one
        kept = {k: sa.func.coalesce(sa.bindparam(f"p_{k}"), c.c[k]) for k in ("account_id", "group_id")}
        guarded = c.update().where(
            c.c.conversation_id == cid,
            c.c.message_count == sa.bindparam("seen_count"),
            c.c.updated_at == sa.bindparam("seen_at"),
        )
        self.advance = guarded.values(**kept, **bound)
        self.restart = guarded.values(**kept, created_at=created, **bound)  # an expired chat starts afresh
        self.forget_ids = sa.delete(ids).where(ids.c.conversation_id == cid)
        self.remember = ids.insert().values(conversation_id=cid, message_id=mid, idx=sa.bindparam("idx"))
        self.forget_old_ids = sa.delete(ids).where(
            ids.c.conversation_id == cid, ids.c.idx < sa.bindparam("below")
        )
        for name, statement in list(vars(self).items()):
            setattr(self, name, db.compile(statement))
