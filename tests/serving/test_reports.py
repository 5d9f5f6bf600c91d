"""Platform duties through the service (the session's in-process app): fraud reports with feedback, risk
queries, clusters and alerts from ordinary classify calls, moderator keys, and a clear 4xx for bad input."""

from __future__ import annotations

import base64
import uuid

import pytest
from starlette.testclient import TestClient

from fanzha.serving.gate import Gate

from ..conftest import BENIGN, MEDIA, SCAM


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def report(client, target: dict, reporter: str = "kid-7", reason: str = "他让我先交激活费", **extra):
    return client.post("/report", json={"reporter_id": reporter, "target": target, "reason": reason, **extra})


def resolve(client, report_id: str, status: str, reason: str | None = None, **extra):
    return client.post(
        "/resolve_report",
        json={"report_id": report_id, "status": status, "moderator_id": "mod-1", "reason": reason, **extra},
    )


def test_text_report_is_scored_at_once_and_the_reporter_follows_it(client) -> None:
    account = uid("acct")
    r = report(
        client, {"type": "text", "text": SCAM, "account_id": account, "item_id": "msg-1", "source": "dm"}
    )
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["status"] == "received" and not receipt["duplicate"] and receipt["risk"] is None
    assert receipt["verdict"]["decision"] == "block" and receipt["verdict"]["id"] == "msg-1"
    rid = receipt["report_id"]
    # the reported message counts toward its poster's risk like any scored item
    assert client.post("/account_risk", json={"account_id": account}).json()["flagged"] == 1

    status = client.post("/report_status", json={"report_id": rid, "reporter_id": "kid-7"}).json()
    assert (status["status"], status["status_reason"], [h["status"] for h in status["history"]]) == (
        "received",
        None,
        ["received"],
    )
    assert resolve(client, rid, "in_review").json()["status"] == "in_review"
    done = resolve(client, rid, "confirmed", "确认是诈骗，已封禁该账号，谢谢你的举报")
    assert done.status_code == 200 and done.json()["moderator_id"] == "mod-1"
    status = client.post("/report_status", json={"report_id": rid, "reporter_id": "kid-7"}).json()
    assert (
        status["status"] == "confirmed"
        and status["status_reason"] == "确认是诈骗，已封禁该账号，谢谢你的举报"
    )
    assert [h["status"] for h in status["history"]] == [
        "received",
        "in_review",
        "confirmed",
    ] and "actor" not in status["history"][0]
    # confirming a report against an account is an early-warning event too
    alerts = client.post("/alerts", json={"account_id": account, "rule": "report_confirmed"}).json()
    assert [a["detail"]["report_id"] for a in alerts] == [rid]
    assert client.post("/account_risk", json={"account_id": account}).json()["reports"] == {"confirmed": 1}


@pytest.mark.parametrize(
    "moves,status,message",
    [
        ([("confirmed", "是诈骗"), ("rejected", "改判")], 409, "it cannot become rejected (that is final)"),
        ([("in_review", None), ("in_review", None)], 409, "is in_review; it cannot become in_review"),
        ([("rejected", None)], 400, "needs a reason"),
        ([("received", None)], 400, "status: Input should be 'in_review', 'confirmed' or 'rejected'"),
        ([("rejected", "正常消息")], 200, None),
    ],
)
def test_only_valid_transitions(client, moves, status, message) -> None:
    rid = report(client, {"type": "text", "text": SCAM}).json()["report_id"]
    for step, reason in moves:
        r = resolve(client, rid, step, reason)
    assert r.status_code == status, r.text
    if message:
        assert message in r.json()["error"]


def test_confirming_content_the_model_passed_needs_a_label(client) -> None:
    rid = report(client, {"type": "text", "text": BENIGN}).json()["report_id"]
    r = resolve(client, rid, "confirmed", "他后来私聊要钱")
    assert r.status_code == 400 and "say which kind of fraud" in r.json()["error"]
    r = resolve(client, rid, "confirmed", "他后来私聊要钱", labels=["other_fraud"])
    assert r.status_code == 200 and r.json()["labels"] == ["other_fraud"]
    r = resolve(
        client,
        report(client, {"type": "text", "text": BENIGN}).json()["report_id"],
        "confirmed",
        "x",
        labels=["phishing"],
    )
    assert r.status_code == 400 and "labels.0" in r.json()["error"]


