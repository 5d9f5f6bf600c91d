"""The write side of the risk state: every scored item that names an account or group, in order, in one
transaction per batch.

Ingesting a batch runs a fixed number of statements (rows are read once, updated in memory item by item, and
written with executemany), so throughput does not depend on round trips per item. Alerts are edge-triggered
and synchronous: the item that takes a value across its threshold raises the alert.

Replays count once: an item that carries an id is remembered by (source, item id) in `ingested_items`, and the
same key again (a retried request or task, a resumed `fanzha score --track`, a second report of the same
message) changes nothing. Items without an id cannot be recognised and count each time. The keys are kept as
long as the flagged-item records (FANZHA_RISK_RETENTION_DAYS).

Campaign clusters are a persisted union–find: a cluster id per account and per handle; a merge relabels the
smaller cluster. Accounts link only through handles they BOTH pushed in FLAGGED items, and never through
handles the rules ignore.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from fanzha.models.errors import InputError
from fanzha.models.labels import DECISIONS, LABELS

from ..database import Database
from .handles import HANDLE_KINDS, MAX_HANDLE_CHARS, MAX_HANDLES_PER_ITEM, handle_key, handles_of
from .rules import HOUR, RiskRules

log = logging.getLogger("fanzha.risk")

ENTITY_KINDS = ("account", "group")
MAX_ID_CHARS = 256
MAX_SOURCE_CHARS = 512  # a service's "comment", "dm"…; a batch run's "posts.jsonl:line 7"
_CHUNK = 300  # rows per IN (…) list: far below SQLite's bound-parameter limit


@dataclass
class ScoredItem:
    """What the risk state needs from one scored item: its verdict's gist and who posted it where."""

    fraud_score: float
    decision: str
    labels: Sequence[str] = ()
    handles: Sequence[tuple[str, str]] = ()  # (kind, value), canonical
    account_id: str | None = None
    group_id: str | None = None
    item_id: str | None = None
    source: str | None = None
    ts: float | None = None  # when it was posted (epoch seconds); default: when it is ingested

    @classmethod
    def from_verdict(
        cls,
        verdict: Mapping | object,
        *,
        account_id: str | None = None,
        group_id: str | None = None,
        item_id: str | None = None,
        source: str | None = None,
        ts: float | None = None,
    ) -> ScoredItem:
        """From a Verdict, or a verdict dict (Verdict.to_dict(), a service answer, a batch output record). Ids not
        given are taken from the dict itself (`account_id`, `group_id`, `id`, `source`)."""
        if not isinstance(verdict, Mapping):
            verdict = verdict.to_dict(timings=False)  # a fanzha.models.Verdict
        return cls(
            fraud_score=float(verdict["fraud_score"]),
            decision=verdict["decision"],
            labels=tuple(verdict.get("labels") or ()),
            handles=handles_of(verdict.get("evidence") or ()),
            account_id=account_id if account_id is not None else verdict.get("account_id"),
            group_id=group_id if group_id is not None else verdict.get("group_id"),
            item_id=item_id if item_id is not None else verdict.get("id"),
            source=source if source is not None else verdict.get("source"),
            ts=ts,
        )

    @property
    def flagged(self) -> bool:
        return self.decision != "pass"

    @property
    def key(self) -> tuple[str, str] | None:
        """What makes a replay of this item the same item: (source, item id); None without an id."""
        return None if self.item_id is None else (self.source or "", self.item_id)

    def check(self) -> None:
        """Raise InputError naming what is wrong (the Python API's equivalent of a 400)."""
        if self.decision not in DECISIONS:
            raise InputError(f"decision must be one of {DECISIONS}, got {self.decision!r}")
        if not 0.0 <= self.fraud_score <= 1.0:
            raise InputError(f"fraud_score must be within [0, 1], got {self.fraud_score}")
        for name in ("account_id", "group_id", "item_id"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value or len(value) > MAX_ID_CHARS):
                raise InputError(f"{name} must be a non-empty string of at most {MAX_ID_CHARS} characters")
        if self.source is not None and (
            not isinstance(self.source, str) or len(self.source) > MAX_SOURCE_CHARS
        ):
            raise InputError(f"source must be a string of at most {MAX_SOURCE_CHARS} characters")
        unknown = [label for label in self.labels if label not in LABELS]
        if unknown:
            raise InputError(f"unknown labels {unknown}")
        if (
            len(self.handles) > MAX_HANDLES_PER_ITEM
        ):  # from_verdict keeps the first ones; a caller's own list is refused
            raise InputError(f"{len(self.handles)} handles; at most {MAX_HANDLES_PER_ITEM} per item")
        for kind, value in self.handles:
            if kind not in HANDLE_KINDS or not value or len(value) > MAX_HANDLE_CHARS:
                raise InputError(
                    f"bad handle {kind}:{value[:40]}: kind in {HANDLE_KINDS}, 1–{MAX_HANDLE_CHARS} characters"
                )


