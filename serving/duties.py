"""The platform's duties as service endpoints: account/group early warning and fraud reports with feedback.

A mixin of the Fanzha service (service.py): BentoML collects these APIs from the class like its own.

    POST /account_risk   {"account_id": "u42"}                     → risk, level, reasons, handles, cluster (404 unknown)
    POST /group_risk     {"group_id": "g7"}
    POST /clusters       {"min_accounts": 2}                       → campaign clusters, largest first
    POST /alerts         {"after_id": 0}                           → early-warning alerts, oldest first (poll)
    POST /report         {"reporter_id", "target": {...}, "reason"} → report id + the verdict, scored at once
    POST /report_status  {"report_id", "reporter_id"}              → received / in_review / confirmed / rejected + reason
    POST /reports        {"status": "received"}                    → moderators: the queue, oldest first
    POST /resolve_report {"report_id", "status", "moderator_id", "reason", "labels"}

Every verdict the service serves for an item with `account_id` / `group_id` goes through `_track`, which
updates the risk state in one transaction per request and puts the alerts that item raised in its answer.
With FANZHA_MODERATOR_KEYS set, /reports and /resolve_report need one of those keys (gate.py).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import Annotated, Literal

import bentoml
from bentoml.exceptions import BentoMLException, InvalidArgument, NotFound
from pydantic import Field

from fanzha.models import InputError

from .database import Database
from .duty_schemas import Alert, Cluster, EntityRisk, Label, Report, ReportReceipt, ReportStatus, ReportTarget
from .gate import MB
from .reports import MAX_REASON_CHARS, InvalidTransition, NewReport, ReportStore, UnknownReport
from .risk import Alert as RiskAlert
from .risk import RiskStore, ScoredItem, UnknownEntity
from .schemas import TextItem, Verdict

logger = logging.getLogger("fanzha.serving")

DUTY_BODY_LIMITS = {"/report": 29 * MB}  # a reported screenshot: 20 MB as base64
MODERATOR_PATHS = ("/reports", "/resolve_report")

Id = Annotated[str, Field(min_length=1, max_length=256)]
OptionalId = Annotated[str | None, Field(default=None, min_length=1, max_length=256)]


class Conflict(BentoMLException):
    error_code = HTTPStatus.CONFLICT


@contextmanager
def _as_http_errors() -> Iterator[None]:
    try:
        yield
    except (UnknownEntity, UnknownReport) as e:
        raise NotFound(str(e)) from None
    except InvalidTransition as e:
        raise Conflict(str(e)) from None
    except InputError as e:
        raise InvalidArgument(str(e)) from None


class PlatformDuties:
    """Endpoints and hooks; the service calls `_open_platform_stores()` in __init__."""

    def _open_platform_stores(self) -> None:
        self.database = Database()  # FANZHA_DATABASE_URL, else the default SQLite file; migrates on open
        self.risk_store = RiskStore.from_env(self.database)
        self.report_store = ReportStore(self.database)
        logger.info("risk state and reports in %s (schema version %d)", self.database.safe_url, self.database.version)

    def _track(self, verdicts: list[Verdict]) -> list[Verdict]:
        """Feed verdicts that name an account or group into the risk state; attach the alerts they raised.

        A failure here is logged, never turned into a failed classification: the platform still gets its
        verdicts when the risk database is unavailable."""
        named = [(i, v) for i, v in enumerate(verdicts) if v.account_id or v.group_id]
        if not named:
            return verdicts
        items = [ScoredItem.from_verdict(v.model_dump(include={"id", "account_id", "group_id", "source", "fraud_score",
                                                                "decision", "labels", "evidence"})) for _, v in named]
        try:
            alerts = self.risk_store.ingest_many(items)
        except Exception:
            logger.exception("risk state not updated for %d verdicts", len(items))
            return verdicts
        for alert in alerts:
            verdict = verdicts[named[alert.item_index][0]]
            verdict.alerts = [*(verdict.alerts or []), alert.to_dict()]
        return verdicts

    # -- early warning --------------------------------------------------------------------------------------------
    @bentoml.api
    def account_risk(self, account_id: Id) -> EntityRisk:
        """An account's risk now, why (flagged items, labels, handles pushed, cluster, reports), and its alerts."""
        with _as_http_errors():
            return EntityRisk(**self.risk_store.entity("account", account_id))

    @bentoml.api
    def group_risk(self, group_id: Id) -> EntityRisk:
        """A group chat's risk now, and why."""
        with _as_http_errors():
            return EntityRisk(**self.risk_store.entity("group", group_id))

    @bentoml.api
    def clusters(self, min_accounts: Annotated[int, Field(ge=2, le=100_000)] = 2,
                 limit: Annotated[int, Field(ge=1, le=500)] = 50) -> list[Cluster]:
        """Campaign clusters: accounts linked by handles they pushed in flagged items, largest first."""
        return [Cluster(**c) for c in self.risk_store.clusters(min_accounts=min_accounts, limit=limit)]

    @bentoml.api
    def alerts(self, after_id: Annotated[int, Field(ge=0)] = 0, limit: Annotated[int, Field(ge=1, le=1000)] = 100,
               rule: Literal["flagged_in_window", "risk", "cluster_size", "report_confirmed"] | None = None,
               account_id: OptionalId = None, group_id: OptionalId = None) -> list[Alert]:
        """Early-warning alerts with id > after_id, oldest first: poll with the last id seen."""
        if account_id and group_id:
            raise InvalidArgument("filter by account_id or by group_id, not both")
        kind, entity = ("account", account_id) if account_id else ("group", group_id) if group_id else (None, None)
        return [Alert(**a) for a in self.risk_store.alerts(after_id=after_id, limit=limit, rule=rule, entity_kind=kind, entity_id=entity)]

    # -- fraud reports --------------------------------------------------------------------------------------------
    @bentoml.api
    def report(self, reporter_id: Id, target: ReportTarget,
               reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON_CHARS)],
               idempotency_key: Annotated[str | None, Field(default=None, min_length=1, max_length=128)] = None) -> ReportReceipt:
        """Report a message, an image, an account or a group. The report is stored and the target scored at
        once; the answer carries the report id to follow it with /report_status."""
        with _as_http_errors():
            if not reason.strip():
                raise InputError("reason is empty or whitespace only")
            if idempotency_key and (stored := self.report_store.find(reporter_id, idempotency_key)):
                return self._receipt(stored, duplicate=True)
            verdict, sha256 = self._score_target(target)
            new = NewReport(reporter_id=reporter_id, target_type=target.type, reason=reason, idempotency_key=idempotency_key,
                            target_text=target.text if target.type == "text" else verdict.text if verdict else None,
                            target_media_sha256=sha256, target_account_id=target.account_id, target_group_id=target.group_id,
                            target_source=target.source,
                            verdict=verdict.model_dump(exclude_none=True, exclude={"timings", "alerts"}) if verdict else None)
            stored, created = self.report_store.create(new)
            return self._receipt(stored, duplicate=not created, verdict=verdict)

    @bentoml.api
    def report_status(self, report_id: Annotated[str, Field(min_length=1, max_length=64)], reporter_id: Id) -> ReportStatus:
        """The reporter's view: received → in_review → confirmed / rejected, with the moderator's reason."""
        with _as_http_errors():
            return ReportStatus(**self.report_store.status(report_id, reporter_id))

    @bentoml.api
    def reports(self, status: Literal["received", "in_review", "confirmed", "rejected"] | None = None,
                limit: Annotated[int, Field(ge=1, le=500)] = 50,
                after: Annotated[str | None, Field(default=None, min_length=1, max_length=64)] = None,
                reporter_id: OptionalId = None, account_id: OptionalId = None, group_id: OptionalId = None) -> list[Report]:
        """Moderators: reports oldest first, filtered by status, reporter or reported account/group.
        Page with `after` = the last report id of the previous page."""
        with _as_http_errors():
            return [Report(**r) for r in self.report_store.list_reports(status=status, limit=limit, after=after, reporter_id=reporter_id,
                                                                   account_id=account_id, group_id=group_id)]

    @bentoml.api
    def resolve_report(self, report_id: Annotated[str, Field(min_length=1, max_length=64)],
                       status: Literal["in_review", "confirmed", "rejected"], moderator_id: Id,
                       reason: Annotated[str | None, Field(default=None, max_length=MAX_REASON_CHARS)] = None,
                       labels: Annotated[list[Label] | None, Field(default=None, max_length=4)] = None) -> Report:
        """Moderators: take a report into review, or confirm / reject it with a reason the reporter will read
        (and, to confirm content the model found no label in, the kind of fraud). 409 when the report cannot
        move that way: confirmed and rejected are final."""
        with _as_http_errors():
            resolved = self.report_store.resolve(report_id, status, moderator_id=moderator_id, reason=reason, labels=labels)
        if status == "confirmed":
            self._confirmed_alerts(resolved)
        return Report(**resolved)

    # -- helpers ------------------------------------------------------------------------------------------------------
    def _score_target(self, target: ReportTarget) -> tuple[Verdict | None, str | None]:
        ids = {"id": target.item_id, "account_id": target.account_id, "group_id": target.group_id, "source": target.source or "report"}
        if target.type == "text":
            return self._texts([TextItem(text=target.text, **ids)], "report")[0], None
        if target.type == "image":
            data = target.image_bytes()
            return self._media(data, "image", "report", ids), hashlib.sha256(data).hexdigest()
        return None, None

    def _receipt(self, stored: dict, duplicate: bool, verdict: Verdict | None = None) -> ReportReceipt:
        if verdict is None and stored["verdict"]:  # a retried report: the verdict it got the first time
            verdict = Verdict(**stored["verdict"])
        risk = None
        kind = {"account": "account", "group": "group"}.get(stored["target_type"])
        if kind:
            try:
                risk = EntityRisk(**self.risk_store.entity(kind, stored[f"target_{kind}_id"]))
            except UnknownEntity:
                risk = None  # reported before fanzha scored anything from it: the report is still stored
        return ReportReceipt(report_id=stored["report_id"], status=stored["status"], created_at=stored["created_at"],
                             duplicate=duplicate, verdict=verdict, risk=risk)

    def _confirmed_alerts(self, report: dict) -> None:
        for kind in ("account", "group"):
            entity = report[f"target_{kind}_id"]
            if entity:
                self.risk_store.record_alert(RiskAlert(
                    rule="report_confirmed", ts=report["updated_at"], value=1, threshold=1, entity_kind=kind, entity_id=entity,
                    item_id=(report["verdict"] or {}).get("id"),
                    message=f"{kind} {entity}: report {report['report_id']} confirmed by a moderator ({report['status_reason']})",
                    detail={"report_id": report["report_id"], "target_type": report["target_type"], "labels": report["labels"]}))
