"""Every endpoint of the service through BentoML's own clients, as a platform engineer would call them, with
the answers checked as typed values (the service's response models) and against the "lists are lists" rule.

`walk_sync` / `walk_async` take a client for the platform endpoints and one for the moderator endpoints (the
same client when the server has no moderator keys) and a tag that keeps this walk's accounts apart from other
walks' on the same server. The sync client's task `submit` is broken in BentoML 1.4.40: tasks are submitted
the way README "From Python" says (client.request) and followed with the client's task methods.
"""

from __future__ import annotations

import asyncio
import base64
import time
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter

from fanzha.serving.schemas import (
    Action,
    AlertBody,
    BatchResult,
    Cluster,
    EntityRisk,
    JobStatus,
    Report,
    ReportReceipt,
    ReportStatus,
    VerdictBody,
)

from ..conftest import BENIGN, MEDIA, SCAM

SCAM_SAME_GROUP = "免费领王者皮肤！加QQ群 83726154 领取，先交10元激活费马上到账"  # pushes SCAM's QQ group too
FEE = "皮肤已经给你绑定好了，但要先交10元激活费才能到账，付完马上退"
TASK_SECONDS = 120
# the server these walks run against: two flagged items raise an alert and two accounts make a cluster
SERVER_ENV = {"FANZHA_ALERT_FLAGGED": "2", "FANZHA_ALERT_CLUSTER_ACCOUNTS": "2"}
ENDPOINTS = {
    "/classify_text",
    "/classify_image",
    "/classify_video",
    "/classify_batch",
    "/scan_video/submit",
    "/scan_video/status",
    "/scan_video/get",
    "/classify_archive/submit",
    "/classify_archive/status",
    "/classify_archive/get",
    "/account_risk",
    "/group_risk",
    "/clusters",
    "/alerts",
    "/report",
    "/report_status",
    "/reports",
    "/resolve_report",
    "/actions",
    "/dispose",
    "/lift_action",
}


def typed(kind: Any, value: Any) -> Any:
    """The answer as the service's typed response model(s), after checking the JSON itself: every field of a
    model is there, and a list-typed field is a list, never null (validation alone would not tell: schemas.Body
    turns a null list into [])."""
    every_field_and_no_null_list(kind, value)
    return TypeAdapter(kind).validate_python(value)


def every_field_and_no_null_list(kind: Any, value: Any, where: str = "answer") -> None:
    origin = get_origin(kind)
    if origin is Annotated:
        every_field_and_no_null_list(get_args(kind)[0], value, where)
    elif origin is list:
        assert isinstance(value, list), f"{where} is {value!r}, not a list"
        for i, item in enumerate(value):
            every_field_and_no_null_list(get_args(kind)[0], item, f"{where}[{i}]")
    elif origin in (Union, UnionType):
        if value is not None or type(None) not in get_args(kind):
            (inner,) = [a for a in get_args(kind) if a is not type(None)]
            every_field_and_no_null_list(inner, value, where)
    elif isinstance(kind, type) and issubclass(kind, BaseModel):
        assert isinstance(value, dict), f"{where} is {value!r}, not an object"
        for name, field in kind.model_fields.items():
            assert name in value, f"{where} has no {name!r}"
            every_field_and_no_null_list(field.annotation, value[name], f"{where}.{name}")


def b64(name: str) -> str:
    return base64.b64encode((MEDIA / name).read_bytes()).decode()


class Ids:
    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.scammer, self.helper, self.group, self.reporter = (
            f"{tag}-{x}" for x in ("u1", "u2", "g1", "kid")
        )

    def texts(self) -> list[dict]:
        return [
            {
                "id": f"{self.tag}-c1",
                "text": SCAM,
                "account_id": self.scammer,
                "group_id": self.group,
                "source": "comment",
            },
            {
                "id": f"{self.tag}-c2",
                "text": SCAM_SAME_GROUP,
                "account_id": self.scammer,
                "group_id": self.group,
            },
            {"id": f"{self.tag}-c3", "text": SCAM, "account_id": self.helper},
            {"id": f"{self.tag}-c4", "text": BENIGN, "account_id": self.scammer},
        ]