@dataclass
class Alert:
    rule: str
    ts: float
    value: float
    threshold: float
    message: str
    entity_kind: str | None = None
    entity_id: str | None = None
    cluster_id: int | None = None
    item_id: str | None = None
    detail: dict = field(default_factory=dict)
    id: int | None = None
    item_index: int | None = field(default=None, repr=False)  # position of that item in the ingested list

    def to_dict(self) -> dict:
        d = asdict(self)
        del d["item_index"]
        return d


@dataclass
class EntityState:  # one row of `entities`, updated in memory during a batch
    kind: str
    id: str
    first_seen: float
    last_seen: float
    items: int = 0
    flagged: int = 0
    risk: float = 0.0
    risk_ts: float = 0.0
    labels: Counter = field(default_factory=Counter)
    recent_flags: list[float] = field(default_factory=list)
    cluster_id: int | None = None
    new: bool = False

    @classmethod
    def from_row(cls, row) -> EntityState:
        return cls(
            kind=row.kind,
            id=row.id,
            first_seen=row.first_seen,
            last_seen=row.last_seen,
            items=row.items,
            flagged=row.flagged,
            risk=row.risk,
            risk_ts=row.risk_ts,
            labels=Counter(json.loads(row.labels)),
            recent_flags=json.loads(row.recent_flags),
            cluster_id=row.cluster_id,
        )


@dataclass
class _Counted:  # a row of `handles` or `entity_handles`
    first_seen: float
    last_seen: float
    items: int = 0
    flagged: int = 0
    cluster_id: int | None = None
    new: bool = False

    def see(self, ts: float, flagged: bool) -> None:
        self.first_seen, self.last_seen = min(self.first_seen, ts), max(self.last_seen, ts)
        self.items += 1
        self.flagged += flagged


