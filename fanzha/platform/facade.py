"""The Platform: one facade over what a platform keeps — risk state, alerts, fraud reports — and the Detector.

    from fanzha.platform import ItemRef, Platform
    platform = Platform.from_settings(detector)              # FANZHA_DATABASE_URL, FANZHA_ALERT_*, the webhook
    [scored] = platform.classify_texts(["加群领皮肤，先交激活费"], [ItemRef(id="m1", account_id="u42")])
    scored.verdict, scored.alerts                            # the verdict, and the alerts this item raised
    platform.report("user-7", "骗我交激活费", "text", text="…", account_id="u42")
    platform.resolve_report(report_id, "confirmed", moderator_id="mod-1", reason="已核实")
    platform.entity_risk("account", "u42")                   # risk, level, reasons, handles, cluster, reports
    platform.feedback()                                      # decided reports and cases → training examples
    platform.queue("review"); platform.claim(case_id, "mod-1"); platform.decide(case_id, "mod-1", "confirm", "…")
    platform.dispose("account", "u42", "ban", "mod-1", "…")  # recorded, POSTed to FANZHA_ACTION_WEBHOOK

The HTTP endpoints (fanzha.serving) and the command line (`fanzha score --track`, `fanzha export-feedback`)
both go through it; neither reaches into the stores. Errors are fanzha's own (InputError, NotFound,
Conflict): each door maps them once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fanzha.models.conversation import Message, MessageReading
from fanzha.models.errors import Conflict, InputError, SettingsError
from fanzha.models.normalize import Normalized
from fanzha.models.settings import settings
from fanzha.models.verdict import ConversationVerdict, MessageVerdict, Verdict

from .actions import ActionBook
from .audit import Audit
from .conversations import ConversationBook, Step
from .database import Database
from .reports import InvalidTransition, NewReport, ReportBook
from .review import (
    Capture,
    ReviewBook,
    audit_sampled,
    check_decision,
    content_sha,
    image_media,
    image_name,
    keyframes,
    parse_case_id,
)
from .risk import Alert, RiskRules, RiskState, ScoredItem, UnknownEntity
from .webhook import ActionWebhook, AlertWebhook, Webhook

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
class ScoredConversation:
    """A conversation's verdict (whole, or after a streamed message) and what it set off: the risk alerts of
    its account or group, and for a stream, the message just read and whether it tipped the conversation."""

    ref: ItemRef  # id = the conversation id
    verdict: ConversationVerdict
    alerts: list[Alert] = field(default_factory=list)
    message: MessageVerdict | None = None  # streamed: the message just read
    tipped: bool = False  # streamed: this message flagged the conversation
    restarted: bool = False  # streamed: the conversation had gone idle and started afresh
    case_id: str | None = None  # kept for moderators (decided `review`, or the audit sample of `block`)

    def to_dict(self, timings: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {**self.ref.to_dict(), **self.verdict.to_dict(timings=timings)}
        if self.message is not None:
            d["message"] = self.message.to_dict()
            d["restarted"] = self.restarted
        if self.tipped:
            d["alert"] = {
                "kind": "conversation_flagged",
                "conversation_id": self.ref.id,
                "message_index": self.message.index if self.message else self.verdict.trigger_index,
                "message_id": self.message.id if self.message else None,
                "decision": self.verdict.decision,
                "fraud_score": self.verdict.fraud_score,
                "labels": list(self.verdict.labels),
                "case_id": self.case_id,
            }
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
        action_webhook: Webhook | None = None,
        review_dir: str | Path | None = None,
        audit_sample: float | None = None,
        claim_ttl_s: float | None = None,
    ) -> None:
        """`detector`: a fanzha.models.Detector (needed to score items and reported content; not to track verdicts
        scored elsewhere, query risk or export feedback). `model_tag`: the name the deployment serves the model
        under, stored with a report's verdict. `review_dir` (default FANZHA_DATA_DIR/review), `audit_sample`
        (FANZHA_AUDIT_SAMPLE) and `claim_ttl_s` (FANZHA_CLAIM_TTL_S): the review queue's."""
        s = settings()
        self.detector = detector
        self.model_tag = model_tag
        self.clock = clock
        self.audit_sample = s.audit_sample if audit_sample is None else audit_sample
        self.claim_ttl_s = s.claim_ttl_s if claim_ttl_s is None else claim_ttl_s
        if not 0.0 <= self.audit_sample <= 1.0:
            raise SettingsError(f"FANZHA_AUDIT_SAMPLE must be within [0, 1], got {self.audit_sample}")
        if not 0 < self.claim_ttl_s <= 86400:
            raise SettingsError(f"FANZHA_CLAIM_TTL_S must be within (0, 86400], got {self.claim_ttl_s}")
        if s.review_retention_days <= 0:
            raise SettingsError(
                f"FANZHA_REVIEW_RETENTION_DAYS must be positive, got {s.review_retention_days}"
            )
        self.database = database if isinstance(database, Database) else Database(database)
        self.risk = RiskState(self.database, rules=rules, webhook=webhook, clock=clock)
        self.reports = ReportBook(self.database, clock=clock)
        self.review = ReviewBook(
            self.database, Path(review_dir) if review_dir else s.data_dir / "review", clock=clock
        )
        self.action_book = ActionBook(self.database, webhook=action_webhook, clock=clock)
        self.audit = Audit(self.database, clock=clock)
        self.conversations = ConversationBook(self.database, clock=clock)

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
            action_webhook=ActionWebhook.from_settings(),
        )

    def close(self) -> None:
        self.action_book.close()  # the action webhook's queue (its deliveries are written to the database)
        self.risk.close()  # the alert webhook's queue, then the database the stores share

    # -- scoring and tracking -------------------------------------------------------------------------------------
    def classify_texts(self, texts: list[str], refs: list[ItemRef]) -> list[Scored]:
        """Score texts (InputError naming the first bad one), track those that name an account or group, and keep
        those decided `review` (and the audit sample of `block`) for moderators."""
        return self._classify_texts(texts, refs)

    def _classify_texts(self, texts: list[str], refs: list[ItemRef], capture: bool = True) -> list[Scored]:
        scored = self._track(
            [Scored(ref, v) for ref, v in zip(refs, self.detector.classify_texts(texts), strict=True)]
        )
        if capture:
            self._capture([(s, text, None) for s, text in zip(scored, texts, strict=True)])
        return scored

    def classify_media(
        self, data: bytes, ref: ItemRef, expected: str | None = None, max_seconds: float | None = None
    ) -> Scored:
        """Score image or video bytes (`expected`: "image" or "video", else either), track the item, and keep it
        for moderators when decided `review` (or sampled for audit)."""
        return self._classify_media(data, ref, expected, max_seconds)

    def _classify_media(
        self,
        data: bytes,
        ref: ItemRef,
        expected: str | None = None,
        max_seconds: float | None = None,
        capture: bool = True,
    ) -> Scored:
        scored = self._track(
            [Scored(ref, self.detector.classify_media(data, expected, max_seconds=max_seconds))]
        )[0]
        if capture:
            self._capture([(scored, None, data)])
        return scored

    def track(self, scored: list[Scored]) -> list[Scored]:
        """Feed verdicts scored elsewhere into the risk state; each gets the alerts it raised."""
        return self._track(scored)

    def ingest_verdicts(self, records: Iterable[dict], batch: int = 1000) -> list[Alert]:
        """Batch output records (fanzha.batch's Tracker protocol): `fanzha score --track`."""
        alerts = self.risk.ingest_verdicts(records, batch=batch)
        self._alert_cases(alerts)
        return alerts

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
        self._alert_cases(alerts)
        return scored

    def _alert_cases(self, alerts: list[Alert]) -> None:
        """Every alert is a case of the `alerts` queue (but a confirmed report's: a moderator raised that one)."""
        wanted = [a.to_dict() for a in alerts if a.rule != "report_confirmed"]
        if not wanted:
            return
        try:
            self.review.open_alert_cases(wanted)
        except Exception:
            log.exception("%d alerts not queued for review", len(wanted))

    # -- conversations --------------------------------------------------------------------------------------------
    def classify_conversation(self, messages: list[Message], ref: ItemRef) -> ScoredConversation:
        """Score a whole conversation; a flagged one that names an account or group feeds its risk, and one
        decided `review` (or sampled from `block`) is kept for moderators."""
        verdict = self.detector.classify_conversation(messages)
        scored = ScoredConversation(ref, verdict, tipped=False)
        if verdict.flagged:
            index = verdict.trigger_index or 0
            scored.alerts = self._track_conversation(verdict, ref, messages[index].id)
            scored.case_id = self._keep_conversation(
                scored,
                {
                    "messages": [
                        {
                            "index": m.index,
                            "sender": msg.sender,
                            "text": msg.text,
                            "stage": m.stage,
                            "fraud_score": m.fraud_score,
                        }
                        for m, msg in zip(verdict.messages, messages, strict=True)
                    ],
                    "trigger_index": verdict.trigger_index,
                },
            )
        return scored

    def conversation_message(
        self,
        conversation_id: str,
        message: Message,
        account_id: str | None = None,
        group_id: str | None = None,
        *,
        normalized: Normalized | None = None,
        prepared: tuple[Normalized, MessageReading] | None = None,
    ) -> ScoredConversation:
        """One more message of a streamed conversation: the conversation's verdict after it. The message that
        tips the conversation carries the alert, feeds the account's and group's risk, and opens a case.
        `normalized` / `prepared`: work already done on the message (read_conversation_message says which)."""
        scored, step = self.read_conversation_message(
            conversation_id, message, account_id, group_id, normalized=normalized, prepared=prepared
        )
        self.after_conversation_message(scored, step)
        return scored

    def read_conversation_message(
        self,
        conversation_id: str,
        message: Message,
        account_id: str | None = None,
        group_id: str | None = None,
        *,
        wait: bool = True,
        normalized: Normalized | None = None,
        prepared: tuple[Normalized, MessageReading] | None = None,
    ) -> tuple[ScoredConversation, Step]:
        """conversation_message's first half: score the message in its conversation and store the new state (the
        encoder, one read, one write). `wait=False`, for the service's event loop: one try that never waits
        (Contended otherwise, carrying the reading for the retry). after_conversation_message must follow."""
        step = self.conversations.advance(
            conversation_id,
            message,
            self.detector.conversations,
            account_id,
            group_id,
            wait=wait,
            normalized=normalized,
            prepared=prepared,
        )
        ref = ItemRef(id=conversation_id, account_id=account_id, group_id=group_id, source="conversation")
        scored = ScoredConversation(
            ref, step.verdict, message=step.message, tipped=step.tipped, restarted=step.restarted
        )
        return scored, step

    def after_conversation_message(self, scored: ScoredConversation, step: Step, purge: bool = True) -> None:
        """conversation_message's second half: a tipping message feeds the risk of the account and group this
        request names and opens a case (both filled into `scored`); with `purge`, the store's idle conversations
        are purged when due."""
        if step.tipped:
            scored.alerts = self._track_conversation(step.verdict, scored.ref, step.message.id)
            scored.case_id = self._keep_conversation(
                scored, self.detector.conversations.transcript(step.state)
            )
        if purge:
            self.conversations.purge_now_and_then()

    def after_message_waits(self, scored: ScoredConversation, step: Step, purge: bool) -> bool:
        """Whether after_conversation_message(…, purge) may wait (a caller on an event loop then runs it in a
        thread): a purge; a tip that names an account or group (the risk state's locks and pruning); any tip on
        a database other than a SQLite file, or while another thread holds the write lock, or when the review
        queue's hourly purge is due. What is left is nothing, or a tip's case written to the local file."""
        if purge:
            return True
        if not step.tipped:
            return False
        db = self.database
        return (
            scored.ref.tracked or not db.is_sqlite_file or not db.write_lock_free() or self.review.purge_due()
        )

    def _track_conversation(
        self, verdict: ConversationVerdict, ref: ItemRef, message_id: str | None
    ) -> list[Alert]:
        """A flagged conversation counts as one flagged item of its account and group (logged, never raised)."""
        if not ref.tracked:
            return []
        item = ScoredItem.from_verdict(
            verdict.to_dict(timings=False),
            account_id=ref.account_id,
            group_id=ref.group_id,
            item_id=conversation_item_id(ref.id, message_id),
            source="conversation",
        )
        try:
            alerts = self.risk.ingest_many([item])
        except Exception:
            log.exception("risk state not updated for conversation %s", ref.id)
            return []
        self._alert_cases(alerts)
        return alerts

    def _keep_conversation(self, scored: ScoredConversation, conversation: dict) -> str | None:
        """Keep a flagged chat for moderators: its transcript as the case text, each evidence span moved from
        its message's text to where that message stands in the transcript (spans of messages no longer in
        the kept window are left out)."""
        lines, starts = [], {}
        at = 0
        for m in conversation["messages"]:
            prefix = f"{m['sender']}："
            starts[m["index"]] = at + len(prefix)
            lines.append(prefix + m["text"])
            at += len(lines[-1]) + 1
        verdict = scored.verdict.to_dict(timings=False)
        verdict["evidence"] = [
            {
                **e,
                "start": e["start"] + starts[e["message_index"]],
                "end": e["end"] + starts[e["message_index"]],
            }
            for e in verdict["evidence"]
            if e["message_index"] in starts
        ]
        try:
            return self.keep_for_review(
                Scored(scored.ref, verdict),
                content="\n".join(lines),
                kind="conversation",
                conversation=conversation,
            )
        except Exception:
            log.exception("conversation %s not kept for review", scored.ref.id)
            return None

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
        if target_type == "text":  # the report's own case holds the content: no review capture as well
            scored = self._classify_texts([text], [ref], capture=False)[0]
        elif target_type == "image":
            scored = self._classify_media(image or b"", ref, expected="image", capture=False)
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
        if created:
            try:
                files, kept = [], []
                if target_type == "image" and image and scored is not None:
                    name = image_name(image)
                    files, kept = [(name, image)], [image_media(name, stored["verdict"] or {})]
                self.review.open_report_case(stored, files=files, media=kept)
            except Exception:  # the report is stored (and listed by /reports) whatever the queue does
                log.exception("report %s not queued for review", stored["report_id"])
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
        `report_confirmed` alert for it. A report confirmed or rejected here closes its review case too (the
        decision is in the audit log and the feedback export like a console decision)."""
        resolved = self._resolve_report(report_id, status, moderator_id, reason, labels)
        if status in ("confirmed", "rejected"):
            try:
                self.review.report_resolved(resolved, moderator_id)
            except Exception:
                log.exception("the review case of report %s not closed", report_id)
        return resolved

    def _resolve_report(
        self,
        report_id: str,
        status: str,
        moderator_id: str,
        reason: str | None = None,
        labels: list[str] | None = None,
    ) -> dict:
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
        """Decided reports, and moderators' decisions on review and audit cases, as training examples
        (fanzha.datasets.feedback), in the order they were decided: `fanzha export-feedback`."""
        from fanzha.datasets.feedback import export_records

        decided = list(self.reports.resolved(since=since)) + self.review.feedback_rows(since=since)
        decided.sort(key=lambda r: r["updated_at"])
        return export_records(decided)

    # -- the review queue (docs/console_contract.md) ----------------------------------------------------------
    def keep_for_review(
        self,
        scored: Scored,
        *,
        content: str | None = None,
        media: bytes | None = None,
        kind: str | None = None,
        conversation: dict | None = None,
    ) -> str | None:
        """Keep a scored item for moderators when it was decided `review` (the `review` queue) or falls in the
        audit sample of `block` decisions (FANZHA_AUDIT_SAMPLE, by the item's hash). `content`: the text as
        sent; `media`: image or video bytes (kept as a file, or as keyframes); `kind` defaults to text, image or
        video; `conversation`: {"messages": [{index, sender, text, stage, fraud_score}], "trigger_index"}.
        `scored.verdict` may be a Verdict or a verdict dict. Returns the case id, or None when the item is not kept. Raises only for a bad argument; callers on a
        scoring path use the logged variant (a capture failure never fails a classification)."""
        captures = [c for c in [self._capture_of(scored, content, media, kind, conversation)] if c]
        if not captures:
            return None
        return self.review.keep(captures, report_counts=self._report_counts(captures))[0]

    def _capture(self, items: list[tuple[Scored, str | None, bytes | None]]) -> None:
        """Keep what the scoring paths decided `review` (and the audit sample), logging any failure."""
        try:
            captures = [
                c
                for s, text, data in items
                if s.verdict.decision != "pass" and (c := self._capture_of(s, text, data, None, None))
            ]
            if captures:
                self.review.keep(captures, report_counts=self._report_counts(captures))
        except Exception:
            log.exception("%d scored items not kept for review", len(items))

    def _capture_of(
        self,
        scored: Scored,
        content: str | None,
        media: bytes | None,
        kind: str | None,
        conversation: dict | None,
    ) -> Capture | None:
        verdict = scored.verdict
        decision = verdict.decision if isinstance(verdict, Verdict) else verdict["decision"]
        if decision not in ("review", "block"):
            return None
        sha = content_sha(
            media if media is not None else content,
            json.dumps(conversation, sort_keys=True, ensure_ascii=False)
            if conversation
            else scored.ref.id or "",
        )
        if decision == "review":
            queue = "review"
        elif audit_sampled(sha, self.audit_sample):
            queue = "audit"
        else:
            return None
        d = (
            self._stored_verdict(scored)
            if isinstance(verdict, Verdict)
            else {**scored.ref.to_dict(), **{k: v for k, v in verdict.items() if k != "timings"}}
        )
        media_kind = (d.get("media") or {}).get("kind")
        kind = kind or (media_kind if media is not None and media_kind else "text")
        if kind not in ("text", "image", "video", "conversation"):
            raise InputError(f"kind must be text, image, video or conversation, got {kind!r}")
        files: list[tuple[str, bytes]] = []
        kept: list[dict] = []
        if media is not None and kind == "image":
            name = image_name(media)
            files, kept = [(name, media)], [image_media(name, d)]
        elif media is not None and kind == "video":
            try:
                files, kept = keyframes(media, d)
            except Exception:
                log.exception("video keyframes not kept (the case keeps its timeline)")
        text = content if content is not None else d.get("text")
        return Capture(
            queue=queue,
            kind=kind,
            verdict=d,
            text=text,
            content_sha=sha,
            item_id=scored.ref.id,
            source=scored.ref.source,
            account_id=scored.ref.account_id,
            group_id=scored.ref.group_id,
            files=files,
            media=kept,
            conversation=conversation,
        )

    def _report_counts(self, captures: list[Capture]) -> dict[tuple[str, str], int]:
        counts: dict[tuple[str, str], int] = {}
        for cap in captures:
            for key in (("account", cap.account_id), ("group", cap.group_id)):
                if key[1] and key not in counts:
                    counts[key] = sum(self.reports.counts_against(*key).values())
        return counts

    def purge_review(self, retention_days: float | None = None) -> int:
        """Delete kept review content older than FANZHA_REVIEW_RETENTION_DAYS (or `retention_days`); also runs
        on its own, at most hourly, when items are kept. Returns the cases deleted."""
        return self.review.purge(None if retention_days is None else retention_days * 86400.0)

    def queue(
        self,
        name: str,
        *,
        status: str | None = None,
        label: str | None = None,
        kind: str | None = None,
        account_id: str | None = None,
        group_id: str | None = None,
        claimed: bool | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[dict]:
        """A queue's cases (reports, review, audit, alerts), highest priority first; open cases unless `status`
        says otherwise (open, escalated, confirmed, rejected)."""
        return self.review.queue(
            name,
            status=status,
            label=label,
            kind=kind,
            account_id=account_id,
            group_id=group_id,
            claimed=claimed,
            limit=limit,
            offset=offset,
        )

    def queue_depths(self) -> dict[str, int]:
        """Open cases per queue (every queue named, zero included)."""
        return self.review.queue_depths()

    def case(self, case_id: str) -> dict:
        """Everything the case page shows (docs/console_contract.md); NotFound for an unknown case id."""
        d = self.review.detail(case_id)
        queue, _ = parse_case_id(case_id)
        report_id = d["ref"] if queue == "reports" else None
        if report_id:
            report = self.reports.get(report_id)
            d["report"] = {
                k: report[k]
                for k in (
                    "report_id",
                    "reporter_id",
                    "reason",
                    "status",
                    "status_reason",
                    "target_type",
                    "history",
                )
            }
        alert = (d.get("verdict") or {}).get("alert") if queue == "alerts" else None
        d["account"] = self._risk_or_none("account", d["account_id"])
        d["group"] = self._risk_or_none("group", d["group_id"])
        cluster = (d["account"] or {}).get("cluster")
        if cluster is None and alert and alert.get("cluster_id"):
            try:
                cluster = self.risk.cluster(alert["cluster_id"])
            except UnknownEntity:
                cluster = None
        d["cluster"] = cluster
        recent: list[dict] = []
        for entity in (d["account"], d["group"]):
            recent += (entity or {}).get("recent_flagged") or []
        d["recent_flagged"] = sorted(recent, key=lambda x: -x["ts"])[:20]
        others: dict[str, dict] = {}
        for key, value in (("account_id", d["account_id"]), ("group_id", d["group_id"])):
            if value:
                for r in self.reports.list_reports(limit=50, **{key: value}):
                    if r["report_id"] != report_id:
                        others[r["report_id"]] = {
                            k: r[k]
                            for k in (
                                "report_id",
                                "target_type",
                                "reason",
                                "status",
                                "status_reason",
                                "created_at",
                            )
                        }
        d["other_reports"] = sorted(others.values(), key=lambda r: -r["created_at"])[:20]
        d["actions"] = self.action_book.on_entities([("account", d["account_id"]), ("group", d["group_id"])])
        return d

    def _risk_or_none(self, kind: str, entity_id: str | None) -> dict | None:
        if not entity_id:
            return None
        try:
            return self.entity_risk(kind, entity_id)
        except UnknownEntity:
            return None

    def media_path(self, case_id: str, name: str) -> Path:
        """A kept image or keyframe of a case (NotFound for a name the case does not keep, or a file gone)."""
        return self.review.media_path(case_id, name)

    def claim(self, case_id: str, moderator_id: str, ttl_s: float | None = None) -> dict:
        """Take a case for `ttl_s` seconds (FANZHA_CLAIM_TTL_S); claiming one's own case again extends it.
        Conflict while another moderator holds it. A claimed report is `in_review` for its reporter."""
        claimed = self.review.claim(case_id, moderator_id, self.claim_ttl_s if ttl_s is None else ttl_s)
        queue, ref = parse_case_id(case_id)
        if queue == "reports":
            try:
                self.reports.resolve(ref, "in_review", moderator_id=moderator_id)
            except InvalidTransition:
                pass  # in review already
        return claimed

    def release(self, case_id: str, moderator_id: str) -> None:
        """Give a claimed case back to the queue."""
        self.review.release(case_id, moderator_id)

    def decide(
        self,
        case_id: str,
        moderator_id: str,
        decision: str,
        reason: str,
        labels: list[str] | None = None,
        idempotency_key: str | None = None,
    ) -> dict:
        """Confirm (with labels), reject or escalate a case the caller has claimed (Conflict: no live claim).
        The same idempotency key returns the decision already stored. A report's decision resolves the report:
        the reason is what the reporter reads through /report_status."""
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 128:
            raise InputError("idempotency_key must be 1–128 characters")
        stored = self.review.find_decision(moderator_id, idempotency_key)
        if stored is not None:
            if stored["case_id"] != case_id:
                raise InputError(f"idempotency key {idempotency_key!r} was used for case {stored['case_id']}")
            return stored
        reason, labels = check_decision(decision, reason, labels)
        try:
            row = self.review.live_claim(case_id, moderator_id)
        except Conflict:
            again = self.review.find_decision(moderator_id, idempotency_key)
            if again is not None and again["case_id"] == case_id:
                return again  # a double submit that the first one's commit overtook
            raise
        model_labels = _json_list(row.labels)
        if (
            decision == "confirm"
            and row.kind in ("text", "image", "video", "conversation")
            and not labels
            and not model_labels
        ):
            raise InputError(
                "the model found no label in this content: say which kind of fraud it is (`labels`)"
            )
        if row.queue == "reports" and decision in ("confirm", "reject"):
            try:
                self._resolve_report(
                    row.ref,
                    "confirmed" if decision == "confirm" else "rejected",
                    moderator_id,
                    reason,
                    labels or None,
                )
            except InvalidTransition:
                again = self.review.find_decision(moderator_id, idempotency_key)
                if again is not None:  # a double submit raced this one
                    return again
                raise
        if decision == "confirm" and not labels:
            labels = model_labels  # what is confirmed: the model's labels, unless the moderator names others
        return self.review.record_decision(case_id, moderator_id, decision, reason, labels, idempotency_key)

    # -- disposal -------------------------------------------------------------------------------------------------
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
        """Warn / restrict / suspend / ban an account, mute / dissolve a group: recorded, and POSTed to
        FANZHA_ACTION_WEBHOOK (signed, retried; `delivery` says how it went)."""
        if case_id is not None:
            self.review.row(case_id)  # NotFound for a case that does not exist
        return self.action_book.dispose(
            entity_kind,
            entity_id,
            action,
            moderator_id,
            reason,
            duration_s=duration_s,
            case_id=case_id,
            evidence=evidence,
        )

    def lift(self, action_id: int | str, moderator_id: str, reason: str) -> dict:
        """Reverse an action (Conflict when it was lifted already or has expired); the lift is POSTed too."""
        return self.action_book.lift(action_id, moderator_id, reason)

    def actions(
        self,
        entity_kind: str | None = None,
        entity_id: str | None = None,
        limit: int = 100,
        after_id: int = 0,
        newest_first: bool = False,
    ) -> list[dict]:
        """Disposal actions with id > after_id, oldest first (a poll), or the latest first with `newest_first`,
        with their delivery status."""
        return self.action_book.actions(
            entity_kind=entity_kind,
            entity_id=entity_id,
            limit=limit,
            after_id=after_id,
            newest_first=newest_first,
        )

    def action(self, action_id: int | str) -> dict:
        return self.action_book.get(action_id)

    # -- dashboard and audit --------------------------------------------------------------------------------------
    def dashboard(self, days: int = 14) -> dict:
        """Queue depths, decisions per day, throughput per moderator, the model's agreement with moderators
        (precision of `block` and `review`), the label mix of confirmed cases, the top clusters."""
        return self.audit.dashboard(days, self.queue_depths(), self.clusters(limit=5))

    def audit_log(
        self,
        *,
        moderator_id: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> list[dict]:
        """Every decision, action and lift, newest first (kind: decision | action | lift)."""
        return self.audit.log(
            moderator_id=moderator_id, kind=kind, since=since, until=until, limit=limit, offset=offset
        )

    def audit_csv(
        self,
        *,
        moderator_id: str | None = None,
        kind: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 100_000,
        offset: int = 0,
    ) -> str:
        return self.audit.csv(
            moderator_id=moderator_id, kind=kind, since=since, until=until, limit=limit, offset=offset
        )

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


def _json_list(text: str | None) -> list:
    return list(json.loads(text)) if text else []


def conversation_item_id(conversation_id: str | None, message_id: str | None) -> str | None:
    """The risk state's item id of a flagged conversation: one per conversation and tipping message (a replay
    counts once), None for an anonymous one (never taken for another's replay), at most 256 characters."""
    if conversation_id is None:
        return None
    item = f"{conversation_id}#{message_id}" if message_id else conversation_id
    return item if len(item) <= 256 else "conversation:" + hashlib.sha256(item.encode()).hexdigest()


def open_tracker() -> Platform:
    """The risk state from the settings, for `fanzha score --track` (a factory: each Ray actor opens its own)."""
    return Platform.from_settings()