# -- checks shared by both walks --------------------------------------------------------------------------------------


def check_texts(ids: Ids, answer: list) -> None:
    verdicts = typed(list[VerdictBody], answer)
    assert [v.id for v in verdicts] == [item["id"] for item in ids.texts()]
    assert [v.decision != "pass" for v in verdicts] == [True, True, True, False]
    first = verdicts[0]
    assert (first.account_id, first.group_id, first.source) == (ids.scammer, ids.group, "comment")
    assert any(e.kind == "qq_group" and e.value == "83726154" and e.locations == [] for e in first.evidence)
    assert (first.ocr, first.qr, first.timeline, first.text, first.media) == ([], [], [], None, None)
    # the second flagged item of the account raises an alert in its own verdict (FANZHA_ALERT_FLAGGED=2)
    assert any(a.rule == "flagged_in_window" and a.entity_id == ids.scammer for a in verdicts[1].alerts)
    assert verdicts[3].alerts == [] and verdicts[3].labels == []


def check_image(answer: dict) -> None:
    image = typed(VerdictBody, answer)
    assert image.id == "img-1" and image.decision != "pass" and image.timeline == [] and image.alerts == []
    assert (
        image.qr and image.qr[0].payload.startswith("http") and all(len(line.box) == 4 for line in image.ocr)
    )
    assert (
        image.media is not None
        and image.media.kind == "image"
        and image.media.duration is None
        and image.media.trigger is None
    )
    assert any(
        loc.source == "qr" and len(loc.box) == 4 and loc.start is None
        for e in image.evidence
        for loc in e.locations
    )


def check_video(answer: dict) -> None:
    video = typed(VerdictBody, answer)
    assert video.decision != "pass" and [s.triggered for s in video.timeline] == [False, True, False]
    assert video.media is not None and video.media.kind == "video" and video.media.trigger is not None
    assert video.media.trigger.by == "segment" and video.qr == []
    assert any(
        loc.source == "segment" and loc.box == [] and loc.start is not None
        for e in video.evidence
        for loc in e.locations
    )


def batch_items(ids: Ids) -> list[dict]:
    return [
        {
            "type": "text",
            "id": f"{ids.tag}-b1",
            "text": "学生党在家也能做，给抖音视频点赞一单3元日结，进任务群接垫付大单",
        },
        {"type": "image", "id": f"{ids.tag}-b2", "data": b64("poster.png")},
        {"type": "image", "id": f"{ids.tag}-b3", "data": base64.b64encode(b"not an image").decode()},
    ]


def check_batch(ids: Ids, answer: list) -> None:
    results = typed(list[BatchResult], answer)
    assert [r.id for r in results] == [f"{ids.tag}-b{i}" for i in (1, 2, 3)]
    assert (
        results[0].verdict.decision != "pass" and results[1].verdict.ocr and results[1].verdict.timeline == []
    )
    assert results[2].verdict is None and "unsupported media" in results[2].error


def check_archive(answer: dict) -> None:
    job = typed(JobStatus, answer)
    assert (job.scored, job.failed) == (2, 1) and job.results[2].error


def check_risk(ids: Ids, account: dict, group: dict, clusters: list, alerts: list) -> int:
    risk = typed(EntityRisk, account)
    assert risk.kind == "account" and risk.id == ids.scammer and risk.level == "high" and risk.flagged == 2
    assert risk.alerts and any(h.value == "83726154" for h in risk.handles) and risk.cluster is not None
    assert typed(EntityRisk, group).id == ids.group
    ours = [c for c in typed(list[Cluster], clusters) if ids.scammer in c.members]
    assert ours and ids.helper in ours[0].members
    polled = typed(list[AlertBody], alerts)
    assert any(a.rule == "flagged_in_window" and a.entity_id == ids.scammer for a in polled)
    return max(a.id for a in polled)


