"""The review queue: cases a moderator works on, their priority, claims, and decisions.

    from fanzha.platform.review import ReviewBook
    book = ReviewBook(db, review_dir=Path("/var/lib/fanzha/review"))
    [case_id] = book.keep([Capture.of(scored, content="…")])   # an item decided `review` (or an audit sample)
    book.queue("review", limit=50)                             # open cases, highest priority first
    book.claim("review:1", "mod-1", ttl_s=900)                 # Conflict while another moderator holds it

A case is one row of `review_cases`, whatever it stands for: a user's report (`report:<report id>`), an item
the service decided `review` (`review:<n>`), a sample of `block` decisions (`audit:<n>`), an early-warning
alert (`alert:<n>`). Content is kept with the case: the text, and images or video keyframes as files under
FANZHA_DATA_DIR/review/<day>/<random>/ for FANZHA_REVIEW_RETENTION_DAYS (`purge`).

Priority is one stored number, so the queue page reads an index in order whatever the depth:
100 × fraud score + 3 per repeat of the same content (reach, up to 20) + 8 per report against the same target
(up to 10) + 20 for wording aimed at minors; among equals the oldest case comes first.

A claim is a conditional UPDATE (the case is unclaimed, its claim expired, or it is the caller's own): one
statement, atomic on SQLite and on PostgreSQL alike, so two moderators can never both hold a case. A decision
needs the caller's live claim; the same idempotency key returns the decision already stored.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import secrets
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from fanzha.models.errors import Conflict, InputError, NotFound
from fanzha.models.labels import LABELS

from .database import Database

log = logging.getLogger("fanzha.review")

QUEUES = ("reports", "review", "audit", "alerts")
CASE_PREFIXES = {"report": "reports", "review": "review", "audit": "audit", "alert": "alerts"}
KINDS = ("text", "image", "video", "conversation", "account", "group", "alert")
STATUSES = ("open", "escalated", "confirmed", "rejected")  # escalated: open, passed up by a moderator
DECISIONS = ("confirm", "reject", "escalate")
MAX_REASON_CHARS = 2000
MAX_TTL_S = 24 * 3600.0
SNIPPET_CHARS = 120
MAX_KEYFRAMES = 6
DAY = 86400.0
PURGE_EVERY_S = 3600.0  # keep() purges expired content at most this often

# wording aimed at minors (schoolchildren, parents' money, minors' game accounts): raises a case's priority
MINOR_WORDS = tuple(
    (
        "未成年 小学生 初中生 高中生 中学生 学生党 学生 小朋友 小孩 孩子 儿童 少年 青少年 同学 家长 爸妈 父母 "
        "零花钱 压岁钱 作业 寒假 暑假 开学 班主任 老师 防沉迷 实名认证 游戏账号 未满18 未满十八"
    ).split()
)


class UnknownCase(NotFound):
    """No such case (or its content is gone): HTTP 404."""


class ClaimConflict(Conflict):
    """Another moderator holds the case, or the caller's claim expired: HTTP 409."""


def aimed_at_minors(text: str | None) -> bool:
    return bool(text) and any(word in text for word in MINOR_WORDS)


def priority(fraud_score: float | None, reach: int, reports: int, minors: bool) -> float:
    score = 0.5 if fraud_score is None else fraud_score
    return round(
        100.0 * score + 3.0 * min(max(reach - 1, 0), 20) + 8.0 * min(reports, 10) + (20.0 if minors else 0.0),
        4,
    )


def audit_sampled(content_sha: str, rate: float) -> bool:
    """Deterministic by the item's hash: the same item is always in, or always out, of the audit sample."""
    if rate <= 0:
        return False
    return rate >= 1 or int(content_sha[:8], 16) / 0x100000000 < rate


def parse_case_id(case_id: str) -> tuple[str, str]:
    """(queue, the part after the prefix); UnknownCase for anything that is not a case id."""
    prefix, sep, rest = (case_id or "").partition(":")
    if not sep or not rest or prefix not in CASE_PREFIXES:
        raise UnknownCase(f"unknown case {case_id!r}: case ids look like review:12 or report:r…")
    return CASE_PREFIXES[prefix], rest


