"""The audit log (every decision and every disposal action, with lifts) and the moderation dashboard.

    from fanzha.platform.audit import Audit
    audit = Audit(db)
    audit.log(moderator_id="mod-1", since=t0)        # newest first
    audit.csv(kind="action")                         # the same rows as CSV
    audit.dashboard(days=14, queue_depths={...}, clusters=[...])

Agreement between the model and the moderators is the precision of each model decision measured by the
moderators' verdicts: of the cases the model decided `block` (or `review`) that a moderator confirmed or
rejected, the share confirmed. Escalations are not verdicts and do not count.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections import Counter

import sqlalchemy as sa

from fanzha.models.errors import InputError

from .database import Database

LOG_KINDS = ("decision", "action", "lift")
CSV_FIELDS = (
    "ts",
    "kind",
    "id",
    "moderator_id",
    "what",
    "case_id",
    "entity_kind",
    "entity_id",
    "labels",
    "reason",
    "detail",
)
DAY = 86400.0


class Audit:
    def __init__(self, db: Database, clock=time.time) -> None:
        self.db, self.clock = db, clock
        self.decisions, self.actions = db.tables["decisions"], db.tables["actions"]

    def log(
        self,
        *,
        moderator_id: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> list[dict]:
        """Decisions, actions and lifts, newest first. Each row: ts, kind (decision | action | lift), id,
        moderator_id, what (confirm / ban / …), case_id, entity_kind, entity_id, labels, reason, detail."""
        if kind is not None and kind not in LOG_KINDS:
            raise InputError(f"kind must be one of {LOG_KINDS}, got {kind!r}")
        if not 1 <= limit <= 100_000 or offset < 0:
            raise InputError("limit must be 1–100,000 and offset at least 0")
        want = limit + offset
        rows: list[dict] = []
        d, a = self.decisions, self.actions
        with self.db.read() as conn:
            if kind in (None, "decision"):
                q = sa.select(d)
                q = _window(q, d.c.ts, d.c.moderator_id, moderator_id, since, until)
                for x in conn.execute(q.order_by(d.c.ts.desc(), d.c.id.desc()).limit(want)):
                    rows.append(
                        {
                            "ts": x.ts,
                            "kind": "decision",
                            "id": x.id,
                            "moderator_id": x.moderator_id,
                            "what": x.decision,
                            "case_id": x.case_id,
                            "entity_kind": "account" if x.account_id else "group" if x.group_id else None,
                            "entity_id": x.account_id or x.group_id,
                            "labels": json.loads(x.labels),
                            "reason": x.reason,
                            "detail": {"queue": x.queue, "kind": x.kind, "model_decision": x.model_decision},
                        }
                    )
            if kind in (None, "action"):
                q = _window(sa.select(a), a.c.created_at, a.c.moderator_id, moderator_id, since, until)
                for x in conn.execute(q.order_by(a.c.created_at.desc(), a.c.id.desc()).limit(want)):
                    rows.append(_action_row(x, "action"))
            if kind in (None, "lift"):
                q = sa.select(a).where(a.c.lifted_at.is_not(None))
                q = _window(q, a.c.lifted_at, a.c.lifted_by, moderator_id, since, until)
                for x in conn.execute(q.order_by(a.c.lifted_at.desc(), a.c.id.desc()).limit(want)):
                    rows.append(_action_row(x, "lift"))
        rows.sort(key=lambda r: (-r["ts"], LOG_KINDS.index(r["kind"]), -r["id"]))
        return rows[offset : offset + limit]

    def csv(self, **filters) -> str:
        """The log as CSV (UTF-8 text, a header row; labels and detail as JSON cells; times as epoch seconds and
        ISO 8601 UTC)."""
        filters.setdefault("limit", 100_000)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow((*CSV_FIELDS, "time_utc"))
        for row in self.log(**filters):
            cells = []
            for name in CSV_FIELDS:
                value = row[name]
                if name in ("labels", "detail"):
                    value = json.dumps(value, ensure_ascii=False)
                cells.append("" if value is None else _safe_cell(value))
            cells.append(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(row["ts"])))
            writer.writerow(cells)
        return out.getvalue()

    def dashboard(self, days: int, queue_depths: dict[str, int], clusters: list[dict]) -> dict:
        if not 1 <= days <= 366:
            raise InputError("days must be 1–366")
        d, now = self.decisions, self.clock()
        since = (now // DAY - (days - 1)) * DAY  # whole UTC days, today included
        with self.db.read() as conn:
            rows = conn.execute(
                sa.select(
                    d.c.ts, d.c.moderator_id, d.c.decision, d.c.model_decision, d.c.labels, d.c.queue
                ).where(d.c.ts >= since)
            ).all()
        per_day: Counter = Counter()
        per_moderator: Counter = Counter()
        verdicts: dict[str, Counter] = {"block": Counter(), "review": Counter()}
        label_mix: Counter = Counter()
        for r in rows:
            per_day[time.strftime("%Y-%m-%d", time.gmtime(r.ts))] += 1
            per_moderator[r.moderator_id] += 1
            if r.decision in ("confirm", "reject") and r.model_decision in verdicts:
                verdicts[r.model_decision][r.decision] += 1
            if r.decision == "confirm":
                label_mix.update(json.loads(r.labels))
        day_list = [time.strftime("%Y-%m-%d", time.gmtime(since + i * DAY)) for i in range(days)]
        agreement = {}
        for model_decision, counts in verdicts.items():
            n = counts["confirm"] + counts["reject"]
            agreement[model_decision] = {
                "precision": round(counts["confirm"] / n, 4) if n else None,
                "n": n,
                "confirmed": counts["confirm"],
                "rejected": counts["reject"],
            }
        return {
            "days": days,
            "since": since,
            "queue_depths": queue_depths,
            "decisions_per_day": [{"day": day, "count": per_day.get(day, 0)} for day in day_list],
            "throughput": [
                {"moderator_id": m, "decisions": n}
                for m, n in sorted(per_moderator.items(), key=lambda kv: (-kv[1], kv[0]))
            ],
            "agreement": agreement,
            "label_mix": dict(label_mix.most_common()),
            "top_clusters": clusters,
        }


def _window(query, ts_column, moderator_column, moderator_id, since, until):
    if moderator_id is not None:
        query = query.where(moderator_column == moderator_id)
    if since is not None:
        query = query.where(ts_column >= since)
    if until is not None:
        query = query.where(ts_column < until)
    return query


def _action_row(x, kind: str) -> dict:
    lift = kind == "lift"
    return {
        "ts": x.lifted_at if lift else x.created_at,
        "kind": kind,
        "id": x.id,
        "moderator_id": x.lifted_by if lift else x.moderator_id,
        "what": x.action,
        "case_id": x.case_id,
        "entity_kind": x.entity_kind,
        "entity_id": x.entity_id,
        "labels": [],
        "reason": x.lift_reason if lift else x.reason,
        "detail": {
            "duration_s": x.duration_s,
            "expires_at": x.expires_at,
            "evidence": json.loads(x.evidence),
        },
    }


def _safe_cell(value) -> str:
    """A cell a spreadsheet will not run as a formula (CSV injection): text starting =, +, - or @ gets a '."""
    text = str(value)
    if isinstance(value, str) and text[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text
    return text