def test_image_account_and_group_reports(client) -> None:
    data = base64.b64encode((MEDIA / "qr.png").read_bytes()).decode()
    image = report(client, {"type": "image", "data": data, "group_id": uid("grp")}).json()
    assert image["verdict"]["decision"] != "pass" and image["verdict"]["qr"]
    stored = client.post("/reports", json={"reporter_id": "kid-7", "status": "received", "limit": 500}).json()
    mine = next(r for r in stored if r["report_id"] == image["report_id"])
    assert len(mine["target_media_sha256"]) == 64 and mine["target_text"]  # what was read is kept for export

    unseen = report(client, {"type": "account", "account_id": uid("never-seen")}).json()
    assert (
        unseen["status"] == "received" and unseen["risk"] is None
    )  # a report may come before any scored item
    account = uid("acct")
    client.post("/classify_text", json={"items": [{"text": SCAM, "account_id": account}]})
    seen = report(client, {"type": "account", "account_id": account}).json()
    assert seen["risk"]["id"] == account and seen["risk"]["flagged"] == 1 and seen["verdict"] is None


def test_retried_report_with_the_same_key_is_not_stored_twice(client) -> None:
    key = uid("key")
    first = report(client, {"type": "text", "text": SCAM}, idempotency_key=key).json()
    again = report(client, {"type": "text", "text": SCAM}, idempotency_key=key).json()
    assert again["report_id"] == first["report_id"] and again["duplicate"] and not first["duplicate"]
    assert again["verdict"]["decision"] == first["verdict"]["decision"]


def test_moderator_queue_filters_and_pages(client) -> None:
    reporter = uid("reporter")
    ids = [
        report(client, {"type": "text", "text": SCAM}, reporter=reporter).json()["report_id"]
        for _ in range(3)
    ]
    page = client.post("/reports", json={"reporter_id": reporter, "limit": 2}).json()
    assert [r["report_id"] for r in page] == ids[:2] and page[0]["history"][0]["actor"] == reporter
    rest = client.post("/reports", json={"reporter_id": reporter, "after": ids[1]}).json()
    assert [r["report_id"] for r in rest] == ids[2:]


def test_classify_calls_build_risk_and_the_crossing_item_carries_the_alert(client) -> None:
    account, group = uid("spammer"), uid("grp")
    items = [{"text": SCAM, "id": f"m{i}", "account_id": account, "group_id": group} for i in range(5)]
    verdicts = client.post("/classify_text", json={"items": items}).json()
    rules = [[a["rule"] for a in v.get("alerts") or []] for v in verdicts]
    assert rules[:3] == [[], [], []] and "risk" in rules[3] + rules[4]
    assert {"flagged_in_window"} <= set(rules[4]) and not any("flagged_in_window" in r for r in rules[:4])
    risk = client.post("/account_risk", json={"account_id": account}).json()
    assert (
        risk["level"] == "high"
        and risk["flagged_in_window"] == 5
        and risk["handles"][0]["value"] == "83726154"
    )
    assert any("5 flagged items" in reason for reason in risk["reasons"])
    assert client.post("/group_risk", json={"group_id": group}).json()["flagged"] == 5
    alerts = client.post("/alerts", json={"account_id": account}).json()
    assert {a["rule"] for a in alerts} == {"risk", "flagged_in_window"} and alerts[-1]["item_id"] == "m4"
    after = client.post("/alerts", json={"after_id": alerts[-1]["id"], "account_id": account}).json()
    assert after == []


def test_accounts_pushing_one_handle_form_a_cluster(client) -> None:
    handle = "QQ群 " + str(uuid.uuid4().int % 10**9 + 10**9)[:9]
    accounts = [uid("new") for _ in range(5)]
    items = [{"text": f"免费领皮肤！加{handle}领取，先交10元激活费", "account_id": a} for a in accounts]
    items.append(
        {"text": f"提醒大家别加{handle}，说免费领皮肤要先交激活费，是骗子", "account_id": uid("warner")}
    )
    verdicts = client.post("/classify_text", json={"items": items}).json()
    assert [a["rule"] for a in verdicts[4]["alerts"] if a["rule"] == "cluster_size"] == ["cluster_size"]
    value = handle.split()[-1]
    cluster = next(
        c
        for c in client.post("/clusters", json={"min_accounts": 5}).json()
        if any(h["value"] == value for h in c["handles"])
    )
    assert sorted(cluster["members"]) == sorted(accounts)


