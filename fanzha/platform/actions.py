"""Disposal of accounts and groups: recorded, POSTed to the platform, reversible.

    from fanzha.platform.actions import ActionBook
    book = ActionBook(db, webhook=ActionWebhook.from_settings())
    book.dispose("account", "u42", "ban", "mod-1", "虚假赠送，多次举报", case_id="report:r…")
    book.lift(action_id, "mod-1", "申诉成功")
    book.actions(entity_kind="account", entity_id="u42")

Accounts can be warned, restricted, suspended or banned; groups muted or dissolved. Each action records who,
when, why and on which evidence (a case id and what the moderator points at), with an optional duration after
which it has expired. Fanzha does not carry actions out: the platform does, from the POST to
FANZHA_ACTION_WEBHOOK (signed and retried by fanzha.platform.webhook, the same sender as alerts):

    {"type": "action", "event": "dispose" | "lift", "id": 7, "action": {…the action as /actions lists it…}}

Every POST is a delivery row (pending → delivered | failed; `not_configured` without a webhook), shown with
the action.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping

import sqlalchemy as sa

from fanzha.models.errors import Conflict, InputError, NotFound

from .database import Database
from .webhook import Webhook

log = logging.getLogger("fanzha.actions")

ACTIONS = {"account": ("warn", "restrict", "suspend", "ban"), "group": ("mute", "dissolve")}
TIMED = ("restrict", "suspend", "ban", "mute")  # the actions a duration makes sense for
MAX_REASON_CHARS = 2000
MAX_DURATION_S = 10 * 365 * 86400.0


class UnknownAction(NotFound):
    """No such action: HTTP 404."""


class ActionBook:
    def __init__(self, db: Database, webhook: Webhook | None = None, clock=time.time) -> None:
        self.db, self.webhook, self.clock = db, webhook, clock
        self.t, self.deliveries = db.tables["actions"], db.tables["action_deliveries"]

    def close(self) -> None:
        if self.webhook:
            self.webhook.close()

    def dispose(
        self,
        entity_kind: str,
        entity_id: str,
        action: str,
        moderator_id: str,
        reason: str,
        duration_s: float | None = None,
        case_id: str | None = None,
        evidence: list | dict | None = None,
    ) -> dict:
        if entity_kind not in ACTIONS:
            raise InputError(f"entity_kind must be one of {tuple(ACTIONS)}, got {entity_kind!r}")
        if action not in ACTIONS[entity_kind]:
            raise InputError(f"a {entity_kind} can be {' / '.join(ACTIONS[entity_kind])}, not {action!r}")
        if not entity_id or len(entity_id) > 256:
            raise InputError(f"{entity_kind}_id must be 1–256 characters")
        _check_moderator(moderator_id)
        reason = _check_reason(reason)
        if duration_s is not None:
            if action not in TIMED:
                raise InputError(f"`{action}` takes no duration (timed actions: {', '.join(TIMED)})")
            if not 0 < duration_s <= MAX_DURATION_S:
                raise InputError("duration_s must be positive and at most ten years")
        now = self.clock()
        with self.db.write() as conn:
            action_id = conn.execute(
                self.t.insert()
                .values(
                    entity_kind=entity_kind,
                    entity_id=entity_id,
                    action=action,
                    moderator_id=moderator_id,
                    reason=reason,
                    duration_s=duration_s,
                    expires_at=now + duration_s if duration_s else None,
                    case_id=case_id,
                    evidence=json.dumps(evidence if evidence is not None else [], ensure_ascii=False),
                    created_at=now,
                )
                .returning(self.t.c.id)
            ).scalar_one()
        self._deliver(action_id, "dispose")
        return self.get(action_id)

    def lift(self, action_id: int, moderator_id: str, reason: str) -> dict:
        _check_moderator(moderator_id)
        reason = _check_reason(reason)
        t, now = self.t, self.clock()
        with self.db.write() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == _int_id(action_id))).first()
            if row is None:
                raise UnknownAction(f"unknown action {action_id!r}")
            if row.lifted_at is not None:
                raise Conflict(f"action {row.id} was lifted already")
            if row.expires_at is not None and row.expires_at <= now:
                raise Conflict(f"action {row.id} has expired: there is nothing to lift")
            conn.execute(
                t.update()
                .where(t.c.id == row.id, t.c.lifted_at.is_(None))
                .values(lifted_at=now, lifted_by=moderator_id, lift_reason=reason)
            )
        self._deliver(row.id, "lift")
        return self.get(row.id)

    def get(self, action_id: int) -> dict:
        t = self.t
        with self.db.read() as conn:
            row = conn.execute(sa.select(t).where(t.c.id == _int_id(action_id))).first()
            if row is None:
                raise UnknownAction(f"unknown action {action_id!r}")
            return self._views(conn, [row])[0]

    def actions(
        self,
        entity_kind: str | None = None,
        entity_id: str | None = None,
        limit: int = 100,
        after_id: int = 0,
        case_id: str | None = None,
        newest_first: bool = False,
    ) -> list[dict]:
        """Actions with id > after_id, oldest first (poll with the last id seen) or the latest first, by
        account/group or case."""
        if entity_kind is not None and entity_kind not in ACTIONS:
            raise InputError(f"entity_kind must be one of {tuple(ACTIONS)}, got {entity_kind!r}")
        if not 1 <= limit <= 1000:
            raise InputError("limit must be 1–1000")
        t = self.t
        query = sa.select(t).where(t.c.id > after_id)
        for column, value in (
            (t.c.entity_kind, entity_kind),
            (t.c.entity_id, entity_id),
            (t.c.case_id, case_id),
        ):
            if value is not None:
                query = query.where(column == value)
        with self.db.read() as conn:
            order = t.c.id.desc() if newest_first else t.c.id
            return self._views(conn, conn.execute(query.order_by(order).limit(limit)).all())

    def on_entities(self, entities: list[tuple[str, str]], limit: int = 50) -> list[dict]:
        """The latest actions on any of these (kind, id) pairs, newest first."""
        t = self.t
        pairs = [(k, i) for k, i in entities if i]
        if not pairs:
            return []
        where = sa.or_(*((t.c.entity_kind == k) & (t.c.entity_id == i) for k, i in pairs))
        with self.db.read() as conn:
            return self._views(
                conn, conn.execute(sa.select(t).where(where).order_by(t.c.id.desc()).limit(limit)).all()
            )

    def _views(self, conn, rows) -> list[dict]:
        d, now = self.deliveries, self.clock()
        ids = [r.id for r in rows]
        deliveries: dict[int, list[dict]] = {}
        if ids:
            for x in conn.execute(sa.select(d).where(d.c.action_id.in_(ids)).order_by(d.c.id)):
                deliveries.setdefault(x.action_id, []).append(
                    {
                        "event": x.event,
                        "status": x.status,
                        "attempts": x.attempts,
                        "error": x.error,
                        "created_at": x.created_at,
                        "updated_at": x.updated_at,
                    }
                )
        return [self._view(r, deliveries.get(r.id, []), now) for r in rows]

    @staticmethod
    def _view(row, deliveries: list[dict], now: float) -> dict:
        if row.lifted_at is not None:
            state = "lifted"
        elif row.expires_at is not None and row.expires_at <= now:
            state = "expired"
        else:
            state = "active"
        return {
            "action_id": row.id,
            "entity_kind": row.entity_kind,
            "entity_id": row.entity_id,
            "action": row.action,
            "moderator_id": row.moderator_id,
            "reason": row.reason,
            "duration_s": row.duration_s,
            "expires_at": row.expires_at,
            "case_id": row.case_id,
            "evidence": json.loads(row.evidence),
            "created_at": row.created_at,
            "status": state,
            "lifted_at": row.lifted_at,
            "lifted_by": row.lifted_by,
            "lift_reason": row.lift_reason,
            "delivery": deliveries[-1]["status"] if deliveries else None,
            "deliveries": deliveries,
        }

    # -- delivery -----------------------------------------------------------------------------------------------
    def _deliver(self, action_id: int, event: str) -> None:
        d, now = self.deliveries, self.clock()
        status = "pending" if self.webhook else "not_configured"
        with self.db.write() as conn:
            delivery_id = conn.execute(
                d.insert()
                .values(
                    action_id=action_id,
                    event=event,
                    status=status,
                    attempts=0,
                    created_at=now,
                    updated_at=now,
                )
                .returning(d.c.id)
            ).scalar_one()
        if not self.webhook:
            return
        message = {"type": "action", "event": event, "id": action_id, "action": _public(self.get(action_id))}
        self.webhook.send(
            message, on_done=lambda ok, attempts, error: self._delivered(delivery_id, ok, attempts, error)
        )

    def _delivered(self, delivery_id: int, ok: bool, attempts: int, error: str | None) -> None:
        d = self.deliveries
        with self.db.write() as conn:
            conn.execute(
                d.update()
                .where(d.c.id == delivery_id)
                .values(
                    status="delivered" if ok else "failed",
                    attempts=attempts,
                    error=error,
                    updated_at=self.clock(),
                )
            )


def _public(view: Mapping) -> dict:
    """The action as POSTed: without the delivery bookkeeping."""
    return {k: v for k, v in view.items() if k not in ("delivery", "deliveries")}


def _int_id(action_id) -> int:
    try:
        value = int(action_id)
    except (TypeError, ValueError):
        raise UnknownAction(f"unknown action {action_id!r}") from None
    if not 0 < value < 2**63:
        raise UnknownAction(f"unknown action {action_id!r}")
    return value


def _check_moderator(moderator_id: str) -> None:
    if not moderator_id or not isinstance(moderator_id, str) or len(moderator_id) > 256:
        raise InputError("moderator_id must be 1–256 characters")


def _check_reason(reason: str | None) -> str:
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_REASON_CHARS:
        raise InputError(f"a reason of 1–{MAX_REASON_CHARS:,} characters is required")
    return reason