class Ingest:
    """The tables and prepared reads of an ingest; `apply` runs one batch inside a write transaction."""

    def __init__(self, db: Database, rules: RiskRules) -> None:
        self.rules = rules
        t = db.tables
        self.entities, self.handles, self.entity_handles = t["entities"], t["handles"], t["entity_handles"]
        self.clusters_t, self.flagged_items, self.alerts_t = t["clusters"], t["flagged_items"], t["alerts"]
        self.ingested = t.get(
            "ingested_items"
        )  # None only on a database held at an older version (a migration test)
        # the reads of every ingest, built once (expanding IN lists): statement construction is most of the
        # cost of a one-item ingest
        e, h, eh, c = self.entities, self.handles, self.entity_handles, self.clusters_t
        ids = sa.bindparam("ids", expanding=True)
        self._load_entities = sa.select(e).where(
            sa.tuple_(e.c.kind, e.c.id).in_(ids)
        )  # accounts and groups at once
        self._load_handles = sa.select(h).where(h.c.handle.in_(ids))
        self._load_links = sa.select(eh).where(
            sa.tuple_(eh.c.entity_kind, eh.c.entity_id, eh.c.handle).in_(ids)
        )
        self._load_clusters = sa.select(c).where(c.c.id.in_(ids))
        # a replay key is claimed by inserting it: the keys that come back are the items never counted before (one
        # statement, no read first)
        i = self.ingested
        self._claim = (
            None
            if i is None
            else (sqlite_insert if db.is_sqlite else postgresql_insert)(i)
            .on_conflict_do_nothing()
            .returning(i.c.source, i.c.item_id)
        )

    def apply(
        self, conn: Connection, now: float, indexed: list[tuple[int, ScoredItem]]
    ) -> tuple[list[Alert], int]:
        """Apply (position, item) pairs in order; returns the alerts raised, stored (with their ids), and how many
        items were replays (counted before: skipped)."""
        batch = _Batch(self, conn, now)
        return batch.run(indexed), batch.replayed

    def insert_alert(self, conn: Connection, alert: Alert) -> None:
        row = {k: v for k, v in alert.to_dict().items() if k != "id"}
        row["detail"] = json.dumps(row["detail"], ensure_ascii=False)
        alert.id = conn.execute(
            self.alerts_t.insert().values(**row).returning(self.alerts_t.c.id)
        ).scalar_one()

    def prune(self, conn: Connection, now: float) -> int:
        """Drop flagged-item records and replay keys older than the retention; returns how many flagged items."""
        if self.ingested is not None:
            conn.execute(self.ingested.delete().where(self.ingested.c.ts < now - self.rules.retention_s))
        return conn.execute(
            self.flagged_items.delete().where(self.flagged_items.c.ts < now - self.rules.retention_s)
        ).rowcount


