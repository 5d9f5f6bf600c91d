"""The review console over HTTP, without a browser: every route refused without a session, the loopback rule
when no keys are set, stale claims, double submits, unknown cases, pictures that cannot be shown, a failed
webhook, and the console mounted in the real service behind its gate."""

from __future__ import annotations

import re
import time
from urllib.parse import quote

import httpx
from starlette.routing import Mount, Route

from fanzha.models.verdict import Verdict
from fanzha.platform import ItemRef, Scored

from .conftest import KEYS, gated, make_platform, report

SAMPLE = {"case_id": "report:r1", "name": "image.png", "entity_id": "acct-x", "action_id": "1"}


def routes_of(console) -> list[tuple[str, str]]:
    """(method, path) for every route of the console, path parameters filled with sample values."""
    out = []
    for route in console.routes:
        if isinstance(route, Mount):
            out.append(("GET", route.path + "/console.css"))
            continue
        assert isinstance(route, Route)
        path = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: SAMPLE[m.group(1)], route.path)
        for method in sorted(route.methods - {"HEAD"}):
            out.append((method, path))
    return out


def signed_in(base: str, name: str = "alice") -> httpx.Client:
    """An HTTP client with a console session (the login form, its CSRF token and the cookie)."""
    client = httpx.Client(base_url=base, follow_redirects=False)
    page = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    r = client.post("/login", data={"name": name, "key": KEYS[name], "csrf": token})
    assert r.status_code == 303, r.text
    return client


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def test_every_console_route_needs_a_session(site):
    base, platform, console = site
    rid = report(platform, "reporter-walk", "acct-x", text="先交29元激活费才能领皮肤 WALK-SECRET")
    SAMPLE["case_id"] = f"report:{rid}"
    walked = routes_of(console)
    assert len(walked) >= 17  # the walk covers the route table, not a hand-written list
    anonymous = httpx.Client(base_url=base, follow_redirects=False)
    forged = httpx.Client(
        base_url=base, follow_redirects=False, cookies={"fanzha_console": "eyJzaWQiOiJ4In0.00"}
    )
    wrong_key = httpx.Client(base_url=base, follow_redirects=False, headers={"X-API-Key": "nope"})
    for method, path in walked:
        for client in (anonymous, forged, wrong_key):
            r = client.request(method, path, headers={"accept": "text/html"})
            if path == "/login" or path.startswith("/static/"):
                assert r.status_code in (200, 303, 403), (method, path, r.status_code)
                assert "WALK-SECRET" not in r.text and "acct-x" not in r.text
                continue
            assert r.status_code in (303, 401), (method, path, r.status_code)
            if r.status_code == 303:
                assert r.headers["location"].startswith("/console/login?next="), (method, path)
            assert "WALK-SECRET" not in r.text and "acct-x" not in r.text, (method, path)
    # a moderator key in X-API-Key opens them, for automation (no cookie, so no CSRF token needed)
    key = httpx.Client(base_url=base, headers={"X-API-Key": KEYS["bob"], "X-Moderator-Id": "bot-1"})
    assert "WALK-SECRET" in key.get("/queues").text
    assert key.post(f"/case/{quote(SAMPLE['case_id'], safe='')}/claim").status_code in (200, 303)
    assert platform.case(SAMPLE["case_id"])["claimed_by"] == "bot-1"