# -- capture --------------------------------------------------------------------------------------------------


@dataclass
class Capture:
    """What a case keeps of one scored item."""

    queue: str  # review | audit
    kind: str
    verdict: dict
    text: str | None
    content_sha: str
    item_id: str | None = None
    source: str | None = None
    account_id: str | None = None
    group_id: str | None = None
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (name, bytes) to write
    media: list[dict] = field(default_factory=list)  # what the console draws, one entry per file
    conversation: dict | None = None

    @property
    def fraud_score(self) -> float:
        return float(self.verdict.get("fraud_score") or 0.0)


def content_sha(content: str | bytes | None, fallback: str) -> str:
    if content is None:
        content = fallback
    data = content.encode() if isinstance(content, str) else content
    return hashlib.sha256(data).hexdigest()


def image_name(data: bytes) -> str:
    for magic, ext in (
        (b"\x89PNG", "png"),
        (b"\xff\xd8", "jpg"),
        (b"GIF8", "gif"),
        (b"BM", "bmp"),
    ):
        if data.startswith(magic):
            return f"image.{ext}"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image.webp"
    return "image.bin"


def image_media(name: str, verdict: Mapping) -> dict:
    m = verdict.get("media") or {}
    return {
        "name": name,
        "kind": "image",
        "width": m.get("width"),
        "height": m.get("height"),
        "boxes": [
            {"points": line["box"], "text": line["text"], "confidence": line.get("confidence")}
            for line in verdict.get("ocr") or ()
        ],
        "qr": [{"points": q["box"], "payload": q["payload"]} for q in verdict.get("qr") or ()],
    }


def keyframes(data: bytes, verdict: Mapping) -> tuple[list[tuple[str, bytes]], list[dict]]:
    """JPEG keyframes of a video at its triggered captions (else its highest-scoring ones), at most
    MAX_KEYFRAMES: (files, media entries)."""
    timeline = list(verdict.get("timeline") or ())
    picked = [i for i, e in enumerate(timeline) if e.get("triggered")]
    if not picked:
        picked = sorted(range(len(timeline)), key=lambda i: -timeline[i]["fraud_score"])[:2]
    picked = sorted(picked)[:MAX_KEYFRAMES]
    if not picked:
        return [], []
    frames = _frames_at(data, [timeline[i]["frame_time"] for i in picked])
    files, media = [], []
    for i, (jpeg, width, height) in zip(picked, frames, strict=False):
        if jpeg is None:
            continue
        name = f"frame-{i}.jpg"
        entry = timeline[i]
        files.append((name, jpeg))
        media.append(
            {
                "name": name,
                "kind": "keyframe",
                "width": width,
                "height": height,
                "t": entry["frame_time"],
                "segment": i,
                "text": entry["text"],
                "triggered": bool(entry.get("triggered")),
                "boxes": [],
                "qr": [],
            }
        )
    return files, media


def _frames_at(data: bytes, times: list[float]) -> list[tuple[bytes | None, int, int]]:
    """Decode the first frame at or after each time (seconds), as JPEG."""
    from fanzha.models.video import open_video

    out: list[tuple[bytes | None, int, int]] = []
    container = open_video(data)
    try:
        stream = container.streams.video[0]
        base = float(stream.time_base or 0) or 1e-6
        for t in times:
            found = None
            try:
                container.seek(max(0, int(t / base)), stream=stream, backward=True, any_frame=False)
                for frame in container.decode(stream):
                    if frame.time is None or frame.time + 1e-3 >= t:
                        found = frame
                        break
            except Exception as e:  # a damaged clip: the case keeps its timeline without this frame
                log.warning("keyframe at %.2f s not kept: %s", t, e)
            if found is None:
                out.append((None, 0, 0))
                continue
            image = found.to_image()
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=85)
            out.append((buffer.getvalue(), image.width, image.height))
    finally:
        container.close()
    return out


# -- the book -------------------------------------------------------------------------------------------------


