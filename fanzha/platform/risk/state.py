"""Account and group early warning: risk state, campaign clusters and alerts from every scored item.

    from fanzha.serving.risk import RiskStore, ScoredItem
    store = RiskStore()                                   # FANZHA_DATABASE_URL or the default SQLite file
    alerts = store.ingest_many([ScoredItem.from_verdict(verdict.to_dict(), account_id="u42", group_id="g7")])
    store.entity("account", "u42")                        # risk, reasons, handles, cluster, recent items
    store.clusters()                                      # accounts linked by the handles they push
    store.alerts(after_id=0)                              # the early-warning log

Every scored item that carries an account_id and/or group_id updates that account's and group's state:
items seen and flagged (a `review` or `block` decision), labels seen, the contact handles it carried (QQ
numbers and groups, WeChat IDs, phone numbers, URLs, QR payloads) and a time-decayed risk:

    risk(t) = Σ fraud_score(i) · 2^(−(t − t_i) / half-life)      over flagged items i

so risk ≈ "how many sure lures lately": 3.0 is three certain ones just now, or six a half-life ago.

Campaign clusters: accounts are linked through a handle they BOTH pushed in FLAGGED items. Benign items never
link (an anti-fraud warning that quotes the scam's QQ group must not join the scammers), and handles listed
in FANZHA_RISK_IGNORE_HANDLES (an official customer-service number, say) never link. Clusters are kept as a
persisted union–find: a cluster id per account and per handle; a merge relabels the smaller cluster.

Alerts are edge-triggered and synchronous: the item that takes a value across its threshold raises the
alert, returned by `ingest_many` (and so in that item's verdict), stored, and POSTed to the webhook.

| rule | fires when | default (env) |
|---|---|---|
| `flagged_in_window` | an account/group reaches N flagged items within the window | 5 in 24 h (FANZHA_ALERT_FLAGGED, FANZHA_ALERT_WINDOW_HOURS) |
| `risk` | its decayed risk reaches R | 3.0, half-life 24 h (FANZHA_ALERT_RISK, FANZHA_RISK_HALF_LIFE_HOURS) |
| `cluster_size` | a campaign cluster reaches C accounts | 5 (FANZHA_ALERT_CLUSTER_ACCOUNTS) |
| `report_confirmed` | a moderator confirms a report against an account/group | always |

Ingesting a batch is one transaction with a fixed number of statements (rows are read once, updated in
memory item by item, and written with executemany), so throughput does not depend on round trips per item.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fanzha.models.errors import InputError
from fanzha.models.labels import DECISIONS, LABELS

from .database import Database
from .webhook import AlertWebhook

log = logging.getLogger("fanzha.risk")

ENTITY_KINDS = ("account", "group")
HANDLE_KINDS = ("qq", "qq_group", "wechat", "phone", "url", "qr")
MAX_ID_CHARS = 256
MAX_HANDLE_CHARS = 512
MAX_HANDLES_PER_ITEM = 32  # a 200,000-character post can carry thousands of numbers: the first 32 identify it
_CHUNK = 300  # rows per IN (…) list: far below SQLite's bound-parameter limit
HOUR = 3600.0


class UnknownEntity(LookupError):
    """No scored item has named this account, group or cluster (HTTP 404)."""


def canonical_handle(kind: str, value: str) -> tuple[str, str] | None:
    """The handle an evidence item names, in one spelling; None for evidence that is not a handle.

    URLs lose their scheme, `www.` and trailing slash (http://www.x.cn/ = x.cn); a QR payload that is a link
    is a URL; a WeChat ID that is a mobile number is that phone number.
    """
    value = value.strip()
    if not value:
        return None
    if kind in ("qr", "qr_group_invite"):
        low = value.lower()
        kind = "url" if low.startswith(("http://", "https://", "www.")) else "qr"
    if kind == "url":
        value = value.split("://", 1)[1] if "://" in value[:10] else value
        host, slash, rest = value.partition("/")
        host = host.lower().removeprefix("www.")
        value = (host + slash + rest).rstrip("/")
    elif kind == "wechat" and value.isdigit() and len(value) == 11 and value.startswith("1"):
        kind = "phone"
    elif kind in ("qq", "qq_group", "phone"):
        value = "".join(c for c in value if c.isdigit()) or value
    elif kind == "wechat":
        value = value.lower()
    elif kind != "qr":
        return None
    return (kind, value[:MAX_HANDLE_CHARS]) if value else None


def handle_key(kind: str, value: str) -> str:
    return f"{kind}:{value}"


@dataclass(frozen=True)
class RiskRules:
    """Thresholds of the early-warning rules and the risk half-life; `from_env` reads the FANZHA_* overrides."""

    half_life_s: float = 24 * HOUR
    window_s: float = 24 * HOUR
    flagged_in_window: int = 5
    risk: float = 3.0
    cluster_accounts: int = 5
    retention_s: float = 90 * 24 * HOUR  # flagged-item records older than this are pruned
    ignore_handles: frozenset[str] = frozenset()  # "kind:value" handles that never link accounts

    def __post_init__(self) -> None:
        if min(self.half_life_s, self.window_s, self.risk, self.retention_s) <= 0:
            raise ValueError(f"risk half-life, window, risk threshold and retention must be positive: {self}")
        if self.flagged_in_window < 1 or self.cluster_accounts < 2:
            raise ValueError("the flagged-items threshold must be ≥ 1 and the cluster threshold ≥ 2 accounts")

    @classmethod
    def from_env(cls) -> RiskRules:
        env = os.environ.get
        ignore = set()
        for raw in env("FANZHA_RISK_IGNORE_HANDLES", "").split(","):
            kind, _, value = raw.strip().partition(":")
            if raw.strip():
                canonical = canonical_handle(kind, value)
                if canonical is None:
                    raise ValueError(f"FANZHA_RISK_IGNORE_HANDLES: {raw.strip()!r} is not kind:value with kind in {HANDLE_KINDS}")
                ignore.add(handle_key(*canonical))
        return cls(
            half_life_s=float(env("FANZHA_RISK_HALF_LIFE_HOURS", 24)) * HOUR,
            window_s=float(env("FANZHA_ALERT_WINDOW_HOURS", 24)) * HOUR,
            flagged_in_window=int(env("FANZHA_ALERT_FLAGGED", 5)),
            risk=float(env("FANZHA_ALERT_RISK", 3.0)),
            cluster_accounts=int(env("FANZHA_ALERT_CLUSTER_ACCOUNTS", 5)),
            retention_s=float(env("FANZHA_RISK_RETENTION_DAYS", 90)) * 24 * HOUR,
            ignore_handles=frozenset(ignore),
        )

    def decay(self, value: float, seconds: float) -> float:
        return value * 0.5 ** (seconds / self.half_life_s) if seconds > 0 else value


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
    def from_verdict(cls, verdict: dict, *, account_id: str | None = None, group_id: str | None = None,
                     item_id: str | None = None, source: str | None = None, ts: float | None = None) -> ScoredItem:
        """From a verdict dict (Verdict.to_dict(), a service answer, a batch output record). Ids not given
        are taken from the dict itself (`account_id`, `group_id`, `id`, `source`)."""
        handles: dict[str, tuple[str, str]] = {}
        for e in verdict.get("evidence") or ():
            canonical = canonical_handle(str(e.get("kind", "")), str(e.get("value", "")))
            if canonical:
                handles.setdefault(handle_key(*canonical), canonical)
        return cls(fraud_score=float(verdict["fraud_score"]), decision=verdict["decision"],
                   labels=tuple(verdict.get("labels") or ()), handles=tuple(handles.values())[:MAX_HANDLES_PER_ITEM],
                   account_id=account_id if account_id is not None else verdict.get("account_id"),
                   group_id=group_id if group_id is not None else verdict.get("group_id"),
                   item_id=item_id if item_id is not None else verdict.get("id"),
                   source=source if source is not None else verdict.get("source"), ts=ts)

    @property
    def flagged(self) -> bool:
        return self.decision != "pass"

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
        unknown = [label for label in self.labels if label not in LABELS]
        if unknown:
            raise InputError(f"unknown labels {unknown}")
        if len(self.handles) > MAX_HANDLES_PER_ITEM:  # from_verdict keeps the first ones; a caller's own list is refused
            raise InputError(f"{len(self.handles)} handles; at most {MAX_HANDLES_PER_ITEM} per item")
        for kind, value in self.handles:
            if kind not in HANDLE_KINDS or not value or len(value) > MAX_HANDLE_CHARS:
                raise InputError(f"bad handle {kind}:{value[:40]}: kind in {HANDLE_KINDS}, 1–{MAX_HANDLE_CHARS} characters")


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
class _Entity:  # one row of `entities`, updated in memory during a batch
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
    def from_row(cls, row) -> _Entity:
        return cls(kind=row.kind, id=row.id, first_seen=row.first_seen, last_seen=row.last_seen, items=row.items,
                   flagged=row.flagged, risk=row.risk, risk_ts=row.risk_ts, labels=Counter(json.loads(row.labels)),
                   recent_flags=json.loads(row.recent_flags), cluster_id=row.cluster_id)


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


class RiskStore:
    def __init__(self, db: Database | str | None = None, rules: RiskRules | None = None,
                 webhook: AlertWebhook | None = None, clock=time.time) -> None:
        self.db = db if isinstance(db, Database) else Database(db)
        self.rules = rules or RiskRules()
        self.webhook = webhook
        self.clock = clock
        t = self.db.tables
        self.entities, self.handles, self.entity_handles = t["entities"], t["handles"], t["entity_handles"]
        self.clusters_t, self.flagged_items, self.alerts_t = t["clusters"], t["flagged_items"], t["alerts"]
        self._last_prune = 0.0
        # the reads of every ingest, built once (expanding IN lists): statement construction is most of the
        # cost of a one-item ingest
        e, h, eh, c = self.entities, self.handles, self.entity_handles, self.clusters_t
        ids = sa.bindparam("ids", expanding=True)
        self._load_entities = sa.select(e).where(e.c.kind == sa.bindparam("kind"), e.c.id.in_(ids))
        self._load_handles = sa.select(h).where(h.c.handle.in_(ids))
        self._load_links = sa.select(eh).where(sa.tuple_(eh.c.entity_kind, eh.c.entity_id, eh.c.handle).in_(ids))
        self._load_clusters = sa.select(c).where(c.c.id.in_(ids))

    @classmethod
    def from_env(cls, db: Database | None = None) -> RiskStore:
        return cls(db, rules=RiskRules.from_env(), webhook=AlertWebhook.from_env())

    def close(self) -> None:
        if self.webhook:
            self.webhook.close()
        self.db.close()

    # -- ingest -------------------------------------------------------------------------------------------------
    def ingest(self, item: ScoredItem) -> list[Alert]:
        return self.ingest_many([item])

    def ingest_many(self, items: Iterable[ScoredItem]) -> list[Alert]:
        """Update the state of every account and group the items name, in order, in one transaction.

        Returns the alerts raised, each naming the item that crossed its threshold (also stored and sent to
        the webhook). Items with neither account_id nor group_id are skipped. Raises InputError for a bad item
        (nothing of the batch is written then).
        """
        indexed = [(i, item) for i, item in enumerate(items) if item.account_id or item.group_id]
        for _, item in indexed:
            item.check()
        if not indexed:
            return []
        now = self.clock()
        with self.db.write(lock="ingest") as conn:
            alerts = _Batch(self, conn, now).run(indexed)
            if now - self._last_prune > HOUR:
                self._prune(conn, now)
        for alert in alerts:
            self._notify(alert)
        return alerts

    def ingest_verdicts(self, records: Iterable[dict], batch: int = 1000) -> list[Alert]:
        """Verdict dicts as a batch run writes them (`id`, `account_id`, `group_id`, `source`, `fraud_score`,
        `decision`, `labels`, `evidence`), `batch` per transaction; error records and records that name no
        account or group are skipped. The hook for archive scoring: every scored item updates the state."""
        alerts: list[Alert] = []
        pending: list[ScoredItem] = []
        for record in records:
            if record.get("fraud_score") is None or not (record.get("account_id") or record.get("group_id")):
                continue
            pending.append(ScoredItem.from_verdict(record, ts=record.get("ts")))
            if len(pending) >= batch:
                alerts += self.ingest_many(pending)
                pending = []
        return alerts + (self.ingest_many(pending) if pending else [])

    def record_alert(self, alert: Alert) -> Alert:
        """Store an alert raised outside ingestion (a confirmed report) and send it to the webhook."""
        with self.db.write() as conn:
            self._insert_alert(conn, alert)
        self._notify(alert)
        return alert

    def _insert_alert(self, conn: Connection, alert: Alert) -> None:
        row = {k: v for k, v in alert.to_dict().items() if k != "id"}
        row["detail"] = json.dumps(row["detail"], ensure_ascii=False)
        alert.id = conn.execute(self.alerts_t.insert().values(**row).returning(self.alerts_t.c.id)).scalar_one()

    def _notify(self, alert: Alert) -> None:
        log.info("alert %s: %s", alert.id, alert.message)
        if self.webhook:
            self.webhook.send(alert.to_dict())

    def _prune(self, conn: Connection, now: float) -> None:
        self._last_prune = now
        gone = conn.execute(self.flagged_items.delete().where(self.flagged_items.c.ts < now - self.rules.retention_s)).rowcount
        if gone:
            log.info("pruned %d flagged-item records older than %.0f days", gone, self.rules.retention_s / 86400)

    # -- queries ------------------------------------------------------------------------------------------------
    def entity(self, kind: str, entity_id: str, recent: int = 10) -> dict:
        """An account's or group's risk now, with its reasons; UnknownEntity when nothing named it yet."""
        if kind not in ENTITY_KINDS:
            raise ValueError(f"kind must be one of {ENTITY_KINDS}")
        e, fi, r = self.entities, self.flagged_items, self.rules
        now = self.clock()
        with self.db.read() as conn:
            row = conn.execute(sa.select(e).where(e.c.kind == kind, e.c.id == entity_id)).first()
            if row is None:
                raise UnknownEntity(f"unknown {kind} {entity_id!r}: no scored item has named it")
            state = _Entity.from_row(row)
            where = (fi.c.entity_kind == kind) & (fi.c.entity_id == entity_id)
            in_window = conn.execute(sa.select(sa.func.count()).where(where, fi.c.ts > now - r.window_s)).scalar_one()
            recent_items = [self._flagged_dict(x) for x in conn.execute(
                sa.select(fi).where(where).order_by(fi.c.ts.desc(), fi.c.id.desc()).limit(recent))]
            handles = self._entity_handles(conn, kind, entity_id)
            cluster = self._cluster(conn, state.cluster_id, members=50) if state.cluster_id else None
            a = self.alerts_t
            alerts = [self._alert_dict(x) for x in conn.execute(
                sa.select(a).where(a.c.entity_kind == kind, a.c.entity_id == entity_id).order_by(a.c.id.desc()).limit(recent))]
            reports = self._report_counts(conn, kind, entity_id)
        risk = round(r.decay(state.risk, now - state.risk_ts), 4)
        level_high = (in_window >= r.flagged_in_window or risk >= r.risk or reports.get("confirmed", 0) > 0
                      or (cluster is not None and cluster["accounts"] >= r.cluster_accounts))
        reasons = _reasons(r, in_window, risk, state, handles, cluster, reports)
        return {
            "kind": kind, "id": entity_id,
            "level": "high" if level_high else "elevated" if state.flagged or reports else "low",
            "risk": risk, "items": state.items, "flagged": state.flagged, "flagged_in_window": in_window,
            "window_hours": r.window_s / HOUR, "first_seen": state.first_seen, "last_seen": state.last_seen,
            "labels": dict(state.labels.most_common()), "reasons": reasons, "handles": handles, "cluster": cluster,
            "recent_flagged": recent_items, "alerts": alerts, "reports": reports,
        }

    def clusters(self, min_accounts: int = 2, limit: int = 50, members: int = 100) -> list[dict]:
        """Campaign clusters with at least `min_accounts` accounts, largest first."""
        c = self.clusters_t
        with self.db.read() as conn:
            ids = conn.execute(sa.select(c.c.id).where(c.c.accounts >= min_accounts)
                               .order_by(c.c.accounts.desc(), c.c.updated.desc()).limit(limit)).scalars().all()
            return [self._cluster(conn, cid, members=members) for cid in ids]

    def cluster(self, cluster_id: int, members: int = 1000) -> dict:
        with self.db.read() as conn:
            found = self._cluster(conn, cluster_id, members=members)
        if found is None:
            raise UnknownEntity(f"unknown cluster {cluster_id}")
        return found

    def alerts(self, after_id: int = 0, limit: int = 100, rule: str | None = None, entity_kind: str | None = None,
               entity_id: str | None = None) -> list[dict]:
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
        rows = conn.execute(sa.select(eh.c.handle, h.c.kind, h.c.value, eh.c["items"], eh.c.flagged, eh.c.first_seen, eh.c.last_seen)
                            .join(h, h.c.handle == eh.c.handle)
                            .where(eh.c.entity_kind == kind, eh.c.entity_id == entity_id)
                            .order_by(eh.c.flagged.desc(), eh.c["items"].desc()).limit(limit)).all()
        pushers = self._pushers(conn, [x.handle for x in rows])
        return [{"kind": x.kind, "value": x.value, "items": x.items, "flagged": x.flagged, "accounts": pushers.get(x.handle, 0),
                 "first_seen": x.first_seen, "last_seen": x.last_seen} for x in rows]

    def _pushers(self, conn: Connection, keys: list[str]) -> dict[str, int]:
        """handle → how many accounts pushed it in flagged items."""
        eh = self.entity_handles
        out: dict[str, int] = {}
        for chunk in _chunks(keys):
            out.update(conn.execute(sa.select(eh.c.handle, sa.func.count()).where(
                eh.c.handle.in_(chunk), eh.c.entity_kind == "account", eh.c.flagged > 0).group_by(eh.c.handle)).all())
        return out

    def _cluster(self, conn: Connection, cluster_id: int, members: int) -> dict | None:
        c, e, h = self.clusters_t, self.entities, self.handles
        row = conn.execute(sa.select(c).where(c.c.id == cluster_id)).first()
        if row is None:
            return None
        account = (e.c.kind == "account") & (e.c.cluster_id == cluster_id)
        member_ids = conn.execute(sa.select(e.c.id).where(account).order_by(e.c.first_seen).limit(members)).scalars().all()
        flagged = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(e.c.flagged), 0)).where(account)).scalar_one()
        handle_rows = conn.execute(sa.select(h.c.handle, h.c.kind, h.c.value, h.c.flagged).where(h.c.cluster_id == cluster_id)
                                   .order_by(h.c.flagged.desc()).limit(50)).all()
        pushers = self._pushers(conn, [x.handle for x in handle_rows])
        return {"id": row.id, "accounts": row.accounts, "handle_count": row.handles, "flagged_items": int(flagged),
                "created": row.created, "updated": row.updated, "members": list(member_ids),
                "handles": sorted(({"kind": x.kind, "value": x.value, "flagged": x.flagged, "accounts": pushers.get(x.handle, 0)}
                                   for x in handle_rows), key=lambda d: (-d["accounts"], -d["flagged"]))}

    def _report_counts(self, conn: Connection, kind: str, entity_id: str) -> dict[str, int]:
        reports = self.db.tables.get("reports")
        if reports is None:
            return {}
        column = reports.c.target_account_id if kind == "account" else reports.c.target_group_id
        return dict(conn.execute(sa.select(reports.c.status, sa.func.count()).where(column == entity_id)
                                 .group_by(reports.c.status)).all())

    @staticmethod
    def _flagged_dict(row) -> dict:
        return {"item_id": row.item_id, "ts": row.ts, "fraud_score": row.fraud_score, "decision": row.decision,
                "labels": json.loads(row.labels), "handles": json.loads(row.handles), "source": row.source}

    @staticmethod
    def _alert_dict(row) -> dict:
        d = dict(row._mapping)
        d["detail"] = json.loads(d["detail"])
        return d


def _reasons(r: RiskRules, in_window: int, risk: float, state: _Entity, handles: list[dict], cluster: dict | None,
             reports: dict[str, int]) -> list[str]:
    reasons = []
    if in_window:
        reasons.append(f"{in_window} flagged item{'s' * (in_window != 1)} in the last {r.window_s / HOUR:g} h "
                       f"(alert at {r.flagged_in_window})")
    if risk >= 0.01:
        reasons.append(f"risk {risk:.2f}: decayed sum of flagged fraud scores, half-life {r.half_life_s / HOUR:g} h (alert at {r.risk:g})")
    if state.labels:
        reasons.append("labels: " + ", ".join(f"{label} ×{n}" for label, n in state.labels.most_common()))
    pushed = [h for h in handles if h["flagged"]]
    if pushed:
        reasons.append("handles pushed in flagged items: " + ", ".join(
            f"{h['kind']}:{h['value']}" + (f" (pushed by {h['accounts']} accounts)" if h["accounts"] > 1 else "") for h in pushed[:5]))
    if cluster and cluster["accounts"] > 1:
        reasons.append(f"campaign cluster #{cluster['id']}: {cluster['accounts']} accounts linked by "
                       f"{cluster['handle_count']} shared handle{'s' * (cluster['handle_count'] != 1)} (alert at {r.cluster_accounts})")
    if reports:
        reasons.append(f"{sum(reports.values())} fraud report(s): " + ", ".join(f"{n} {s}" for s, n in sorted(reports.items())))
    return reasons


def _chunks(seq: Sequence, n: int = _CHUNK) -> Iterable[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


class _Batch:
    """One ingest transaction: read the rows the batch touches, apply the items in order, write back."""

    def __init__(self, store: RiskStore, conn: Connection, now: float) -> None:
        self.s, self.conn, self.now, self.r = store, conn, now, store.rules
        self.entities: dict[tuple[str, str], _Entity] = {}
        self.handles: dict[str, _Counted] = {}
        self.links: dict[tuple[str, str, str], _Counted] = {}
        self.clusters: dict[int, dict] = {}
        self.merged: dict[int, int] = {}  # cluster id → the cluster it was merged into (within this batch)
        self.flag_rows: list[dict] = []
        self.alerts: list[Alert] = []

    def run(self, indexed: list[tuple[int, ScoredItem]]) -> list[Alert]:
        self._load([item for _, item in indexed])
        for index, item in indexed:
            raised = len(self.alerts)
            self._apply(item)
            for alert in self.alerts[raised:]:
                alert.item_index = index
        self._write()
        for alert in self.alerts:
            self.s._insert_alert(self.conn, alert)
        return self.alerts

    # -- read ----------------------------------------------------------------------------------------------------
    def _load(self, items: list[ScoredItem]) -> None:
        s, conn = self.s, self.conn
        by_kind: dict[str, set[str]] = {"account": set(), "group": set()}
        handle_keys: set[str] = set()
        pairs: set[tuple[str, str, str]] = set()
        for item in items:
            keys = [handle_key(*h) for h in item.handles]
            handle_keys.update(keys)
            for kind, eid in _named(item):
                by_kind[kind].add(eid)
                pairs.update((kind, eid, k) for k in keys)
        for kind, ids in by_kind.items():
            for chunk in _chunks(sorted(ids)):
                for row in conn.execute(s._load_entities, {"kind": kind, "ids": chunk}):
                    self.entities[(kind, row.id)] = _Entity.from_row(row)
        for chunk in _chunks(sorted(handle_keys)):
            for row in conn.execute(s._load_handles, {"ids": chunk}):
                self.handles[row.handle] = _Counted(row.first_seen, row.last_seen, row.items, row.flagged, row.cluster_id)
        for chunk in _chunks(sorted(pairs), 200):
            for row in conn.execute(s._load_links, {"ids": chunk}):
                self.links[(row.entity_kind, row.entity_id, row.handle)] = _Counted(row.first_seen, row.last_seen, row.items, row.flagged)
        cluster_ids = {x.cluster_id for x in self.entities.values()} | {x.cluster_id for x in self.handles.values()}
        cluster_ids.discard(None)
        for chunk in _chunks(sorted(cluster_ids)):
            for row in conn.execute(s._load_clusters, {"ids": chunk}):
                self.clusters[row.id] = {"accounts": row.accounts, "handles": row.handles, "updated": row.updated, "dirty": False}

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
                entity = self.entities[(kind, eid)] = _Entity(kind, eid, ts, ts, risk_ts=ts, new=True)
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

    def _flag(self, entity: _Entity, item: ScoredItem, ts: float) -> None:
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
        # flagged in window: the last N flagged times are enough to tell when the N-th falls inside it
        in_window = lambda: sum(ts - r.window_s < t <= ts for t in entity.recent_flags)  # noqa: E731
        count_before = in_window()
        bisect.insort(entity.recent_flags, ts)
        del entity.recent_flags[: -r.flagged_in_window]
        count_after = in_window()
        name = f"{entity.kind} {entity.id}"
        if count_before < r.flagged_in_window <= count_after:
            self._alert("flagged_in_window", entity, item, ts, count_after, r.flagged_in_window,
                        f"{name}: {count_after} flagged items within {r.window_s / HOUR:g} h (threshold {r.flagged_in_window})")
        if before < r.risk <= entity.risk:
            self._alert("risk", entity, item, ts, round(entity.risk, 4), r.risk,
                        f"{name}: risk {entity.risk:.2f} reached the threshold {r.risk:g}")
        self.flag_rows.append({"entity_kind": entity.kind, "entity_id": entity.id, "item_id": item.item_id,
                               "source": item.source, "ts": ts, "fraud_score": item.fraud_score, "decision": item.decision,
                               "labels": json.dumps(list(item.labels)),
                               "handles": json.dumps([handle_key(*h) for h in item.handles], ensure_ascii=False)})

    def _alert(self, rule: str, entity: _Entity, item: ScoredItem, ts: float, value: float, threshold: float, message: str) -> None:
        self.alerts.append(Alert(rule=rule, ts=ts, value=value, threshold=threshold, message=message,
                                 entity_kind=entity.kind, entity_id=entity.id, item_id=item.item_id,
                                 cluster_id=self._find(entity.cluster_id) if entity.cluster_id else None,
                                 detail={"labels": dict(entity.labels.most_common()), "flagged": entity.flagged,
                                         "items": entity.items, "handles": [handle_key(*h) for h in item.handles]}))

    # -- clusters: union–find over accounts and the handles they push ----------------------------------------------
    def _find(self, cluster_id: int) -> int:
        while cluster_id in self.merged:
            cluster_id = self.merged[cluster_id]
        return cluster_id

    def _link(self, account: _Entity, keys: list[str], item: ScoredItem, ts: float) -> None:
        roots = {self._find(account.cluster_id)} if account.cluster_id else set()
        roots |= {self._find(self.handles[k].cluster_id) for k in keys if self.handles[k].cluster_id}
        if not roots:
            new_id = self.conn.execute(self.s.clusters_t.insert().values(accounts=0, handles=0, created=ts, updated=ts)
                                       .returning(self.s.clusters_t.c.id)).scalar_one()
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
            self.alerts.append(Alert(
                rule="cluster_size", ts=ts, value=target["accounts"], threshold=self.r.cluster_accounts,
                message=f"campaign cluster #{root}: {target['accounts']} accounts push the same handles "
                        f"({', '.join(keys[:3])}) (threshold {self.r.cluster_accounts})",
                entity_kind="account", entity_id=account.id, cluster_id=root, item_id=item.item_id,
                detail={"accounts": target["accounts"], "handles": keys}))

    # -- write ------------------------------------------------------------------------------------------------------
    def _write(self) -> None:
        s, conn = self.s, self.conn
        e, h, eh, c = s.entities, s.handles, s.entity_handles, s.clusters_t
        for other in self.merged:  # rows this batch did not load still point at merged clusters
            root = self._find(other)
            conn.execute(e.update().where(e.c.kind == "account", e.c.cluster_id == other).values(cluster_id=root))
            conn.execute(h.update().where(h.c.cluster_id == other).values(cluster_id=root))
        if self.merged:
            conn.execute(c.delete().where(c.c.id.in_(list(self.merged))))
        dirty = [{"_id": cid, "accounts": x["accounts"], "handles": x["handles"], "updated": x["updated"]}
                 for cid, x in self.clusters.items() if x["dirty"] and cid not in self.merged]
        if dirty:
            conn.execute(c.update().where(c.c.id == sa.bindparam("_id")), dirty)

        def entity_row(x: _Entity) -> dict:
            return {"first_seen": x.first_seen, "last_seen": x.last_seen, "items": x.items, "flagged": x.flagged,
                    "risk": x.risk, "risk_ts": x.risk_ts, "labels": json.dumps(dict(x.labels)),
                    "recent_flags": json.dumps(x.recent_flags), "cluster_id": self._find(x.cluster_id) if x.cluster_id else None}

        new = [{"kind": x.kind, "id": x.id, **entity_row(x)} for x in self.entities.values() if x.new]
        old = [{"_kind": x.kind, "_id": x.id, **entity_row(x)} for x in self.entities.values() if not x.new]
        if new:
            conn.execute(e.insert(), new)
        if old:
            conn.execute(e.update().where(e.c.kind == sa.bindparam("_kind"), e.c.id == sa.bindparam("_id")), old)

        def counted_row(x: _Counted) -> dict:
            return {"first_seen": x.first_seen, "last_seen": x.last_seen, "items": x.items, "flagged": x.flagged}

        new_h = [{"handle": k, "kind": k.split(":", 1)[0], "value": k.split(":", 1)[1], **counted_row(x),
                  "cluster_id": self._find(x.cluster_id) if x.cluster_id else None} for k, x in self.handles.items() if x.new]
        old_h = [{"_handle": k, **counted_row(x), "cluster_id": self._find(x.cluster_id) if x.cluster_id else None}
                 for k, x in self.handles.items() if not x.new]
        if new_h:
            conn.execute(h.insert(), new_h)
        if old_h:
            conn.execute(h.update().where(h.c.handle == sa.bindparam("_handle")), old_h)
        new_l = [{"entity_kind": k[0], "entity_id": k[1], "handle": k[2], **counted_row(x)} for k, x in self.links.items() if x.new]
        old_l = [{"_kind": k[0], "_id": k[1], "_handle": k[2], **counted_row(x)} for k, x in self.links.items() if not x.new]
        if new_l:
            conn.execute(eh.insert(), new_l)
        if old_l:
            conn.execute(eh.update().where(eh.c.entity_kind == sa.bindparam("_kind"), eh.c.entity_id == sa.bindparam("_id"),
                                           eh.c.handle == sa.bindparam("_handle")), old_l)
        if self.flag_rows:
            conn.execute(s.flagged_items.insert(), self.flag_rows)


def _named(item: ScoredItem) -> list[tuple[str, str]]:
    return [(kind, eid) for kind, eid in (("account", item.account_id), ("group", item.group_id)) if eid]