def report_args(ids: Ids) -> dict:
    return {
        "reporter_id": ids.reporter,
        "idempotency_key": f"{ids.tag}-report-1",
        "reason": "他说免费送皮肤，又让我先交激活费",
        "target": {
            "type": "text",
            "text": FEE,
            "account_id": ids.scammer,
            "item_id": f"{ids.tag}-dm-1",
            "source": "dm",
        },
    }


def check_receipts(text: dict, again: dict, image: dict, account: dict) -> None:
    receipt = typed(ReportReceipt, text)
    assert (
        receipt.status == "received"
        and not receipt.duplicate
        and receipt.verdict.decision != "pass"
        and receipt.risk is None
    )
    assert typed(ReportReceipt, again).duplicate and again["report_id"] == text["report_id"]
    assert typed(ReportReceipt, image).verdict.qr
    by_account = typed(ReportReceipt, account)
    assert by_account.verdict is None and by_account.risk is not None and by_account.risk.level == "high"


def check_moderation(
    ids: Ids, report_id: str, queue: list, in_review: dict, confirmed: dict, status: dict
) -> None:
    reports = typed(list[Report], queue)
    ours = [r for r in reports if r.report_id == report_id]
    assert ours and ours[0].labels == [] and ours[0].verdict is not None and ours[0].verdict.timeline == []
    assert typed(Report, in_review).status == "in_review"
    final = typed(Report, confirmed)
    assert (
        final.status == "confirmed"
        and final.labels == ["fee_demand"]
        and [e.status for e in final.history][-1] == "confirmed"
    )
    seen = typed(ReportStatus, status)
    assert seen.status == "confirmed" and seen.status_reason == "已核实为诈骗，账号已封禁，感谢举报"


def check_actions(ids: Ids, disposed: dict, listed: list, lifted: dict) -> None:
    action = typed(Action, disposed)
    assert (action.entity_id, action.action, action.status) == (ids.scammer, "suspend", "active")
    assert action.delivery == "not_configured" and action.duration_s == 3600
    assert [a.action_id for a in typed(list[Action], listed)] == [action.action_id]
    lift = typed(Action, lifted)
    assert (lift.status, lift.lifted_by, [d.event for d in lift.deliveries]) == (
        "lifted",
        "mod-3",
        ["dispose", "lift"],
    )


DISPOSE = {"entity_kind": "account", "action": "suspend", "moderator_id": "mod-3", "duration_s": 3600}


CONFIRM = {"status": "confirmed", "reason": "已核实为诈骗，账号已封禁，感谢举报", "labels": ["fee_demand"]}


# -- the walks ------------------------------------------------------------------------------------------------------


def sync_task(client, name: str, **request) -> tuple[str, Any]:
    """Submit a task the way that works with SyncHTTPClient in BentoML 1.4.40, poll it, fetch its result."""
    task_id = client.request("POST", f"/{name}/submit", **request).raise_for_status().json()["task_id"]
    endpoint = getattr(client, name)
    deadline = time.time() + TASK_SECONDS
    while (status := endpoint.get_status(task_id).value) not in (
        "completed",
        "failed",
    ) and time.time() < deadline:
        time.sleep(0.3)
    assert status == "completed", status
    return task_id, endpoint.get(task_id)