def test_stale_claim_double_submit_and_unknown_case(tmp_path, default_detector):
    from fanzha.serving.console import create_app
    from fanzha.serving.console.auth import Auth
    from fanzha.serving.launch import asgi_in_thread

    platform = make_platform(tmp_path, default_detector, claim_ttl_s=1.0)
    console = create_app(platform, Auth(keys=tuple(KEYS.values()), secret=b"s" * 32))
    rid = report(platform, "reporter-s", "acct-s")
    case = f"/case/{quote('report:' + rid, safe='')}"
    with asgi_in_thread(gated(console)) as url:
        alice = signed_in(url + "/console")
        token = csrf_of(alice.get(case).text)
        assert alice.post(case + "/claim", data={"csrf": token}).status_code == 303
        time.sleep(1.2)  # the claim lapses
        form = {"csrf": token, "decision": "reject", "reason": "正常内容", "idem": "once-1"}
        r = alice.post(case + "/decide", data=form)
        assert r.status_code == 409 and "stale claim" in r.text  # said plainly, nothing recorded
        assert platform.report_status(rid, "reporter-s")["status"] == "in_review"
        alice.post(case + "/claim", data={"csrf": token})
        first = alice.post(case + "/decide", data=form)
        second = alice.post(case + "/decide", data=form)  # a double submit: the same stored decision
        assert first.status_code == second.status_code == 303
        assert len(platform.case("report:" + rid)["decisions"]) == 1
        assert platform.report_status(rid, "reporter-s")["status_reason"] == "正常内容"
        r = alice.get("/case/report%3Anot-a-case")
        assert r.status_code == 404 and "unknown case" in r.text and "<html" in r.text
        assert alice.get("/no/such/page").status_code == 404
        assert alice.get("/account/nobody-at-all").status_code == 404
        # a kept file that is not a picture: the page says so, the file is refused
        verdict = Verdict(0.7, {"fee_demand": 0.7}, ["fee_demand"], "review", [], "test")
        kept = platform.keep_for_review(
            Scored(ItemRef(id="bad-img", account_id="acct-s"), verdict),
            media=b"\x00not an image",
            kind="image",
        )
        page = alice.get(f"/case/{quote(kept, safe='')}")
        assert page.status_code == 200 and "不是可显示的图片" in page.text
        name = platform.case(kept)["media"][0]["name"]
        assert alice.get(f"/media/{quote(kept, safe='')}/{name}").status_code == 415
        assert alice.get(f"/media/{quote(kept, safe='')}/other.png").status_code == 404
        # the audit log lists the decision; its CSV export too
        assert "正常内容" in alice.get("/audit").text
        csv = alice.get("/audit.csv", params={"kind": "decision"})
        assert csv.headers["content-type"].startswith("text/csv") and "正常内容" in csv.text
        assert alice.get("/audit", params={"since": "yesterday"}).status_code == 400
    platform.close()


def test_a_gone_webhook_receiver_shows_as_failed(tmp_path, default_detector):
    from fanzha.serving.console import create_app
    from fanzha.serving.console.auth import Auth
    from fanzha.serving.launch import asgi_in_thread, free_port

    platform = make_platform(tmp_path, default_detector, f"http://127.0.0.1:{free_port()}/gone")
    platform.action_book.webhook.retries = 1
    console = create_app(platform, Auth(keys=tuple(KEYS.values()), secret=b"s" * 32))
    with asgi_in_thread(gated(console)) as url:
        bob = signed_in(url + "/console", "bob")
        token = csrf_of(bob.get("/dashboard").text)
        form = {"csrf": token, "entity_kind": "group", "entity_id": "g-1", "action": "mute", "reason": "刷屏"}
        assert bob.post("/dispose", data=form).status_code == 303
        for _ in range(100):
            if platform.actions(entity_kind="group", entity_id="g-1")[0]["delivery"] == "failed":
                break
            time.sleep(0.1)
        page = bob.get("/group/g-1").text
        assert "投递失败 failed" in page and "2 次" in page
        bad = {**form, "action": "ban"}  # a group cannot be banned
        assert bob.post("/dispose", data=bad).status_code == 400
    platform.close()


