"""The read side of the risk state: an account's or group's risk now and why, campaign clusters, the alert log.

Reports against an account or group are the report book's to count: a caller that has them passes them in
(the Platform facade does), and they count toward the level and the reasons.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fanzha.models.errors import InputError, NotFound

from ..database import Database
from .ingest import ENTITY_KINDS, EntityState, _chunks
from .rules import HOUR, RiskRules


class UnknownEntity(NotFound):
    """No scored item has named this account, group or cluster (HTTP 404)."""


class RiskQueries:
    def __init__(self, db: Database, rules: RiskRules, clock: Callable[[], float]) -> None:
        self.db, self.rules, self.clock = db, rules, clock
        t = db.tables
        self.entities, self.handles, self.entity_handles = t["entities"], t["handles"], t["entity_handles"]
        self.clusters_t, self.flagged_items, self.alerts_t = t["clusters"], t["flagged_items"], t["alerts"]

    def entity(
        self, kind: str, entity_id: str, recent: int = 10, reports: dict[str, int] | None = None
    ) -> dict:
        """An account's or group's risk now, with its reasons; UnknownEntity when nothing named it yet.
        `reports`: the reports against it by status (the report book's count), when the caller has them."""
        if kind not in ENTITY_KINDS:
            raise InputError(f"kind must be one of {ENTITY_KINDS}")
        e, fi, r = self.entities, self.flagged_items, self.rules
        now = self.clock()
        with self.db.read() as conn:
            row = conn.execute(sa.select(e).where(e.c.kind == kind, e.c.id == entity_id)).first()
            if row is None:
                raise UnknownEntity(f"unknown {kind} {entity_id!r}: no scored item has named it")
            state = EntityState.from_row(row)
            where = (fi.c.entity_kind == kind) & (fi.c.entity_id == entity_id)
            in_window = conn.execute(
                sa.select(sa.func.count()).where(where, fi.c.ts > now - r.window_s)
            ).scalar_one()
            recent_items = [
                self._flagged_dict(x)
                for x in conn.execute(
                    sa.select(fi).where(where).order_by(fi.c.ts.desc(), fi.c.id.desc()).limit(recent)
                )
            ]
            handles = self._entity_handles(conn, kind, entity_id)
            cluster = self._cluster(conn, state.cluster_id, members=50) if state.cluster_id else None
            a = self.alerts_t
            alerts = [
                self._alert_dict(x)
                for x in conn.execute(
                    sa.select(a)
                    .where(a.c.entity_kind == kind, a.c.entity_id == entity_id)
                    .order_by(a.c.id.desc())
                    .limit(recent)
                )
            ]
        reports = dict(reports or {})
        risk = round(r.decay(state.risk, now - state.risk_ts), 4)
        return {
            "kind": kind,
            "id": entity_id,
            "level": r.level(in_window, risk, state.flagged, cluster, reports),
            "risk": risk,
            "items": state.items,
            "flagged": state.flagged,
            "flagged_in_window": in_window,
            "window_hours": r.window_s / HOUR,
            "first_seen": state.first_seen,
            "last_seen": state.last_seen,
            "labels": dict(state.labels.most_common()),
            "reasons": r.reasons(in_window, risk, state.labels, handles, cluster, reports),
            "handles": handles,
            "cluster": cluster,
            "recent_flagged": recent_items,
            "alerts": alerts,
            "reports": reports,
        }

    def clusters(self, min_accounts: int = 2, limit: int = 50, members: int = 100) -> list[dict]:
        """Campaign clusters with at least `min_accounts` accounts, largest first."""
        c = self.clusters_t
        with self.db.read() as conn:
            ids = (
                conn.execute(
                    sa.select(c.c.id)
                    .where(c.c.accounts >= min_accounts)
                    .order_by(c.c.accounts.desc(), c.c.updated.desc())
                    .limit(limit)
                )
                .scalars()
                .all()
            )
            return [self._cluster(conn, cid, members=members) for cid in ids]

    def cluster(self, cluster_id: int, members: int = 1000) -> dict:
        with self.db.read() as conn:
            found = self._cluster(conn, cluster_id, members=members)
        if found is None:
            raise UnknownEntity(f"unknown cluster {cluster_id}")
        return found

    def alerts(
        self,
        after_id: int = 0,
        limit: int = 100,
        rule: str | None = None,
        entity_kind: str | None = None,
        entity_id: str | None = None,
    ) -> list[dict]:
        """Alerts with id > after_id, oldest first: poll with the last id you saw."""
        a = self.alerts_t
        query = sa.select(a).where(a.c.id > after_id)
        for column, value in ((a.c.rule, rule), (a.c.entity_kind, entity_kind), (a.c.entity_id, entity_id)):
            if value is not None:
                query = query.where(column == value)
        with self.db.read() as conn:
            return [self._alert_dict(x) for x in conn.execute(query.order_by(a.c.id).limit(limit))]

    def _entity_handles(self, conn: Connection, kind: str, entity_id: str, limit: int = 20) -> list[dict]:
        eh, h = self.entity_handles, self.handles
        rows = conn.execute(
            sa.select(
                eh.c.handle, h.c.kind, h.c.value, eh.c["items"], eh.c.flagged, eh.c.first_seen, eh.c.last_seen
            )
            .join(h, h.c.handle == eh.c.handle)
            .where(eh.c.entity_kind == kind, eh.c.entity_id == entity_id)
            .order_by(eh.c.flagged.desc(), eh.c["items"].desc())
            .limit(limit)
        ).all()
        pushers = self._pushers(conn, [x.handle for x in rows])
        return [
            {
                "kind": x.kind,
                "value": x.value,
                "items": x.items,
                "flagged": x.flagged,
                "accounts": pushers.get(x.handle, 0),
                "first_seen": x.first_seen,
                "last_seen": x.last_seen,
            }
            for x in rows
        ]

    def _pushers(self, conn: Connection, keys: list[str]) -> dict[str, int]:
        """handle → how many accounts pushed it in flagged items."""
        eh = self.entity_handles
        out: dict[str, int] = {}
        for chunk in _chunks(keys):
            out.update(
                conn.execute(
                    sa.select(eh.c.handle, sa.func.count())
                    .where(eh.c.handle.in_(chunk), eh.c.entity_kind == "account", eh.c.flagged > 0)
                    .group_by(eh.c.handle)
                ).all()
            )
        return out

    def _cluster(self, conn: Connection, cluster_id: int, members: int) -> dict | None:
        c, e, h = self.clusters_t, self.entities, self.handles
        row = conn.execute(sa.select(c).where(c.c.id == cluster_id)).first()
        if row is None:
            return None
        account = (e.c.kind == "account") & (e.c.cluster_id == cluster_id)
        member_ids = (
            conn.execute(sa.select(e.c.id).where(account).order_by(e.c.first_seen).limit(members))
            .scalars()
            .all()
        )
        flagged = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(e.c.flagged), 0)).where(account)
        ).scalar_one()
        handle_rows = conn.execute(
            sa.select(h.c.handle, h.c.kind, h.c.value, h.c.flagged)
            .where(h.c.cluster_id == cluster_id)
            .order_by(h.c.flagged.desc())
            .limit(50)
        ).all()
        pushers = self._pushers(conn, [x.handle for x in handle_rows])
        return {
            "id": row.id,
            "accounts": row.accounts,
            "handle_count": row.handles,
            "flagged_items": int(flagged),
            "created": row.created,
            "updated": row.updated,
            "members": list(member_ids),
            "handles": sorted(
                (
                    {
                        "kind": x.kind,
                        "value": x.value,
                        "flagged": x.flagged,
                        "accounts": pushers.get(x.handle, 0),
                    }
                    for x in handle_rows
                ),
                key=lambda d: (-d["accounts"], -d["flagged"]),
            ),
        }

    @staticmethod
    def _flagged_dict(row) -> dict:
        return {
            "item_id": row.item_id,
            "ts": row.ts,
            "fraud_score": row.fraud_score,
            "decision": row.decision,
            "labels": json.loads(row.labels),
            "handles": json.loads(row.handles),
            "source": row.source,
        }

    @staticmethod
    def _alert_dict(row) -> dict:
        d = dict(row._mapping)
        d["detail"] = json.loads(d["detail"])
        return d