def walk_sync(client, moderator, tag: str) -> None:
    ids = Ids(tag)
    check_texts(ids, client.classify_text(items=ids.texts()))
    check_image(client.classify_image(file=MEDIA / "qr.png", id="img-1"))
    check_video(client.classify_video(file=MEDIA / "flash_scam.mp4"))
    check_batch(ids, client.classify_batch(items=batch_items(ids)))
    with open(MEDIA / "flash_scam.mp4", "rb") as f:
        check_video(sync_task(client, "scan_video", files={"file": f})[1])
    check_archive(sync_task(client, "classify_archive", json={"items": batch_items(ids)})[1])
    last = check_risk(
        ids,
        client.account_risk(account_id=ids.scammer),
        client.group_risk(group_id=ids.group),
        client.clusters(min_accounts=2),
        client.alerts(after_id=0, account_id=ids.scammer),
    )
    assert client.alerts(after_id=last, account_id=ids.scammer) == []  # polled up to date
    text = client.report(**report_args(ids))
    check_receipts(
        text,
        client.report(**report_args(ids)),
        client.report(
            reporter_id=ids.reporter,
            reason="二维码是骗子的群",
            target={"type": "image", "data": b64("qr.png")},
        ),
        client.report(
            reporter_id=ids.reporter,
            reason="这个号一直发免费皮肤",
            target={"type": "account", "account_id": ids.scammer},
        ),
    )
    rid = text["report_id"]
    queue = moderator.reports(status="received", reporter_id=ids.reporter)
    in_review = moderator.resolve_report(report_id=rid, status="in_review", moderator_id="mod-3")
    confirmed = moderator.resolve_report(report_id=rid, moderator_id="mod-3", **CONFIRM)
    check_moderation(
        ids, rid, queue, in_review, confirmed, client.report_status(report_id=rid, reporter_id=ids.reporter)
    )
    disposed = moderator.dispose(entity_id=ids.scammer, reason="多次发布虚假赠送", **DISPOSE)
    check_actions(
        ids,
        disposed,
        moderator.actions(account_id=ids.scammer),
        moderator.lift_action(action_id=disposed["action_id"], moderator_id="mod-3", reason="申诉成功"),
    )


async def async_task(task) -> Any:
    deadline = time.time() + TASK_SECONDS
    while (status := (await task.get_status()).value) not in (
        "completed",
        "failed",
    ) and time.time() < deadline:
        await asyncio.sleep(0.3)
    assert status == "completed", status
    return await task.get()


async def walk_async(client, moderator, tag: str) -> None:
    ids = Ids(tag)
    check_texts(ids, await client.classify_text(items=ids.texts()))
    check_image(await client.classify_image(file=MEDIA / "qr.png", id="img-1"))
    check_video(await client.classify_video(file=MEDIA / "flash_scam.mp4"))
    check_batch(ids, await client.classify_batch(items=batch_items(ids)))
    # the async client submits tasks itself, with a file too
    check_video(await async_task(await client.scan_video.submit(file=MEDIA / "flash_scam.mp4")))
    check_archive(await async_task(await client.classify_archive.submit(items=batch_items(ids))))
    last = check_risk(
        ids,
        await client.account_risk(account_id=ids.scammer),
        await client.group_risk(group_id=ids.group),
        await client.clusters(min_accounts=2),
        await client.alerts(after_id=0, account_id=ids.scammer),
    )
    assert await client.alerts(after_id=last, account_id=ids.scammer) == []
    text = await client.report(**report_args(ids))
    check_receipts(
        text,
        await client.report(**report_args(ids)),
        await client.report(
            reporter_id=ids.reporter,
            reason="二维码是骗子的群",
            target={"type": "image", "data": b64("qr.png")},
        ),
        await client.report(
            reporter_id=ids.reporter,
            reason="这个号一直发免费皮肤",
            target={"type": "account", "account_id": ids.scammer},
        ),
    )
    rid = text["report_id"]
    queue = await moderator.reports(status="received", reporter_id=ids.reporter)
    in_review = await moderator.resolve_report(report_id=rid, status="in_review", moderator_id="mod-3")
    confirmed = await moderator.resolve_report(report_id=rid, moderator_id="mod-3", **CONFIRM)
    check_moderation(
        ids,
        rid,
        queue,
        in_review,
        confirmed,
        await client.report_status(report_id=rid, reporter_id=ids.reporter),
    )
    disposed = await moderator.dispose(entity_id=ids.scammer, reason="多次发布虚假赠送", **DISPOSE)
    check_actions(
        ids,
        disposed,
        await moderator.actions(account_id=ids.scammer),
        await moderator.lift_action(action_id=disposed["action_id"], moderator_id="mod-3", reason="申诉成功"),
    )