def _chunks(seq: Sequence, n: int = _CHUNK) -> Iterable[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


class _Batch:
    """One ingest transaction: read the rows the batch touches, apply the items in order, write back."""

    def __init__(self, store: Ingest, conn: Connection, now: float) -> None:
        self.s, self.conn, self.now, self.r = store, conn, now, store.rules
        self.entities: dict[tuple[str, str], EntityState] = {}
        self.handles: dict[str, _Counted] = {}
        self.links: dict[tuple[str, str, str], _Counted] = {}
        self.clusters: dict[int, dict] = {}
        self.merged: dict[int, int] = {}  # cluster id → the cluster it was merged into (within this batch)
        self.flag_rows: list[dict] = []
        self.alerts: list[Alert] = []
        self.replayed = (
            0  # items skipped: their (source, item id) was counted before, or earlier in this batch
        )

    def run(self, indexed: list[tuple[int, ScoredItem]]) -> list[Alert]:
        indexed = self._not_seen(indexed)
        if not indexed:
            return []
        self._load([item for _, item in indexed])
        for index, item in indexed:
            raised = len(self.alerts)
            self._apply(item)
            for alert in self.alerts[raised:]:
                alert.item_index = index
        self._write()
        for alert in self.alerts:
            self.s.insert_alert(self.conn, alert)
        return self.alerts

    # -- read ----------------------------------------------------------------------------------------------------
    def _not_seen(self, indexed: list[tuple[int, ScoredItem]]) -> list[tuple[int, ScoredItem]]:
        """The items to count: those without an id, and the first of each (source, item id) never counted before."""
        first: dict[tuple[str, str], int] = {}
        for pos, (_, item) in enumerate(indexed):
            if item.key is not None:
                first.setdefault(item.key, pos)
        if not first or self.s._claim is None:
            return indexed
        rows = [{"source": source, "item_id": item_id, "ts": self.now} for source, item_id in first]
        claimed = {(row.source, row.item_id) for row in self.conn.execute(self.s._claim, rows)}
        keep = {pos for key, pos in first.items() if key in claimed}
        fresh = [
            (index, item) for pos, (index, item) in enumerate(indexed) if item.key is None or pos in keep
        ]
        self.replayed = len(indexed) - len(fresh)
        return fresh

    def _load(self, items: list[ScoredItem]) -> None:
        s, conn = self.s, self.conn
        named: set[tuple[str, str]] = set()
        handle_keys: set[str] = set()
        pairs: set[tuple[str, str, str]] = set()
        for item in items:
            keys = [handle_key(*h) for h in item.handles]
            handle_keys.update(keys)
            for kind, eid in _named(item):
                named.add((kind, eid))
                pairs.update((kind, eid, k) for k in keys)
        for chunk in _chunks(sorted(named), 200):
            for row in conn.execute(s._load_entities, {"ids": chunk}):
                self.entities[(row.kind, row.id)] = EntityState.from_row(row)
        for chunk in _chunks(sorted(handle_keys)):
            for row in conn.execute(s._load_handles, {"ids": chunk}):
                self.handles[row.handle] = _Counted(
                    row.first_seen, row.last_seen, row.items, row.flagged, row.cluster_id
                )
        for chunk in _chunks(sorted(pairs), 200):
            for row in conn.execute(s._load_links, {"ids": chunk}):
                self.links[(row.entity_kind, row.entity_id, row.handle)] = _Counted(
                    row.first_seen, row.last_seen, row.items, row.flagged
                )
        cluster_ids = {x.cluster_id for x in self.entities.values()} | {
            x.cluster_id for x in self.handles.values()
        }
        cluster_ids.discard(None)
        for chunk in _chunks(sorted(cluster_ids)):
            for row in conn.execute(s._load_clusters, {"ids": chunk}):
                self.clusters[row.id] = {
                    "accounts": row.accounts,
                    "handles": row.handles,
                    "updated": row.updated,
                    "dirty": False,
                }

    # -- apply, item by item --------------------------------------------------------------------------------------
    def _apply(self, item: ScoredItem) -> None:
        ts = item.ts if item.ts is not None else self.now
        keys = [handle_key(*h) for h in item.handles]
        for key in keys:
            handle = self.handles.get(key)
            if handle is None:
                handle = self.handles[key] = _Counted(ts, ts, new=True)
            handle.see(ts, item.flagged)
        for kind, eid in _named(item):
            entity = self.entities.get((kind, eid))
            if entity is None:
                entity = self.entities[(kind, eid)] = EntityState(kind, eid, ts, ts, risk_ts=ts, new=True)
            entity.first_seen, entity.last_seen = min(entity.first_seen, ts), max(entity.last_seen, ts)
            entity.items += 1
            for key in keys:
                link = self.links.get((kind, eid, key))
                if link is None:
                    link = self.links[(kind, eid, key)] = _Counted(ts, ts, new=True)
                link.see(ts, item.flagged)
            if item.flagged:
                self._flag(entity, item, ts)
        if item.flagged and item.account_id:
            linkable = [k for k in keys if k not in self.r.ignore_handles]
            if linkable:
                self._link(self.entities[("account", item.account_id)], linkable, item, ts)

    def _flag(self, entity: EntityState, item: ScoredItem, ts: float) -> None:
        r = self.r
        entity.flagged += 1
        entity.labels.update(item.labels)
        # risk: decay to this item's time, then add its score (an older item adds its score decayed instead)
        if ts >= entity.risk_ts:
            before = r.decay(entity.risk, ts - entity.risk_ts)
            entity.risk, entity.risk_ts = before + item.fraud_score, ts
        else:
            before = entity.risk
            entity.risk += r.decay(item.fraud_score, entity.risk_ts - ts)
        # flagged in window: the last N flagged times are enough to tell when the N-th falls inside it. Counted in
        # the window that ends at the newest flagged time, this item's or one seen before it: an item that arrives
        # late (another replica, a retry, a resumed run) still completes the window it belongs to
        newest = max(ts, entity.recent_flags[-1]) if entity.recent_flags else ts
        in_window = lambda: sum(newest - r.window_s < t <= newest for t in entity.recent_flags)  # noqa: E731
        count_before = in_window()
        bisect.insort(entity.recent_flags, ts)
        del entity.recent_flags[: -r.flagged_in_window]
        count_after = in_window()
        name = f"{entity.kind} {entity.id}"
        if count_before < r.flagged_in_window <= count_after:
            self._alert(
                "flagged_in_window",
                entity,
                item,
                ts,
                count_after,
                r.flagged_in_window,
                f"{name}: {count_after} flagged items within {r.window_s / HOUR:g} h (threshold {r.flagged_in_window})",
            )
        if before < r.risk <= entity.risk:
            self._alert(
                "risk",
                entity,
                item,
                ts,
                round(entity.risk, 4),
                r.risk,
                f"{name}: risk {entity.risk:.2f} reached the threshold {r.risk:g}",
            )
        self.flag_rows.append(
            {
                "entity_kind": entity.kind,
                "entity_id": entity.id,
                "item_id": item.item_id,
                "source": item.source,
                "ts": ts,
                "fraud_score": item.fraud_score,
                "decision": item.decision,
                "labels": json.dumps(list(item.labels)),
                "handles": json.dumps([handle_key(*h) for h in item.handles], ensure_ascii=False),
            }
        )

    def _alert(
        self,
        rule: str,
        entity: EntityState,
        item: ScoredItem,
        ts: float,
        value: float,
        threshold: float,
        message: str,
    ) -> None:
        self.alerts.append(
            Alert(
                rule=rule,
                ts=ts,
                value=value,
                threshold=threshold,
                message=message,
                entity_kind=entity.kind,
                entity_id=entity.id,
                item_id=item.item_id,
                cluster_id=self._find(entity.cluster_id) if entity.cluster_id else None,
                detail={
                    "labels": dict(entity.labels.most_common()),
                    "flagged": entity.flagged,
                    "items": entity.items,
                    "handles": [handle_key(*h) for h in item.handles],
                },
            )
        )

    # -- clusters: union–find over accounts and the handles they push ----------------------------------------------
    def _find(self, cluster_id: int) -> int:
        while cluster_id in self.merged:
            cluster_id = self.merged[cluster_id]
        return cluster_id

    def _link(self, account: EntityState, keys: list[str], item: ScoredItem, ts: float) -> None:
        roots = {self._find(account.cluster_id)} if account.cluster_id else set()
        roots |= {self._find(self.handles[k].cluster_id) for k in keys if self.handles[k].cluster_id}
        if not roots:
            new_id = self.conn.execute(
                self.s.clusters_t.insert()
                .values(accounts=0, handles=0, created=ts, updated=ts)
                .returning(self.s.clusters_t.c.id)
            ).scalar_one()
            self.clusters[new_id] = {"accounts": 0, "handles": 0, "updated": ts, "dirty": True}
            roots = {new_id}
        size_before = max(self.clusters[c]["accounts"] for c in roots)
        # the biggest cluster keeps its id: a merge relabels the smaller ones, O(n log n) relabels overall
        root = max(roots, key=lambda c: (self.clusters[c]["accounts"], -c))
        target = self.clusters[root]
        for other in roots - {root}:
            self.merged[other] = root
            target["accounts"] += self.clusters[other]["accounts"]
            target["handles"] += self.clusters[other]["handles"]
        if account.cluster_id is None:
            account.cluster_id = root
            target["accounts"] += 1
        for key in keys:
            if self.handles[key].cluster_id is None:
                self.handles[key].cluster_id = root
                target["handles"] += 1
        target["updated"], target["dirty"] = max(target["updated"], ts), True
        if size_before < self.r.cluster_accounts <= target["accounts"]:
            self.alerts.append(
                Alert(
                    rule="cluster_size",
                    ts=ts,
                    value=target["accounts"],
                    threshold=self.r.cluster_accounts,
                    message=f"campaign cluster #{root}: {target['accounts']} accounts push the same handles "
                    f"({', '.join(keys[:3])}) (threshold {self.r.cluster_accounts})",
                    entity_kind="account",
                    entity_id=account.id,
                    cluster_id=root,
                    item_id=item.item_id,
                    detail={"accounts": target["accounts"], "handles": keys},
                )
            )

    # -- write ------------------------------------------------------------------------------------------------------
    def _write(self) -> None:
        s, conn = self.s, self.conn
        e, h, eh, c = s.entities, s.handles, s.entity_handles, s.clusters_t
        for other in self.merged:  # rows this batch did not load still point at merged clusters
            root = self._find(other)
            conn.execute(
                e.update().where(e.c.kind == "account", e.c.cluster_id == other).values(cluster_id=root)
            )
            conn.execute(h.update().where(h.c.cluster_id == other).values(cluster_id=root))
        if self.merged:
            conn.execute(c.delete().where(c.c.id.in_(list(self.merged))))
        dirty = [
            {"_id": cid, "accounts": x["accounts"], "handles": x["handles"], "updated": x["updated"]}
            for cid, x in self.clusters.items()
            if x["dirty"] and cid not in self.merged
        ]
        if dirty:
            conn.execute(c.update().where(c.c.id == sa.bindparam("_id")), dirty)

        def entity_row(x: EntityState) -> dict:
            return {
                "first_seen": x.first_seen,
                "last_seen": x.last_seen,
                "items": x.items,
                "flagged": x.flagged,
                "risk": x.risk,
                "risk_ts": x.risk_ts,
                "labels": json.dumps(dict(x.labels)),
                "recent_flags": json.dumps(x.recent_flags),
                "cluster_id": self._find(x.cluster_id) if x.cluster_id else None,
            }

        new = [{"kind": x.kind, "id": x.id, **entity_row(x)} for x in self.entities.values() if x.new]
        old = [{"_kind": x.kind, "_id": x.id, **entity_row(x)} for x in self.entities.values() if not x.new]
        if new:
            conn.execute(e.insert(), new)
        if old:
            conn.execute(
                e.update().where(e.c.kind == sa.bindparam("_kind"), e.c.id == sa.bindparam("_id")), old
            )

        def counted_row(x: _Counted) -> dict:
            return {
                "first_seen": x.first_seen,
                "last_seen": x.last_seen,
                "items": x.items,
                "flagged": x.flagged,
            }

        new_h = [
            {
                "handle": k,
                "kind": k.split(":", 1)[0],
                "value": k.split(":", 1)[1],
                **counted_row(x),
                "cluster_id": self._find(x.cluster_id) if x.cluster_id else None,
            }
            for k, x in self.handles.items()
            if x.new
        ]
        old_h = [
            {"_handle": k, **counted_row(x), "cluster_id": self._find(x.cluster_id) if x.cluster_id else None}
            for k, x in self.handles.items()
            if not x.new
        ]
        if new_h:
            conn.execute(h.insert(), new_h)
        if old_h:
            conn.execute(h.update().where(h.c.handle == sa.bindparam("_handle")), old_h)
        new_l = [
            {"entity_kind": k[0], "entity_id": k[1], "handle": k[2], **counted_row(x)}
            for k, x in self.links.items()
            if x.new
        ]
        old_l = [
            {"_kind": k[0], "_id": k[1], "_handle": k[2], **counted_row(x)}
            for k, x in self.links.items()
            if not x.new
        ]
        if new_l:
            conn.execute(eh.insert(), new_l)
        if old_l:
            conn.execute(
                eh.update().where(
                    eh.c.entity_kind == sa.bindparam("_kind"),
                    eh.c.entity_id == sa.bindparam("_id"),
                    eh.c.handle == sa.bindparam("_handle"),
                ),
                old_l,
            )
        if self.flag_rows:
            conn.execute(s.flagged_items.insert(), self.flag_rows)


def _named(item: ScoredItem) -> list[tuple[str, str]]:
    return [(kind, eid) for kind, eid in (("account", item.account_id), ("group", item.group_id)) if eid]
