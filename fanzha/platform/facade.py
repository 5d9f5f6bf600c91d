"""The Platform: one facade over what a platform keeps — risk state, alerts, fraud reports — and the Detector.

    from fanzha.platform import ItemRef, Platform
    platform = Platform.from_settings(detector)              # FANZHA_DATABASE_URL, FANZHA_ALERT_*, the webhook
    [scored] = platform.classify_texts(["加群领皮肤，先交激活费"], [ItemRef(id="m1", account_id="u42")])
    scored.verdict, scored.alerts                            # the verdict, and the alerts this item raised
    platform.report("user-7", "骗我交激活费", "text", text="…", account_id="u42")
    platform.resolve_report(report_id, "confirmed", moderator_id="mod-1", reason="已核实")
    platform.entity_risk("account", "u42")                   # risk, level, reasons, handles, cluster, reports
    platform.feedback()                                      # decided reports → training examples

The HTTP endpoints (fanzha.serving) and the command line (`fanzha score --track`, `fanzha export-feedback`)
both go through it; neither reaches into the stores. Errors are fanzha's own (InputError, NotFound,
Conflict): each door maps them once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from fanzha.models.errors import InputError
from fanzha.models.verdict import Verdict

from .database import Database
from .reports import NewReport, ReportBook
from .risk import Alert, RiskRules, RiskState, ScoredItem, UnknownEntity
from .webhook import AlertWebhook

log = logging.getLogger("fanzha.platform")


@dataclass(frozen=True)
class ItemRef:
    """Who posted an item and where: the platform's ids, which travel back unchanged with its verdict."""

    id: str | None = None
    account_id: str | None = None
    group_id: str | None = None
    source: str | None = None

    def to_dict(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (
                ("id", self.id),
                ("account_id", self.account_id),
                ("group_id", self.group_id),
                ("source", self.source),
            )
            if v is not None
        }

    @property
    def tracked(self) -> bool:
        return bool(self.account_id or self.group_id)


@dataclass
class Scored:
    """An item's verdict and the early-warning alerts THIS item raised (its account, group or cluster crossed a
    threshold)."""

    ref: ItemRef
    verdict: Verdict
    alerts: list[Alert] = field(default_factory=list)

    def to_dict(self, timings: bool = True) -> dict[str, Any]:
        d = {**self.ref.to_dict(), **self.verdict.to_dict(timings=timings)}
        if self.alerts:
            d["alerts"] = [a.to_dict() for a in self.alerts]
        return d


@dataclass
class Intake:
    """What a reporter gets back: the stored report, whether the idempotency key named one already, the verdict
    of the reported content when it was scored now, and the risk of a reported account or group."""

    report: dict
    duplicate: bool
    scored: Scored | None = None
    risk: dict | None = None


