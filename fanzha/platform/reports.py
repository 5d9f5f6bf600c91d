"""The report book: users' fraud reports, their moderation, and the feedback the reporter reads.

    from fanzha.platform.reports import NewReport, ReportBook
    book = ReportBook()                                     # the same database as the risk state
    report, created = book.create(NewReport(reporter_id="user-7", target_type="text", reason="骗我交激活费",
                                            target_text="…", verdict=verdict_dict))
    book.resolve(report["report_id"], "in_review", moderator_id="mod-1")
    book.resolve(report["report_id"], "confirmed", moderator_id="mod-1", reason="虚假赠送，已封号")
    book.status(report["report_id"], reporter_id="user-7")   # what the reporter sees: status, reason, history
    book.resolved()                                          # decided reports: fanzha.datasets.feedback exports them

A report moves received → in_review → confirmed | rejected (a moderator may also decide straight from
received); confirmed and rejected are final. Every change is an event in the history the reporter sees,
with the moderator's reason — the feedback the regulator asks for — but never the moderator's id.

An optional idempotency key (per reporter) makes intake safe to retry: the same key returns the report
already stored instead of a second one.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import sqlalchemy as sa

from fanzha.models.errors import Conflict, InputError, NotFound
from fanzha.models.labels import LABELS

from .database import Database

STATUSES = ("received", "in_review", "confirmed", "rejected")
TRANSITIONS = {
    "received": ("in_review", "confirmed", "rejected"),
    "in_review": ("confirmed", "rejected"),
    "confirmed": (),
    "rejected": (),
}
TARGET_TYPES = ("text", "image", "account", "group")
MAX_REASON_CHARS = 2000


class UnknownReport(NotFound):
    """No such report (or not this reporter's): HTTP 404."""


class InvalidTransition(Conflict):
    """The report's status cannot change that way (it is final, or already there): HTTP 409."""


@dataclass
class NewReport:
    reporter_id: str
    target_type: str
    reason: str
    target_text: str | None = None  # a text target, or what was read from an image
    target_media_sha256: str | None = None
    target_account_id: str | None = None  # the reported account, or who posted the reported content
    target_group_id: str | None = None
    target_source: str | None = None
    idempotency_key: str | None = None
    verdict: dict | None = None  # the verdict at intake (text and image targets)

    def check(self) -> None:
        if self.target_type not in TARGET_TYPES:
            raise InputError(f"target type must be one of {TARGET_TYPES}, got {self.target_type!r}")
        if not self.reporter_id or len(self.reporter_id) > 256:
            raise InputError("reporter_id must be 1–256 characters")
        if not self.reason.strip() or len(self.reason) > MAX_REASON_CHARS:
            raise InputError(f"reason must be 1–{MAX_REASON_CHARS:,} characters")
        needs = {
            "text": self.target_text,
            "image": self.target_media_sha256,
            "account": self.target_account_id,
            "group": self.target_group_id,
        }[self.target_type]
        if not needs:
            raise InputError(f"a {self.target_type} report needs its target")


def _new_id() -> str:
    return "r" + secrets.token_hex(12)  # 96 random bits: a report id is not guessable


class ReportBook:
    def __init__(self, db: Database | str | None = None, clock=time.time) -> None:
        self.db = db if isinstance(db, Database) else Database(db)
        self.reports, self.events = self.db.tables["reports"], self.db.tables["report_events"]
        self.clock = clock
        r = self.reports  # built once: intake is the hot path
        self._by_key = sa.select(r).where(
            r.c.reporter_id == sa.bindparam("reporter"), r.c.idempotency_key == sa.bindparam("key")
        )

    def close(self) -> None:
        self.db.close()

    # -- intake -------------------------------------------------------------------------------------------------
    def find(self, reporter_id: str, idempotency_key: str) -> dict | None:
        with self.db.read() as conn:
            row = conn.execute(self._by_key, {"reporter": reporter_id, "key": idempotency_key}).first()
            return self._view(conn, row) if row else None

    def create(self, report: NewReport) -> tuple[dict, bool]:
        """Store a report (status `received`); returns (the moderator's view of it, whether it is new)."""
        report.check()
        r, now = self.reports, self.clock()
        row = {k: v for k, v in asdict(report).items() if k != "verdict"}
        row.update(
            id=_new_id(),
            status="received",
            status_reason=None,
            labels=None,
            moderator_id=None,
            created_at=now,
            updated_at=now,
            verdict=json.dumps(report.verdict, ensure_ascii=False) if report.verdict is not None else None,
        )
        try:
            with self.db.write() as conn:
                if report.idempotency_key:
                    existing = conn.execute(
                        self._by_key, {"reporter": report.reporter_id, "key": report.idempotency_key}
                    ).first()
                    if existing:
                        return self._view(conn, existing), False
                conn.execute(r.insert(), row)  # parameters apart from the statement: compiled once, cached
                event = {"status": "received", "ts": now, "actor": report.reporter_id, "note": None}
                conn.execute(self.events.insert(), {"report_id": row["id"], **event})
            return self._as_view(row, [event]), True
        except sa.exc.IntegrityError:  # PostgreSQL: the same key raced in from another connection
            existing = self.find(report.reporter_id, report.idempotency_key or "")
            if existing is None:
                raise
            return existing, False

    # -- moderation ---------------------------------------------------------------------------------------------
    def resolve(
        self,
        report_id: str,
        status: str,
        moderator_id: str,
        reason: str | None = None,
        labels: list[str] | None = None,
    ) -> dict:
        """Move a report on; InvalidTransition if it cannot go there, InputError for a bad request."""
        if status not in STATUSES[1:]:
            raise InputError(f"status must be one of {STATUSES[1:]}, got {status!r}")
        if not moderator_id or len(moderator_id) > 256:
            raise InputError("moderator_id must be 1–256 characters")
        reason = (reason or "").strip() or None
        if reason and len(reason) > MAX_REASON_CHARS:
            raise InputError(f"reason must be at most {MAX_REASON_CHARS:,} characters")
        if status in ("confirmed", "rejected") and not reason:
            raise InputError(f"a {status} report needs a reason: it is the reporter's feedback")
        if labels and status != "confirmed":
            raise InputError("labels go with `confirmed` only")
        unknown = [label for label in labels or () if label not in LABELS]
        if unknown:
            raise InputError(f"unknown labels {unknown}; known: {list(LABELS)}")
        r, now = self.reports, self.clock()
        with self.db.write() as conn:
            row = conn.execute(sa.select(r).where(r.c.id == report_id).with_for_update()).first()
            if row is None:
                raise UnknownReport(f"unknown report {report_id!r}")
            if status not in TRANSITIONS[row.status]:
                allowed = TRANSITIONS[row.status]
                raise InvalidTransition(
                    f"report {report_id} is {row.status}; it cannot become {status}"
                    + (f" (it can become {' or '.join(allowed)})" if allowed else " (that is final)")
                )
            verdict_labels = json.loads(row.verdict).get("labels") if row.verdict else None
            if (
                status == "confirmed"
                and row.target_type in ("text", "image")
                and not labels
                and not verdict_labels
            ):
                raise InputError(
                    "the model found no label in this content: say which kind of fraud it is (`labels`)"
                )
            conn.execute(
                r.update()
                .where(r.c.id == report_id)
                .values(
                    status=status,
                    status_reason=reason or row.status_reason,
                    moderator_id=moderator_id,
                    updated_at=now,
                    labels=json.dumps(labels) if labels else row.labels,
                )
            )
            conn.execute(
                self.events.insert().values(
                    report_id=report_id, ts=now, status=status, actor=moderator_id, note=reason
                )
            )
            return self._view(conn, conn.execute(sa.select(r).where(r.c.id == report_id)).one())

    # -- queries ------------------------------------------------------------------------------------------------
    def get(self, report_id: str) -> dict:
        with self.db.read() as conn:
            row = conn.execute(sa.select(self.reports).where(self.reports.c.id == report_id)).first()
            if row is None:
                raise UnknownReport(f"unknown report {report_id!r}")
            return self._view(conn, row)

    def status(self, report_id: str, reporter_id: str) -> dict:
        """The reporter's view: status, the moderator's reason, the history. Another reporter's report is
        answered exactly like an unknown one, so ids cannot be probed."""
        r = self.reports
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(r).where(r.c.id == report_id, r.c.reporter_id == reporter_id)
            ).first()
            if row is None:
                raise UnknownReport(f"no report {report_id!r} from reporter {reporter_id!r}")
            history = self._history(conn, report_id)
        return {
            "report_id": row.id,
            "status": row.status,
            "status_reason": row.status_reason,
            "target_type": row.target_type,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "history": [{k: e[k] for k in ("status", "ts", "note")} for e in history],
        }

    def list_reports(
        self,
        status: str | None = None,
        limit: int = 50,
        after: str | None = None,
        reporter_id: str | None = None,
        account_id: str | None = None,
        group_id: str | None = None,
    ) -> list[dict]:
        """Reports oldest first (a moderation queue); `after` = the last report id of the previous page."""
        r = self.reports
        query = sa.select(r)
        for column, value in (
            (r.c.status, status),
            (r.c.reporter_id, reporter_id),
            (r.c.target_account_id, account_id),
            (r.c.target_group_id, group_id),
        ):
            if value is not None:
                query = query.where(column == value)
        with self.db.read() as conn:
            if after is not None:
                cursor = conn.execute(sa.select(r.c.created_at).where(r.c.id == after)).scalar()
                if cursor is None:
                    raise UnknownReport(f"unknown report {after!r} (the `after` cursor)")
                query = query.where(
                    sa.tuple_(r.c.created_at, r.c.id) > sa.tuple_(sa.literal(cursor), sa.literal(after))
                )
            rows = conn.execute(query.order_by(r.c.created_at, r.c.id).limit(limit)).all()
            histories = self._histories(conn, [row.id for row in rows])
            return [self._as_view(dict(row._mapping), histories.get(row.id, [])) for row in rows]

    def count(self) -> int:
        with self.db.read() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(self.reports)).scalar_one()

    def _history(self, conn, report_id: str) -> list[dict]:
        return self._histories(conn, [report_id]).get(report_id, [])

    def _histories(self, conn, report_ids: list[str]) -> dict[str, list[dict]]:
        e, out = self.events, {}
        for i in range(0, len(report_ids), 500):
            for x in conn.execute(
                sa.select(e.c.report_id, e.c.status, e.c.ts, e.c.actor, e.c.note)
                .where(e.c.report_id.in_(report_ids[i : i + 500]))
                .order_by(e.c.id)
            ):
                out.setdefault(x.report_id, []).append(
                    {"status": x.status, "ts": x.ts, "actor": x.actor, "note": x.note}
                )
        return out

    def _view(self, conn, row) -> dict:
        return self._as_view(dict(row._mapping), self._history(conn, row.id))

    @staticmethod
    def _as_view(d: dict, history: list[dict]) -> dict:
        d = dict(d)
        return {
            "report_id": d.pop("id"),
            **d,
            "labels": json.loads(d["labels"]) if d["labels"] else None,
            "verdict": json.loads(d["verdict"]) if d["verdict"] else None,
            "history": history,
        }

    def counts_against(self, kind: str, entity_id: str) -> dict[str, int]:
        """Reports against an account or group, by status (what its risk view shows)."""
        r = self.reports
        column = r.c.target_account_id if kind == "account" else r.c.target_group_id
        with self.db.read() as conn:
            return dict(
                conn.execute(
                    sa.select(r.c.status, sa.func.count()).where(column == entity_id).group_by(r.c.status)
                ).all()
            )

    def resolved(
        self, since: float | None = None, target_types: tuple[str, ...] = ("text", "image")
    ) -> Iterator[dict]:
        """Confirmed and rejected reports (of content, by default), in the order they were decided, without
        their histories: what `fanzha.datasets.feedback.export_records` turns into training examples."""
        r = self.reports
        query = (
            sa.select(r)
            .where(r.c.status.in_(("confirmed", "rejected")), r.c.target_type.in_(target_types))
            .order_by(r.c.updated_at, r.c.id)
        )
        if since is not None:
            query = query.where(r.c.updated_at >= since)
        with self.db.read() as conn:
            rows = conn.execute(query).all()
        for row in rows:
            yield self._as_view(dict(row._mapping), [])