class ReviewBook:
    def __init__(self, db: Database, review_dir: Path, clock=time.time) -> None:
        self.db, self.review_dir, self.clock = db, Path(review_dir), clock
        self.cases, self.decisions = db.tables["review_cases"], db.tables["decisions"]
        self._last_purge = 0.0

    # -- capture ------------------------------------------------------------------------------------------------
    def purge_due(self) -> bool:
        """Whether the next keep() also purges expired content (hourly; it may delete many folders)."""
        return self.clock() - self._last_purge > PURGE_EVERY_S

    def keep(
        self, captures: list[Capture], report_counts: Mapping[tuple[str, str], int] | None = None
    ) -> list[str]:
        """Store captured items as open cases, in one transaction; content already open in the same queue counts
        as reach on that case instead. Returns the case id of each capture."""
        c, now, out = self.cases, self.clock(), []
        report_counts = report_counts or {}
        with self.db.write() as conn:
            for cap in captures:
                existing = conn.execute(
                    sa.select(c.c.id, c.c.case_id, c.c.fraud_score, c.c.reach, c.c.report_count, c.c.minors)
                    .where(c.c.queue == cap.queue, c.c.content_sha == cap.content_sha, c.c.status == "open")
                    .limit(1)
                ).first()
                if existing is not None:
                    reach = existing.reach + 1
                    conn.execute(
                        c.update()
                        .where(c.c.id == existing.id)
                        .values(
                            reach=reach,
                            updated_at=now,
                            priority=priority(
                                existing.fraud_score, reach, existing.report_count, existing.minors
                            ),
                        )
                    )
                    out.append(existing.case_id)
                    continue
                reports = max(
                    (report_counts.get(("account", cap.account_id), 0) if cap.account_id else 0),
                    (report_counts.get(("group", cap.group_id), 0) if cap.group_id else 0),
                )
                minors = aimed_at_minors(cap.text)
                media_dir = self._write_files(cap.files, now) if cap.files else None
                labels = list(cap.verdict.get("labels") or [])
                row = {
                    "queue": cap.queue,
                    "kind": cap.kind,
                    "status": "open",
                    "escalated": False,
                    "priority": priority(cap.fraud_score, 1, reports, minors),
                    "fraud_score": cap.fraud_score,
                    "decision": cap.verdict.get("decision"),
                    "labels": json.dumps(labels),
                    "reach": 1,
                    "report_count": reports,
                    "minors": minors,
                    "snippet": _snippet(cap.text),
                    "text": cap.text,
                    "verdict": json.dumps(cap.verdict, ensure_ascii=False),
                    "media": json.dumps(cap.media, ensure_ascii=False) if cap.media else None,
                    "media_dir": media_dir,
                    "conversation": json.dumps(cap.conversation, ensure_ascii=False)
                    if cap.conversation
                    else None,
                    "content_sha": cap.content_sha,
                    "item_id": cap.item_id,
                    "source": cap.source,
                    "account_id": cap.account_id,
                    "group_id": cap.group_id,
                }
                out.append(self._insert(conn, row, now, prefix=cap.queue))
        if now - self._last_purge > PURGE_EVERY_S:
            self._last_purge = now
            try:
                self.purge(retention_s=None)
            except Exception:
                log.exception("review content not purged")
        return out

    def open_report_case(
        self,
        report: Mapping,
        minors: bool | None = None,
        files: list[tuple[str, bytes]] | None = None,
        media: list[dict] | None = None,
    ) -> str:
        """The case of a new report (`reports` queue), with a reported image kept as a file (`files`, `media`).
        Reports against the same account, group or content count toward every open report case of that
        target."""
        c, now = self.cases, self.clock()
        verdict = report.get("verdict") or {}
        text = report.get("target_text")
        score = verdict.get("fraud_score")
        kind = report["target_type"]
        sha = content_sha(text, "") if text else None
        case_id = f"report:{report['report_id']}"
        with self.db.write() as conn:
            if conn.execute(sa.select(c.c.id).where(c.c.case_id == case_id)).first():
                return case_id
            same = self._same_target(report, sha)
            siblings = conn.execute(
                sa.select(c.c.id, c.c.fraud_score, c.c.reach, c.c.minors).where(
                    c.c.queue == "reports", c.c.status == "open", same
                )
            ).all()
            count = len(siblings) + 1
            for s in siblings:
                conn.execute(
                    c.update()
                    .where(c.c.id == s.id)
                    .values(report_count=count, priority=priority(s.fraud_score, s.reach, count, s.minors))
                )
            minors = (
                aimed_at_minors(f"{text or ''} {report.get('reason') or ''}") if minors is None else minors
            )
            media_dir = self._write_files(files, now) if files else None
            row = {
                "case_id": case_id,
                "queue": "reports",
                "ref": report["report_id"],
                "kind": kind,
                "status": "open",
                "escalated": False,
                "priority": priority(score, 1, count, minors),
                "fraud_score": score,
                "decision": verdict.get("decision"),
                "labels": json.dumps(list(verdict.get("labels") or [])),
                "reach": 1,
                "report_count": count,
                "minors": minors,
                "snippet": _snippet(text or report.get("reason")),
                "text": text,
                "verdict": json.dumps(verdict, ensure_ascii=False) if verdict else None,
                "media": json.dumps(media, ensure_ascii=False) if media else None,
                "media_dir": media_dir,
                "content_sha": sha,
                "item_id": verdict.get("id"),
                "source": report.get("target_source"),
                "account_id": report.get("target_account_id"),
                "group_id": report.get("target_group_id"),
                "created_at": report.get("created_at") or now,
                "updated_at": now,
            }
            conn.execute(c.insert(), row)
        return case_id

    def _same_target(self, report: Mapping, sha: str | None):
        c = self.cases
        kind = report["target_type"]
        if kind == "account":
            return (c.c.kind == "account") & (c.c.account_id == report["target_account_id"])
        if kind == "group":
            return (c.c.kind == "group") & (c.c.group_id == report["target_group_id"])
        return c.c.content_sha == sha

    def open_alert_cases(self, alerts: Iterable[Mapping]) -> list[str]:
        """A case per alert (`alerts` queue): the alert's value over its threshold stands in for a score."""
        c, now, out = self.cases, self.clock(), []
        with self.db.write() as conn:
            for a in alerts:
                case_id = f"alert:{a['id']}"
                if conn.execute(sa.select(c.c.id).where(c.c.case_id == case_id)).first():
                    out.append(case_id)
                    continue
                score = (
                    min(1.0, float(a["value"]) / float(a["threshold"] or 1) * 0.5) if a["threshold"] else 0.5
                )
                detail = a.get("detail") or {}
                labels = (
                    [x for x in detail.get("labels") or () if x in LABELS] if isinstance(detail, dict) else []
                )
                account = a["entity_id"] if a.get("entity_kind") == "account" else None
                group = a["entity_id"] if a.get("entity_kind") == "group" else None
                conn.execute(
                    c.insert(),
                    {
                        "case_id": case_id,
                        "queue": "alerts",
                        "ref": str(a["id"]),
                        "kind": "alert",
                        "status": "open",
                        "escalated": False,
                        "priority": priority(score, 1, 0, False),
                        "fraud_score": round(score, 4),
                        "decision": None,
                        "labels": json.dumps(labels),
                        "reach": 1,
                        "report_count": 0,
                        "minors": False,
                        "snippet": _snippet(a.get("message")),
                        "text": a.get("message"),
                        "verdict": json.dumps({"alert": dict(a)}, ensure_ascii=False, default=str),
                        "account_id": account,
                        "group_id": group,
                        "item_id": a.get("item_id"),
                        "created_at": a.get("ts") or now,
                        "updated_at": now,
                    },
                )
                out.append(case_id)
        return out

    def _insert(self, conn: Connection, row: dict, now: float, prefix: str) -> str:
        c = self.cases
        pending = f"{prefix}:pending-{secrets.token_hex(8)}"
        new_id = conn.execute(
            c.insert().values(case_id=pending, created_at=now, updated_at=now, **row).returning(c.c.id)
        ).scalar_one()
        case_id = f"{prefix}:{new_id}"
        conn.execute(c.update().where(c.c.id == new_id).values(case_id=case_id))
        return case_id

    def _write_files(self, files: list[tuple[str, bytes]], now: float) -> str:
        day = time.strftime("%Y%m%d", time.gmtime(now))
        rel = f"{day}/{secrets.token_hex(8)}"
        folder = self.review_dir / rel
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in files:
            (folder / name).write_bytes(data)
        return rel

    def purge(self, retention_s: float | None = None, now: float | None = None) -> int:
        """Delete kept content older than the retention: review and audit cases with their files, decided
        report and alert cases; open reports and alerts stay until decided (the report book keeps reports).
        Returns the number of cases deleted."""
        from fanzha.models.settings import settings

        retention_s = settings().review_retention_days * DAY if retention_s is None else retention_s
        now = self.clock() if now is None else now
        cutoff = now - retention_s
        c = self.cases
        old = (c.c.created_at < cutoff) & (c.c.queue.in_(("review", "audit")) | (c.c.status != "open"))
        with self.db.write() as conn:
            dirs = (
                conn.execute(sa.select(c.c.media_dir).where(old, c.c.media_dir.is_not(None))).scalars().all()
            )
            gone = conn.execute(c.delete().where(old)).rowcount
        for rel in dirs:
            shutil.rmtree(self.review_dir / rel, ignore_errors=True)
        cutoff_day = time.strftime("%Y%m%d", time.gmtime(cutoff - DAY))
        if self.review_dir.is_dir():  # folders of days wholly past the retention (left by a crash)
            for day in self.review_dir.iterdir():
                if day.is_dir() and day.name.isdigit() and day.name < cutoff_day:
                    shutil.rmtree(day, ignore_errors=True)
        if gone:
            log.info("purged %d review cases older than %.1f days", gone, retention_s / DAY)
        return gone

    # -- queues -------------------------------------------------------------------------------------------------
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
        if name not in QUEUES:
            raise InputError(f"queue must be one of {QUEUES}, got {name!r}")
        if status is not None and status not in STATUSES:
            raise InputError(f"status must be one of {STATUSES}, got {status!r}")
        if label is not None and label not in LABELS:
            raise InputError(f"unknown label {label!r}; known: {list(LABELS)}")
        if kind is not None and kind not in KINDS:
            raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
        if not 1 <= limit <= 1000 or offset < 0:
            raise InputError("limit must be 1–1000 and offset at least 0")
        c, now = self.cases, self.clock()
        query = sa.select(*self._summary_columns).where(c.c.queue == name)
        if status in (None, "open", "escalated"):
            query = query.where(c.c.status == "open")
            if status is not None:
                query = query.where(c.c.escalated == (status == "escalated"))
        else:
            query = query.where(c.c.status == status)
        for column, value in ((c.c.kind, kind), (c.c.account_id, account_id), (c.c.group_id, group_id)):
            if value is not None:
                query = query.where(column == value)
        if label is not None:
            query = query.where(c.c.labels.contains(f'"{label}"'))
        live = c.c.claimed_by.is_not(None) & (c.c.claim_expires_at > now)
        if claimed is True:
            query = query.where(live)
        elif claimed is False:
            query = query.where(~live | c.c.claimed_by.is_(None))
        query = query.order_by(c.c.priority.desc(), c.c.created_at, c.c.id).limit(limit).offset(offset)
        with self.db.read() as conn:
            return [self._summary(row, now) for row in conn.execute(query)]

    def queue_depths(self) -> dict[str, int]:
        c = self.cases
        with self.db.read() as conn:
            counts = dict(
                conn.execute(
                    sa.select(c.c.queue, sa.func.count()).where(c.c.status == "open").group_by(c.c.queue)
                ).all()
            )
        return {q: int(counts.get(q, 0)) for q in QUEUES}

    @property
    def _summary_columns(self):
        c = self.cases
        return [
            c.c[name]
            for name in (
                "case_id queue kind status escalated priority fraud_score labels decision reach report_count "
                "minors created_at snippet account_id group_id claimed_by claim_expires_at ref"
            ).split()
        ]

    @staticmethod
    def _summary(row, now: float) -> dict:
        live = row.claimed_by is not None and (row.claim_expires_at or 0) > now
        return {
            "case_id": row.case_id,
            "queue": row.queue,
            "kind": row.kind,
            "status": "escalated" if row.status == "open" and row.escalated else row.status,
            "priority": row.priority,
            "fraud_score": row.fraud_score,
            "labels": json.loads(row.labels),
            "decision": row.decision,
            "reach": row.reach,
            "report_count": row.report_count,
            "minors": bool(row.minors),
            "created_at": row.created_at,
            "snippet": row.snippet,
            "account_id": row.account_id,
            "group_id": row.group_id,
            "claimed_by": row.claimed_by if live else None,
            "claim_expires_at": row.claim_expires_at if live else None,
        }

    def row(self, case_id: str, conn: Connection | None = None):
        parse_case_id(case_id)
        query = sa.select(self.cases).where(self.cases.c.case_id == case_id)
        if conn is not None:
            found = conn.execute(query).first()
        else:
            with self.db.read() as conn2:
                found = conn2.execute(query).first()
        if found is None:
            raise UnknownCase(f"unknown case {case_id!r}")
        return found

    def detail(self, case_id: str) -> dict:
        """The case's own part of the case page: summary, text, verdict, media, timeline, conversation, and the
        decisions taken on it."""
        now = self.clock()
        with self.db.read() as conn:
            row = self.row(case_id, conn)
            decisions = self._decisions_of(conn, case_id)
        verdict = json.loads(row.verdict) if row.verdict else None
        out = self._summary(row, now)
        out.update(
            ref=row.ref,
            item_id=row.item_id,
            source=row.source,
            text=row.text,
            evidence=list((verdict or {}).get("evidence") or []),
            verdict=verdict,
            media=json.loads(row.media) if row.media else [],
            timeline=list((verdict or {}).get("timeline") or []),
            conversation=json.loads(row.conversation) if row.conversation else None,
            decisions=decisions,
            updated_at=row.updated_at,
            decided_at=row.decided_at,
        )
        return out

    def media_path(self, case_id: str, name: str) -> Path:
        row = self.row(case_id)
        names = {m["name"] for m in json.loads(row.media)} if row.media else set()
        if name not in names or not row.media_dir:
            raise UnknownCase(f"case {case_id} keeps no file {name!r}")
        path = self.review_dir / row.media_dir / name
        if not path.is_file():
            raise UnknownCase(f"the file {name!r} of case {case_id} is gone (retention)")
        return path

    # -- claims -------------------------------------------------------------------------------------------------
    def claim(self, case_id: str, moderator_id: str, ttl_s: float) -> dict:
        _check_moderator(moderator_id)
        if not 0 < ttl_s <= MAX_TTL_S:
            raise InputError(f"ttl_s must be within (0, {MAX_TTL_S:.0f}]")
        c, now = self.cases, self.clock()
        with self.db.write() as conn:
            row = self.row(case_id, conn)
            if row.status != "open":
                raise ClaimConflict(f"case {case_id} is {row.status}: there is nothing left to claim")
            # one conditional statement: atomic on both backends (PostgreSQL re-checks the WHERE after a
            # concurrent update commits; SQLite runs writers one at a time)
            taken = conn.execute(
                c.update()
                .where(
                    c.c.case_id == case_id,
                    c.c.status == "open",
                    sa.or_(
                        c.c.claimed_by.is_(None),
                        c.c.claim_expires_at <= now,
                        c.c.claimed_by == moderator_id,
                    ),
                )
                .values(claimed_by=moderator_id, claim_expires_at=now + ttl_s)
            ).rowcount
            if taken != 1:
                holder = conn.execute(sa.select(c.c.claimed_by).where(c.c.case_id == case_id)).scalar()
                raise ClaimConflict(f"case {case_id} is claimed by {holder}")
            row = self.row(case_id, conn)
        return {"case_id": case_id, "claimed_by": moderator_id, "claim_expires_at": row.claim_expires_at}

    def release(self, case_id: str, moderator_id: str) -> None:
        """Give a claim back; releasing a case one does not hold changes nothing."""
        c = self.cases
        self.row(case_id)
        with self.db.write() as conn:
            conn.execute(
                c.update()
                .where(c.c.case_id == case_id, c.c.claimed_by == moderator_id)
                .values(claimed_by=None, claim_expires_at=None)
            )

    def live_claim(self, case_id: str, moderator_id: str):
        """The case row if the caller holds a live claim on it; ClaimConflict otherwise."""
        row = self.row(case_id)
        self._check_claim(row, moderator_id, self.clock())
        return row

    @staticmethod
    def _check_claim(row, moderator_id: str, now: float) -> None:
        if row.status != "open":
            raise ClaimConflict(f"case {row.case_id} is already {row.status}")
        if row.claimed_by != moderator_id:
            holder = (
                f"it is claimed by {row.claimed_by}"
                if row.claimed_by and (row.claim_expires_at or 0) > now
                else "it is not claimed"
            )
            raise ClaimConflict(f"claim case {row.case_id} before deciding it: {holder}")
        if (row.claim_expires_at or 0) <= now:
            raise ClaimConflict(f"your claim on case {row.case_id} expired: claim it again")

    # -- decisions ----------------------------------------------------------------------------------------------
    def find_decision(self, moderator_id: str, idempotency_key: str | None) -> dict | None:
        if not idempotency_key:
            return None
        d = self.decisions
        with self.db.read() as conn:
            row = conn.execute(
                sa.select(d).where(d.c.moderator_id == moderator_id, d.c.idempotency_key == idempotency_key)
            ).first()
        return self._decision_dict(row) if row else None

    def record_decision(
        self,
        case_id: str,
        moderator_id: str,
        decision: str,
        reason: str,
        labels: list[str],
        idempotency_key: str | None,
    ) -> dict:
        """Store a decision and close (or escalate) the case, re-checking the caller's claim in the same
        transaction; the same idempotency key from the same moderator returns the decision already stored."""
        c, d, now = self.cases, self.decisions, self.clock()
        try:
            with self.db.write() as conn:
                if idempotency_key:  # a double submit that waited for the first one's transaction
                    stored = conn.execute(
                        sa.select(d).where(
                            d.c.moderator_id == moderator_id, d.c.idempotency_key == idempotency_key
                        )
                    ).first()
                    if stored is not None:
                        return self._decision_dict(stored)
                row = self.row(case_id, conn)
                self._check_claim(row, moderator_id, now)
                status = {"confirm": "confirmed", "reject": "rejected"}.get(decision, "open")
                done = conn.execute(
                    c.update()
                    .where(
                        c.c.id == row.id,
                        c.c.status == "open",
                        c.c.claimed_by == moderator_id,
                        c.c.claim_expires_at > now,
                    )
                    .values(
                        status=status,
                        escalated=decision == "escalate" or row.escalated,
                        claimed_by=None,
                        claim_expires_at=None,
                        decided_at=now if status != "open" else None,
                        updated_at=now,
                    )
                ).rowcount
                if done != 1:
                    raise ClaimConflict(f"case {case_id} changed while deciding it: reload it")
                new_id = conn.execute(
                    d.insert()
                    .values(
                        case_id=case_id,
                        queue=row.queue,
                        kind=row.kind,
                        moderator_id=moderator_id,
                        decision=decision,
                        reason=reason,
                        labels=json.dumps(labels),
                        model_decision=row.decision,
                        fraud_score=row.fraud_score,
                        text=row.text,
                        source=row.source,
                        account_id=row.account_id,
                        group_id=row.group_id,
                        idempotency_key=idempotency_key,
                        ts=now,
                    )
                    .returning(d.c.id)
                ).scalar_one()
                stored = conn.execute(sa.select(d).where(d.c.id == new_id)).one()
                return self._decision_dict(stored)
        except (sa.exc.IntegrityError, ClaimConflict):
            # PostgreSQL: the same key raced in from another connection (the unique index refused it, or the
            # case closed under this transaction's UPDATE): the decision stored is the answer
            found = self.find_decision(moderator_id, idempotency_key)
            if found is None or found["case_id"] != case_id:
                raise
            return found

    def report_resolved(self, report: Mapping, moderator_id: str) -> None:
        """A report confirmed or rejected outside the console (/resolve_report): close its case and record the
        decision, whoever held a claim on it."""
        c, d, now = self.cases, self.decisions, self.clock()
        decision = "confirm" if report["status"] == "confirmed" else "reject"
        with self.db.write() as conn:
            row = conn.execute(
                sa.select(c).where(c.c.case_id == f"report:{report['report_id']}", c.c.status == "open")
            ).first()
            if row is None:
                return
            conn.execute(
                c.update()
                .where(c.c.id == row.id)
                .values(
                    status=report["status"],
                    claimed_by=None,
                    claim_expires_at=None,
                    decided_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                d.insert().values(
                    case_id=row.case_id,
                    queue=row.queue,
                    kind=row.kind,
                    moderator_id=moderator_id,
                    decision=decision,
                    reason=report.get("status_reason") or "",
                    labels=json.dumps(list(report.get("labels") or [])),
                    model_decision=row.decision,
                    fraud_score=row.fraud_score,
                    text=row.text,
                    source=row.source,
                    account_id=row.account_id,
                    group_id=row.group_id,
                    idempotency_key=None,
                    ts=now,
                )
            )

    def _decisions_of(self, conn: Connection, case_id: str) -> list[dict]:
        d = self.decisions
        return [
            self._decision_dict(x)
            for x in conn.execute(sa.select(d).where(d.c.case_id == case_id).order_by(d.c.id))
        ]

    @staticmethod
    def _decision_dict(row) -> dict:
        return {
            "decision_id": row.id,
            "case_id": row.case_id,
            "queue": row.queue,
            "kind": row.kind,
            "moderator_id": row.moderator_id,
            "decision": row.decision,
            "reason": row.reason,
            "labels": json.loads(row.labels),
            "model_decision": row.model_decision,
            "fraud_score": row.fraud_score,
            "account_id": row.account_id,
            "group_id": row.group_id,
            "idempotency_key": row.idempotency_key,
            "ts": row.ts,
        }

    def feedback_rows(self, since: float | None = None) -> list[dict]:
        """Review-queue and audit decisions (confirm / reject) on content, shaped like decided reports for
        fanzha.datasets.feedback.export_records, in the order they were decided."""
        d = self.decisions
        query = (
            sa.select(d)
            .where(
                d.c.queue.in_(("review", "audit")),
                d.c.decision.in_(("confirm", "reject")),
                d.c.text.is_not(None),
            )
            .order_by(d.c.ts, d.c.id)
        )
        if since is not None:
            query = query.where(d.c.ts >= since)
        c = self.cases
        with self.db.read() as conn:
            rows = conn.execute(query).all()
            model_labels = (
                dict(
                    conn.execute(
                        sa.select(c.c.case_id, c.c.labels).where(c.c.case_id.in_({r.case_id for r in rows}))
                    ).all()
                )
                if rows
                else {}
            )
        out = []
        for r in rows:
            tag = r.case_id.replace(":", "-")
            out.append(
                {
                    "report_id": tag,
                    "record_id": f"{tag}-d{r.id}",
                    "provenance": f"moderator_{r.queue}:{r.case_id}",
                    "status": "confirmed" if r.decision == "confirm" else "rejected",
                    "target_type": "image" if r.kind in ("image", "video") else "text",
                    "target_text": r.text,
                    "target_source": r.source if r.kind != "video" else (r.source or "video_caption"),
                    "labels": json.loads(r.labels) or None,
                    "verdict": {"labels": json.loads(model_labels.get(r.case_id) or "[]")},
                    "updated_at": r.ts,
                }
            )
        return out


def _snippet(text: str | None) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"


def _check_moderator(moderator_id: str) -> None:
    if not moderator_id or not isinstance(moderator_id, str) or len(moderator_id) > 256:
        raise InputError("moderator_id must be 1–256 characters")


def check_decision(decision: str, reason: str | None, labels: list[str] | None) -> tuple[str, list[str]]:
    """The reason stripped and the labels checked; InputError naming what is wrong."""
    if decision not in DECISIONS:
        raise InputError(f"decision must be one of {DECISIONS}, got {decision!r}")
    reason = (reason or "").strip()
    if not reason or len(reason) > MAX_REASON_CHARS:
        raise InputError(f"a decision needs a reason of 1–{MAX_REASON_CHARS:,} characters")
    labels = list(labels or [])
    if labels and decision != "confirm":
        raise InputError("labels go with `confirm` only")
    unknown = [x for x in labels if x not in LABELS]
    if unknown:
        raise InputError(f"unknown labels {unknown}; known: {list(LABELS)}")
    return reason, labels
