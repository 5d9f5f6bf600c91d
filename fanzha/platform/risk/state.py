"""Account and group early warning: risk state, campaign clusters and alerts from every scored item.

    from fanzha.platform.risk import RiskState, ScoredItem
    state = RiskState()                                   # FANZHA_DATABASE_URL or the default SQLite file
    alerts = state.ingest_many([ScoredItem.from_verdict(verdict, account_id="u42", group_id="g7")])
    state.entity("account", "u42")                        # risk, reasons, handles, cluster, recent items
    state.clusters()                                      # accounts linked by the handles they push
    state.alerts(after_id=0)                              # the early-warning log

Every scored item that carries an account_id and/or group_id updates that account's and group's state:
items seen and flagged (a `review` or `block` decision), labels seen, the contact handles it carried (QQ
numbers and groups, WeChat IDs, phone numbers, URLs, QR payloads) and a time-decayed risk (rules.py).

The parts: `handles` (one spelling per contact handle), `rules` (thresholds, levels, reasons), `ingest` (the
write side, one transaction per batch) and `queries` (the read side). Alerts are stored, returned to the
caller whose item raised them, and POSTed to the webhook (webhook.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from ..database import Database
from ..webhook import AlertWebhook
from .ingest import Alert, Ingest, ScoredItem
from .queries import RiskQueries
from .rules import HOUR, RiskRules

log = logging.getLogger("fanzha.risk")


class RiskState:
    def __init__(
        self,
        db: Database | str | None = None,
        rules: RiskRules | None = None,
        webhook: AlertWebhook | None = None,
        clock=time.time,
    ) -> None:
        self.db = db if isinstance(db, Database) else Database(db)
        self.rules = rules or RiskRules()
        self.webhook = webhook
        self.clock = clock
        self._ingest = Ingest(self.db, self.rules)
        self._queries = RiskQueries(self.db, self.rules, lambda: self.clock())
        self.clusters_t = self._ingest.clusters_t
        self._last_prune = 0.0

    @classmethod
    def from_settings(cls, db: Database | None = None) -> RiskState:
        """Rules and webhook from the settings (FANZHA_ALERT_*, FANZHA_RISK_*); `db` default FANZHA_DATABASE_URL."""
        return cls(db, rules=RiskRules.from_settings(), webhook=AlertWebhook.from_settings())

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
        the webhook). Items with neither account_id nor group_id are skipped, and so are replays: an item whose
        (source, item_id) was counted before changes nothing. Raises InputError for a bad item (nothing of the
        batch is written then).
        """
        indexed = [(i, item) for i, item in enumerate(items) if item.account_id or item.group_id]
        for _, item in indexed:
            item.check()
        if not indexed:
            return []
        now = self.clock()
        with self.db.write(lock="ingest") as conn:
            alerts, replayed = self._ingest.apply(conn, now, indexed)
            if now - self._last_prune > HOUR:
                self._last_prune = now
                gone = self._ingest.prune(conn, now)
                if gone:
                    log.info(
                        "pruned %d flagged-item records older than %.0f days",
                        gone,
                        self.rules.retention_s / 86400,
                    )
        if replayed:
            log.info(
                "%d of %d items were counted before (same source and item id): skipped",
                replayed,
                len(indexed),
            )
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
            self._ingest.insert_alert(conn, alert)
        self._notify(alert)
        return alert

    def _notify(self, alert: Alert) -> None:
        log.info("alert %s: %s", alert.id, alert.message)
        if self.webhook:
            self.webhook.send(alert.to_dict())

    # -- queries ------------------------------------------------------------------------------------------------
    def entity(
        self, kind: str, entity_id: str, recent: int = 10, reports: dict[str, int] | None = None
    ) -> dict:
        """An account's or group's risk now, with its reasons (and `reports`, its reports by status, when the
        caller has them); UnknownEntity when nothing named it yet."""
        return self._queries.entity(kind, entity_id, recent=recent, reports=reports)

    def clusters(self, min_accounts: int = 2, limit: int = 50, members: int = 100) -> list[dict]:
        """Campaign clusters with at least `min_accounts` accounts, largest first."""
        return self._queries.clusters(min_accounts=min_accounts, limit=limit, members=members)

    def cluster(self, cluster_id: int, members: int = 1000) -> dict:
        return self._queries.cluster(cluster_id, members=members)

    def alerts(
        self,
        after_id: int = 0,
        limit: int = 100,
        rule: str | None = None,
        entity_kind: str | None = None,
        entity_id: str | None = None,
    ) -> list[dict]:
        """Alerts with id > after_id, oldest first: poll with the last id you saw."""
        return self._queries.alerts(
            after_id=after_id, limit=limit, rule=rule, entity_kind=entity_kind, entity_id=entity_id
        )
