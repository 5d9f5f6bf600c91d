"""The platform's endpoints: account/group early warning and fraud reports with feedback.

    POST /account_risk   {"account_id": "u42"}                     → risk, level, reasons, handles, cluster (404 unknown)
    POST /group_risk     {"group_id": "g7"}
    POST /clusters       {"min_accounts": 2}                       → campaign clusters, largest first
    POST /alerts         {"after_id": 0}                           → early-warning alerts, oldest first (poll)
    POST /report         {"reporter_id", "target": {...}, "reason"} → report id + the verdict, scored at once
    POST /report_status  {"report_id", "reporter_id"}              → received / in_review / confirmed / rejected + reason
    POST /reports        {"status": "received"}                    → moderators: the queue, oldest first
    POST /resolve_report {"report_id", "status", "moderator_id", "reason", "labels"}
    POST /actions        {"account_id": "u42"}                     → moderators: disposal actions, oldest first (poll)
    POST /dispose        {"entity_kind", "entity_id", "action", "moderator_id", "reason", "duration_s"}
    POST /lift_action    {"action_id", "moderator_id", "reason"}   → the action, lifted (409 lifted or expired)

Each endpoint validates its body, calls one method of the service's `platform` (fanzha.platform.Platform) and
shapes the answer; errors go through the one mapping (errors.py). BentoML collects API methods from the
service class, so these live in a base class of it: the one thing they need from the host is `self.platform`
(and `self.tag`, the model tag a verdict is served under). With FANZHA_MODERATOR_KEYS set, /reports,
/resolve_report and the disposal endpoints need one of those keys (gate.py). Like every BentoML API these are
POSTs with a JSON body, listing included (as /alerts and /reports).
"""

from __future__ import annotations

from typing import Annotated, Literal

import bentoml
from pydantic import Field

from fanzha.models.errors import InputError
from fanzha.platform import Platform
from fanzha.platform.actions import MAX_DURATION_S
from fanzha.platform.reports import MAX_REASON_CHARS

from .errors import http_errors
from .metrics import count_verdict
from .schemas import (
    Action,
    ActionName,
    AlertBody,
    Cluster,
    EntityRisk,
    Id,
    Label,
    OptionalId,
    Report,
    ReportId,
    ReportReceipt,
    ReportStatus,
    ReportTarget,
    Rule,
    VerdictBody,
)

MODERATOR_PATHS = ("/reports", "/resolve_report", "/actions", "/dispose", "/lift_action")
MAX_ALERT_ID = 2**63 - 1  # a 64-bit column: larger cursors are a 400, not a database overflow