@pytest.mark.parametrize(
    "path,body,status,message",
    [
        ("/account_risk", {"account_id": "nobody-ever"}, 404, "unknown account 'nobody-ever'"),
        ("/group_risk", {"group_id": "no-such-group"}, 404, "unknown group"),
        ("/account_risk", {}, 400, "account_id: Field required"),
        ("/report_status", {"report_id": "r-unknown", "reporter_id": "kid-7"}, 404, "no report 'r-unknown'"),
        (
            "/resolve_report",
            {"report_id": "r-unknown", "status": "in_review", "moderator_id": "m"},
            404,
            "unknown report",
        ),
        ("/reports", {"after": "r-unknown"}, 404, "unknown report"),
        ("/alerts", {"account_id": "a", "group_id": "g"}, 400, "not both"),
        (
            "/report",
            {"reporter_id": "k", "target": {"type": "text"}, "reason": "x"},
            400,
            "a text target carries `text`",
        ),
        (
            "/report",
            {"reporter_id": "k", "target": {"type": "text", "text": "你好", "data": "aGk="}, "reason": "x"},
            400,
            "carries `text`",
        ),
        (
            "/report",
            {"reporter_id": "k", "target": {"type": "account"}, "reason": "x"},
            400,
            "needs `account_id`",
        ),
        (
            "/report",
            {"reporter_id": "k", "target": {"type": "video", "text": "x"}, "reason": "x"},
            400,
            "target.type",
        ),
        (
            "/report",
            {"reporter_id": "k", "target": {"type": "image", "data": "%%%"}, "reason": "x"},
            400,
            "not valid base64",
        ),
        (
            "/report",
            {
                "reporter_id": "k",
                "target": {"type": "image", "data": base64.b64encode(b"junk").decode()},
                "reason": "x",
            },
            415,
            "unsupported media",
        ),
        (
            "/report",
            {"reporter_id": "", "target": {"type": "group", "group_id": "g"}, "reason": "x"},
            400,
            "reporter_id",
        ),
        (
            "/report",
            {"reporter_id": "k", "target": {"type": "group", "group_id": "g"}, "reason": "   "},
            400,
            "reason is empty",
        ),
        (
            "/report",
            {"reporter_id": "k", "target": {"type": "group", "group_id": "g"}, "reason": "长" * 2001},
            400,
            "at most 2000",
        ),
        (
            "/report",
            {"reporter_id": "k", "target": {"type": "text", "text": "长" * 200_001}, "reason": "x"},
            400,
            "the limit is 200,000",
        ),
        (
            "/report",
            {
                "reporter_id": "k",
                "target": {"type": "group", "group_id": "g", "colour": "red"},
                "reason": "x",
            },
            400,
            "Extra inputs",
        ),
        (
            "/report",
            {"reporter_id": "k" * 257, "target": {"type": "group", "group_id": "g"}, "reason": "x"},
            400,
            "at most 256",
        ),
    ],
)
def test_bad_requests_are_clear_4xx(client, path, body, status, message) -> None:
    r = client.post(path, json=body)
    assert r.status_code == status and message in r.json()["error"], r.text


def test_oversized_report_bodies_are_413(client) -> None:
    r = client.post("/report", content=b"x" * (29 * 2**20 + 1), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit for /report" in r.json()["error"]


def test_moderator_paths_need_a_moderator_key(monkeypatch) -> None:
    async def ok(scope, receive, send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    monkeypatch.setenv("FANZHA_API_KEYS", "platform")
    monkeypatch.setenv("FANZHA_MODERATOR_KEYS", "moderator")
    client = TestClient(Gate(ok, body_limits={}, moderator_paths=("/reports", "/resolve_report")))
    assert client.post("/resolve_report", headers={"X-API-Key": "platform"}).status_code == 403
    assert client.post("/reports").status_code == 401
    assert client.post("/reports", headers={"X-API-Key": "moderator"}).status_code == 200
    assert client.post("/report", headers={"X-API-Key": "platform"}).status_code == 200
    assert (
        client.post("/report", headers={"X-API-Key": "moderator"}).status_code == 200
    )  # a moderator key opens the rest
    monkeypatch.setenv("FANZHA_API_KEYS", "")  # an open service still guards the moderator paths
    client = TestClient(Gate(ok, body_limits={}, moderator_paths=("/reports",)))
    assert client.post("/reports").status_code == 401 and client.post("/classify_text").status_code == 200