class Platform:
    def __init__(
        self,
        detector=None,
        database: Database | str | None = None,
        *,
        rules: RiskRules | None = None,
        webhook: AlertWebhook | None = None,
        model_tag: str | None = None,
        clock=time.time,
    ) -> None:
        """`detector`: a fanzha.models.Detector (needed to score items and reported content; not to track verdicts
        scored elsewhere, query risk or export feedback). `model_tag`: the name the deployment serves the model
        under, stored with a report's verdict."""
        self.detector = detector
        self.model_tag = model_tag
        self.database = database if isinstance(database, Database) else Database(database)
        self.risk = RiskState(self.database, rules=rules, webhook=webhook, clock=clock)
        self.reports = ReportBook(self.database, clock=clock)

    @classmethod
    def from_settings(
        cls, detector=None, database: Database | str | None = None, model_tag: str | None = None
    ) -> Platform:
        """Database (FANZHA_DATABASE_URL, else the default SQLite file), rules (FANZHA_ALERT_*, FANZHA_RISK_*) and
        webhook (FANZHA_ALERT_WEBHOOK) from the settings."""
        return cls(
            detector,
            database,
            rules=RiskRules.from_settings(),
            webhook=AlertWebhook.from_settings(),
            model_tag=model_tag,
        )

    def close(self) -> None:
        self.risk.close()  # the webhook's queue, then the database both stores share

    # -- scoring and tracking -------------------------------------------------------------------------------------
    def classify_texts(self, texts: list[str], refs: list[ItemRef]) -> list[Scored]:
        """Score texts (InputError naming the first bad one) and track those that name an account or group."""
        return self._track(
            [Scored(ref, v) for ref, v in zip(refs, self.detector.classify_texts(texts), strict=True)]
        )

    def classify_media(
        self, data: bytes, ref: ItemRef, expected: str | None = None, max_seconds: float | None = None
    ) -> Scored:
        """Score image or video bytes (`expected`: "image" or "video", else either) and track the item."""
        return self._track(
            [Scored(ref, self.detector.classify_media(data, expected, max_seconds=max_seconds))]
        )[0]

    def track(self, scored: list[Scored]) -> list[Scored]:
        """Feed verdicts scored elsewhere into the risk state; each gets the alerts it raised."""
        return self._track(scored)

    def ingest_verdicts(self, records: Iterable[dict], batch: int = 1000) -> list[Alert]:
        """Batch output records (fanzha.batch's Tracker protocol): `fanzha score --track`."""
        return self.risk.ingest_verdicts(records, batch=batch)

    def _track(self, scored: list[Scored]) -> list[Scored]:
        """One transaction for the items that name an account or group. A failure here is logged, never turned
        into a failed classification: the platform still gets its verdicts when the risk database is down."""
        named = [s for s in scored if s.ref.tracked]
        if not named:
            return scored
        items = [
            ScoredItem.from_verdict(
                s.verdict,
                account_id=s.ref.account_id,
                group_id=s.ref.group_id,
                item_id=s.ref.id,
                source=s.ref.source,
            )
            for s in named
        ]
        try:
            alerts = self.risk.ingest_many(items)
        except Exception:
            log.exception("risk state not updated for %d verdicts", len(items))
            return scored
        for alert in alerts:
            named[alert.item_index].alerts.append(alert)
        return scored

    # -- risk queries ---------------------------------------------------------------------------------------------
    def entity_risk(self, kind: str, entity_id: str) -> dict:
        """An account's or group's risk now and why, with the reports against it; UnknownEntity (404) when fanzha
        has scored nothing that names it."""
        return self.risk.entity(kind, entity_id, reports=self.reports.counts_against(kind, entity_id))

    def clusters(self, min_accounts: int = 2, limit: int = 50) -> list[dict]:
        return self.risk.clusters(min_accounts=min_accounts, limit=limit)

    def alerts(
        self,
        after_id: int = 0,
        limit: int = 100,
        rule: str | None = None,
        account_id: str | None = None,
        group_id: str | None = None,
    ) -> list[dict]:
        if account_id and group_id:
            raise InputError("filter by account_id or by group_id, not both")
        kind, entity = (
            ("account", account_id) if account_id else ("group", group_id) if group_id else (None, None)
        )
        return self.risk.alerts(after_id=after_id, limit=limit, rule=rule, entity_kind=kind, entity_id=entity)

    # -- fraud reports --------------------------------------------------------------------------------------------
    def report(
        self,
        reporter_id: str,
        reason: str,
        target_type: str,
        *,
        text: str | None = None,
        image: bytes | None = None,
        account_id: str | None = None,
        group_id: str | None = None,
        item_id: str | None = None,
        source: str | None = None,
        idempotency_key: str | None = None,
    ) -> Intake:
        """Store a report of a message (`text`), an image (`image` bytes), an account or a group; content is scored
        and tracked at once. The same idempotency key from the same reporter returns the stored report."""
        if not reason.strip():
            raise InputError("reason is empty or whitespace only")
        if idempotency_key and (stored := self.reports.find(reporter_id, idempotency_key)):
            return self._intake(stored, duplicate=True)
        ref = ItemRef(id=item_id, account_id=account_id, group_id=group_id, source=source or "report")
        scored, sha256 = None, None
        if target_type == "text":
            scored = self.classify_texts([text], [ref])[0]
        elif target_type == "image":
            scored = self.classify_media(image or b"", ref, expected="image")
            sha256 = hashlib.sha256(image or b"").hexdigest()
        new = NewReport(
            reporter_id=reporter_id,
            target_type=target_type,
            reason=reason,
            idempotency_key=idempotency_key,
            target_text=text if target_type == "text" else scored.verdict.text if scored else None,
            target_media_sha256=sha256,
            target_account_id=account_id,
            target_group_id=group_id,
            target_source=source,
            verdict=self._stored_verdict(scored) if scored else None,
        )
        stored, created = self.reports.create(new)
        return self._intake(stored, duplicate=not created, scored=scored)

    def report_status(self, report_id: str, reporter_id: str) -> dict:
        """The reporter's view: received → in_review → confirmed / rejected, with the moderator's reason."""
        return self.reports.status(report_id, reporter_id)

    def list_reports(
        self,
        status: str | None = None,
        limit: int = 50,
        after: str | None = None,
        reporter_id: str | None = None,
        account_id: str | None = None,
        group_id: str | None = None,
    ) -> list[dict]:
        """Moderators: reports oldest first; `after` = the last report id of the previous page."""
        return self.reports.list_reports(
            status=status,
            limit=limit,
            after=after,
            reporter_id=reporter_id,
            account_id=account_id,
            group_id=group_id,
        )

    def resolve_report(
        self,
        report_id: str,
        status: str,
        moderator_id: str,
        reason: str | None = None,
        labels: list[str] | None = None,
    ) -> dict:
        """Moderators: move a report on. Confirming a report against an account or group raises a
        `report_confirmed` alert for it."""
        resolved = self.reports.resolve(
            report_id, status, moderator_id=moderator_id, reason=reason, labels=labels
        )
        if status == "confirmed":
            for kind in ("account", "group"):
                entity = resolved[f"target_{kind}_id"]
                if entity:
                    self.risk.record_alert(
                        Alert(
                            rule="report_confirmed",
                            ts=resolved["updated_at"],
                            value=1,
                            threshold=1,
                            entity_kind=kind,
                            entity_id=entity,
                            item_id=(resolved["verdict"] or {}).get("id"),
                            message=f"{kind} {entity}: report {resolved['report_id']} confirmed by a moderator ({resolved['status_reason']})",
                            detail={
                                "report_id": resolved["report_id"],
                                "target_type": resolved["target_type"],
                                "labels": resolved["labels"],
                            },
                        )
                    )
        return resolved

    def feedback(self, since: float | None = None) -> tuple[list[dict], dict[str, int]]:
        """Decided reports as training examples (fanzha.datasets.feedback): `fanzha export-feedback`."""
        from fanzha.datasets.feedback import export_records

        return export_records(self.reports.resolved(since=since))

    def _intake(self, stored: dict, duplicate: bool, scored: Scored | None = None) -> Intake:
        risk = None
        kind = stored["target_type"]
        if kind in ("account", "group"):
            try:
                risk = self.entity_risk(kind, stored[f"target_{kind}_id"])
            except UnknownEntity:
                risk = None  # reported before fanzha scored anything from it: the report is still stored
        return Intake(stored, duplicate, scored, risk)

    def _stored_verdict(self, scored: Scored) -> dict:
        """The verdict kept with a report: ids, the verdict (no timings), and the model tag it was served under."""
        d = scored.ref.to_dict()
        for key, value in scored.verdict.to_dict(timings=False).items():
            d[key] = value
            if key == "model_version" and self.model_tag:
                d["model_tag"] = self.model_tag
        return d


def open_tracker() -> Platform:
    """The risk state from the settings, for `fanzha score --track` (a factory: each Ray actor opens its own)."""
    return Platform.from_settings()