class PlatformEndpoints:
    platform: Platform
    tag: str

    # -- early warning --------------------------------------------------------------------------------------------
    @bentoml.api
    def account_risk(self, account_id: Id) -> EntityRisk:
        """An account's risk now, why (flagged items, labels, handles pushed, cluster, reports), and its alerts."""
        with http_errors():
            return EntityRisk(**self.platform.entity_risk("account", account_id))

    @bentoml.api
    def group_risk(self, group_id: Id) -> EntityRisk:
        """A group chat's risk now, and why."""
        with http_errors():
            return EntityRisk(**self.platform.entity_risk("group", group_id))

    @bentoml.api
    def clusters(
        self,
        min_accounts: Annotated[int, Field(ge=2, le=100_000, strict=True)] = 2,
        limit: Annotated[int, Field(ge=1, le=500, strict=True)] = 50,
    ) -> list[Cluster]:
        """Campaign clusters: accounts linked by handles they pushed in flagged items, largest first."""
        return [Cluster(**c) for c in self.platform.clusters(min_accounts=min_accounts, limit=limit)]

    @bentoml.api
    def alerts(
        self,
        after_id: Annotated[int, Field(ge=0, le=MAX_ALERT_ID, strict=True)] = 0,
        limit: Annotated[int, Field(ge=1, le=1000, strict=True)] = 100,
        rule: Rule | None = None,
        account_id: OptionalId = None,
        group_id: OptionalId = None,
    ) -> list[AlertBody]:
        """Early-warning alerts with id > after_id, oldest first: poll with the last id seen."""
        with http_errors():
            return [
                AlertBody(**a)
                for a in self.platform.alerts(
                    after_id=after_id, limit=limit, rule=rule, account_id=account_id, group_id=group_id
                )
            ]

    # -- fraud reports --------------------------------------------------------------------------------------------
    @bentoml.api
    def report(
        self,
        reporter_id: Id,
        target: ReportTarget,
        reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON_CHARS)],
        idempotency_key: Annotated[str | None, Field(default=None, min_length=1, max_length=128)] = None,
    ) -> ReportReceipt:
        """Report a message, an image, an account or a group. The report is stored and the target scored at
        once; the answer carries the report id to follow it with /report_status."""
        with http_errors():
            intake = self.platform.report(
                reporter_id,
                reason,
                target.type,
                text=target.text,
                image=target.image_bytes() if target.type == "image" else None,
                account_id=target.account_id,
                group_id=target.group_id,
                item_id=target.item_id,
                source=target.source,
                idempotency_key=idempotency_key,
            )
        verdict = None
        if intake.scored is not None:
            verdict = VerdictBody.of(intake.scored, self.tag)
            count_verdict("report", verdict.decision, verdict.labels)
        elif intake.report["verdict"]:  # a retried report: the verdict it got the first time
            verdict = VerdictBody(**intake.report["verdict"])
        stored = intake.report
        return ReportReceipt(
            report_id=stored["report_id"],
            status=stored["status"],
            created_at=stored["created_at"],
            duplicate=intake.duplicate,
            verdict=verdict,
            risk=EntityRisk(**intake.risk) if intake.risk else None,
        )

    @bentoml.api
    def report_status(self, report_id: ReportId, reporter_id: Id) -> ReportStatus:
        """The reporter's view: received → in_review → confirmed / rejected, with the moderator's reason."""
        with http_errors():
            return ReportStatus(**self.platform.report_status(report_id, reporter_id))

    @bentoml.api
    def reports(
        self,
        status: Literal["received", "in_review", "confirmed", "rejected"] | None = None,
        limit: Annotated[int, Field(ge=1, le=500, strict=True)] = 50,
        after: Annotated[ReportId | None, Field(default=None)] = None,
        reporter_id: OptionalId = None,
        account_id: OptionalId = None,
        group_id: OptionalId = None,
    ) -> list[Report]:
        """Moderators: reports oldest first, filtered by status, reporter or reported account/group.
        Page with `after` = the last report id of the previous page."""
        with http_errors():
            return [
                Report(**r)
                for r in self.platform.list_reports(
                    status=status,
                    limit=limit,
                    after=after,
                    reporter_id=reporter_id,
                    account_id=account_id,
                    group_id=group_id,
                )
            ]

    @bentoml.api
    def resolve_report(
        self,
        report_id: ReportId,
        status: Literal["in_review", "confirmed", "rejected"],
        moderator_id: Id,
        reason: Annotated[str | None, Field(default=None, max_length=MAX_REASON_CHARS)] = None,
        labels: Annotated[list[Label] | None, Field(default=None, max_length=4)] = None,
    ) -> Report:
        """Moderators: take a report into review, or confirm / reject it with a reason the reporter will read
        (and, to confirm content the model found no label in, the kind of fraud). 409 when the report cannot
        move that way: confirmed and rejected are final."""
        with http_errors():
            return Report(
                **self.platform.resolve_report(
                    report_id, status, moderator_id=moderator_id, reason=reason, labels=labels
                )
            )

    # -- disposal of accounts and groups --------------------------------------------------------------------------
    @bentoml.api
    def actions(
        self,
        after_id: Annotated[int, Field(ge=0, le=MAX_ALERT_ID, strict=True)] = 0,
        limit: Annotated[int, Field(ge=1, le=1000, strict=True)] = 100,
        account_id: OptionalId = None,
        group_id: OptionalId = None,
    ) -> list[Action]:
        """Moderators: disposal actions with id > after_id, oldest first (poll with the last id seen), on one
        account or group if named, each with its status (active / lifted / expired) and webhook deliveries."""
        if account_id and group_id:
            with http_errors():
                raise InputError("filter by account_id or by group_id, not both")
        kind, entity = (
            ("account", account_id) if account_id else ("group", group_id) if group_id else (None, None)
        )
        with http_errors():
            return [
                Action(**a)
                for a in self.platform.actions(
                    entity_kind=kind, entity_id=entity, limit=limit, after_id=after_id
                )
            ]

    @bentoml.api
    def dispose(
        self,
        entity_kind: Literal["account", "group"],
        entity_id: Id,
        action: ActionName,
        moderator_id: Id,
        reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON_CHARS)],
        duration_s: Annotated[float | None, Field(default=None, ge=1, le=MAX_DURATION_S)] = None,
        case_id: Annotated[str | None, Field(default=None, min_length=1, max_length=300)] = None,
        evidence: Annotated[list[dict] | None, Field(default=None, max_length=50)] = None,
    ) -> Action:
        """Moderators: warn / restrict / suspend / ban an account, or mute / dissolve a group, with a reason and
        an optional duration (restrict, suspend, ban, mute). Recorded, and POSTed to FANZHA_ACTION_WEBHOOK
        (HMAC-signed, retried): `delivery` says how that went (poll /actions)."""
        with http_errors():
            return Action(
                **self.platform.dispose(
                    entity_kind,
                    entity_id,
                    action,
                    moderator_id,
                    reason,
                    duration_s=duration_s,
                    case_id=case_id,
                    evidence=evidence,
                )
            )

    @bentoml.api
    def lift_action(
        self,
        action_id: Annotated[int, Field(ge=1, le=MAX_ALERT_ID, strict=True)],
        moderator_id: Id,
        reason: Annotated[str, Field(min_length=1, max_length=MAX_REASON_CHARS)],
    ) -> Action:
        """Moderators: reverse an action (the lift is POSTed too); 404 unknown, 409 lifted already or expired."""
        with http_errors():
            return Action(**self.platform.lift(action_id, moderator_id, reason))