def test_without_keys_the_console_is_open_on_loopback_only(tmp_path, default_detector):
    from starlette.testclient import TestClient

    from fanzha.serving.console import create_app
    from fanzha.serving.console.auth import Auth
    from fanzha.serving.launch import asgi_in_thread

    platform = make_platform(tmp_path, default_detector)
    report(platform, "reporter-o", "acct-o", text="加群领皮肤，先交10元激活费 OPEN-MODE")
    console = create_app(platform, Auth(keys=(), secret=b"s" * 32))
    with asgi_in_thread(gated(console)) as url:
        r = httpx.get(url + "/console/queues")
        assert r.status_code == 200 and "OPEN-MODE" in r.text and 'id="open-mode"' in r.text
        proxied = httpx.get(url + "/console/queues", headers={"X-Forwarded-For": "203.0.113.9"})
        assert proxied.status_code == 403 and "OPEN-MODE" not in proxied.text
        # forms still need their token
        assert httpx.post(url + f"/console/case/{quote('report:x', safe='')}/claim").status_code == 403
    remote = TestClient(gated(console), client=("203.0.113.7", 5000))  # not loopback
    r = remote.get("/console/queues")
    assert r.status_code == 403 and "仅限本机" in r.text and "OPEN-MODE" not in r.text
    platform.close()


def test_the_service_serves_the_console_behind_its_gate(client):
    """The real service app: /console reaches the console (HTML, not the API's JSON errors), with a request id,
    past the API key check, and with the console's small body limit."""
    r = client.get("/console/queues")
    assert r.headers["content-type"].startswith("text/html") and r.headers.get("x-request-id")
    assert r.status_code == 403 and "仅限本机" in r.text  # no keys, and the test client is not on loopback
    assert client.get("/console/static/console.css").status_code == 200
    assert client.post("/console/login", content=b"x" * 100_000).status_code == 413


def test_conversation_and_video_cases(site):
    """A conversation shows its messages with each one's stage; a video its timeline, trigger and keyframe."""
    from pathlib import Path

    base, platform, _ = site
    verdict = Verdict(0.8, {"fee_demand": 0.8}, ["fee_demand"], "review", [], "test")
    conversation = {
        "messages": [
            {
                "index": 0,
                "sender": "stranger",
                "text": "你好呀，喜欢哪个明星？",
                "stage": "contact",
                "fraud_score": 0.02,
            },
            {
                "index": 1,
                "sender": "stranger",
                "text": "加粉丝群免费领签名照",
                "stage": "lure",
                "fraud_score": 0.7,
            },
            {
                "index": 2,
                "sender": "stranger",
                "text": "先交20元激活费",
                "stage": "payment",
                "fraud_score": 0.95,
            },
        ],
        "trigger_index": 2,
    }
    kept = platform.keep_for_review(
        Scored(ItemRef(id="conv-1", account_id="acct-conv"), verdict),
        content="\n".join(m["text"] for m in conversation["messages"]),
        kind="conversation",
        conversation=conversation,
    )
    bob = signed_in(base, "bob")
    page = bob.get(f"/case/{quote(kept, safe='')}").text
    chat = page[page.index('id="conversation"') :]
    assert chat.index("你好呀") < chat.index("加粉丝群") < chat.index("先交20元")
    assert "stage-lure" in chat and "stage-payment" in chat and 'class="msg trigger"' in chat

    video = (Path(__file__).resolve().parents[2] / "fixtures" / "media" / "flash_scam.mp4").read_bytes()
    platform.classify_media(video, ItemRef(id="vid-1", account_id="acct-vid"), expected="video")
    [row] = [r for q in ("review", "audit") for r in platform.queue(q, account_id="acct-vid")]
    page = bob.get(f"/case/{quote(row['case_id'], safe='')}").text
    assert 'id="timeline"' in page and "触发 trigger" in page
    frames = platform.case(row["case_id"])["media"]
    assert frames and frames[0]["kind"] == "keyframe"
    image = bob.get(f"/media/{quote(row['case_id'], safe='')}/{frames[0]['name']}")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert f"/media/{quote(row['case_id'], safe='')}/{frames[0]['name']}" in page
