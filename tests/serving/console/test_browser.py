"""The review console in a real browser (Chromium through playwright): sign-in, queues, the case page, decisions
that reach the reporter, disposal that reaches the platform's webhook signed, CSRF, and claims."""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import quote

import pytest

from .conftest import HOOK_SECRET, SCAM, login, report

pytestmark = pytest.mark.browser


def case_url(base: str, report_id: str) -> str:
    return f"{base}/case/{quote('report:' + report_id, safe='')}"


def test_login_logout_and_anonymous_sees_nothing(chromium, site):
    base, platform, _ = site
    report(platform, "reporter-anon", "acct-anon", text="加群领皮肤，先交10元激活费，秘密内容XYZ")
    context = chromium.new_context()
    page = context.new_page()
    page.goto(base + "/queues")
    assert "/login" in page.url  # redirected, nothing of the queue shown
    assert "秘密内容XYZ" not in page.content() and "acct-anon" not in page.content()
    assert page.locator("#login-form").is_visible()
    page.fill("input[name=name]", "alice")
    page.fill("input[name=key]", "not-a-key")
    page.click("#login-form button[type=submit]")
    assert "密钥不正确" in page.locator("#login-error").inner_text()
    page.fill("input[name=name]", "alice")
    page.fill("input[name=key]", "key-alice-7f3a9c")
    page.click("#login-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/queues$"))
    assert "秘密内容XYZ" in page.content()
    cookie = next(c for c in context.cookies() if c["name"] == "fanzha_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert "key-alice" not in cookie["value"]  # the session holds a fingerprint, never the key
    page.click("#logout")
    page.wait_for_url(re.compile(r".*/login.*"))
    page.goto(base + "/queues")
    assert "/login" in page.url and "秘密内容XYZ" not in page.content()
    context.close()


def test_report_appears_in_queue_and_case_highlights_evidence(chromium, site):
    base, platform, _ = site
    report_id = report(platform, "reporter-1", "acct-1")
    context, page = login(chromium, base, "alice")
    row = page.locator(f"tr[data-case='report:{report_id}']")
    assert row.count() == 1 and "幸运粉丝" in row.inner_text()
    # keyboard: j/k move the selection, o opens
    rows = page.locator("tr.row")
    index = [rows.nth(i).get_attribute("data-case") for i in range(rows.count())].index(f"report:{report_id}")
    for _ in range(index):
        page.keyboard.press("j")
    assert page.locator("tr.selected").get_attribute("data-case") == f"report:{report_id}"
    page.keyboard.press("o")
    page.wait_for_url(re.compile(r".*/case/.*"))
    case = platform.case(f"report:{report_id}")
    marks = page.locator("#case-text mark.ev")
    assert marks.count() >= 3
    shown = [marks.nth(i).inner_text() for i in range(marks.count())]
    for e in case["evidence"]:
        assert SCAM[e["start"] : e["end"]] in "".join(shown)  # every span marked where it stands
    assert "83726154" in shown
    # the marked text sits at its offsets: the page's text around the QQ number is the original's
    text = page.locator("#case-text").inner_text()
    assert text == SCAM
    context.close()


def test_confirm_with_reason_reaches_the_reporter(chromium, site):
    base, platform, _ = site
    report_id = report(platform, "reporter-2", "acct-2")
    context, page = login(chromium, base, "alice")
    page.goto(case_url(base, report_id))
    page.click("#claim")
    page.wait_for_selector("#release")
    assert platform.report_status(report_id, "reporter-2")["status"] == "in_review"
    page.keyboard.press("c")  # confirm, the reason field focused
    assert page.locator("#decision-confirm").is_checked()
    page.keyboard.type("已核实：以激活费为名骗钱，账号已处理")
    page.click("#submit-decision")
    page.wait_for_selector("#flash")
    assert "已记录决定" in page.locator("#flash").inner_text()
    status = platform.report_status(report_id, "reporter-2")
    assert status["status"] == "confirmed"
    assert status["status_reason"] == "已核实：以激活费为名骗钱，账号已处理"
    assert "已核实" in page.locator("#decisions").inner_text()
    context.close()


def test_ban_reaches_the_webhook_with_a_valid_signature(chromium, site, receiver):
    base, platform, _ = site
    report(platform, "reporter-3", "acct-ban")
    context, page = login(chromium, base, "bob")
    page.goto(f"{base}/account/acct-ban")
    form = page.locator("#dispose-account")
    form.locator("input[value=ban]").check()
    form.locator("select[name=duration_s]").select_option("604800")
    form.locator("input[name=reason]").fill("多次发布激活费诈骗")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#flash")
    headers, body = receiver.wait_for(lambda h, b: b.get("action", {}).get("entity_id") == "acct-ban")
    expected = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-fanzha-signature"], expected)
    action = platform.actions(entity_kind="account", entity_id="acct-ban")[-1]
    assert action["action"] == "ban" and action["moderator_id"] == "bob" and action["duration_s"] == 604800
    page.reload()
    row = page.locator(f"#action-{action['action_id']}")
    assert "已送达" in row.inner_text() or "投递中" in row.inner_text()
    # lift it: recorded and shown
    row.locator("input[name=reason]").fill("申诉通过")
    row.locator("button[type=submit]").click()
    page.wait_for_selector("#flash")
    assert "已解除" in page.locator(f"#action-{action['action_id']}").inner_text()
    context.close()


def test_csrf_refused_without_the_token(chromium, site):
    base, platform, _ = site
    report_id = report(platform, "reporter-4", "acct-4")
    context, page = login(chromium, base, "alice")
    page.goto(case_url(base, report_id))
    page.evaluate("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
    page.click("#claim")
    page.wait_for_selector("#error")
    assert "CSRF" in page.content()
    assert platform.case(f"report:{report_id}")["claimed_by"] is None  # nothing happened
    # another session's token is no better
    page.goto(case_url(base, report_id))
    page.evaluate("document.querySelectorAll('input[name=csrf]').forEach(e => e.value = 'f'.repeat(40))")
    page.click("#claim")
    page.wait_for_selector("#error")
    assert platform.case(f"report:{report_id}")["claimed_by"] is None
    context.close()


def test_two_moderators_cannot_claim_one_case(chromium, site):
    base, platform, _ = site
    report_id = report(platform, "reporter-5", "acct-5")
    alice, a = login(chromium, base, "alice")
    bob, b = login(chromium, base, "bob")
    a.goto(case_url(base, report_id))
    b.goto(case_url(base, report_id))  # bob's page still offers the claim button
    a.click("#claim")
    a.wait_for_selector("#release")
    b.click("#claim")
    b.wait_for_selector("#case-error")
    assert "无法认领" in b.locator("#case-error").inner_text()
    assert "alice" in b.locator("#held-by").inner_text()
    assert b.locator("#submit-decision").is_disabled()
    assert platform.case(f"report:{report_id}")["claimed_by"] == "alice"
    alice.close()
    bob.close()


def test_image_case_is_blurred_with_its_boxes(chromium, site):
    from pathlib import Path

    from fanzha.platform import ItemRef

    base, platform, _ = site
    data = (Path(__file__).resolve().parents[2] / "fixtures" / "media" / "qr.png").read_bytes()
    platform.classify_media(data, ItemRef(id="img-1", account_id="acct-img"), expected="image")
    [row] = [r for q in ("review", "audit") for r in platform.queue(q, account_id="acct-img")]
    context, page = login(chromium, base, "alice")
    page.goto(f"{base}/case/{quote(row['case_id'], safe='')}")
    wrap = page.locator(".blur-wrap").first
    assert "blurred" in wrap.get_attribute("class")
    assert page.locator("svg.overlay polygon.qr").count() >= 1
    assert page.locator("svg.overlay polygon.ocr").count() >= 1
    # polled from here: wait_for_function evaluates its string with eval inside the page, which the console's
    # CSP (script-src 'self') refuses whenever the image is not loaded at the first check
    image = page.locator(".blur-wrap img").first
    for _ in range(100):  # at most ~10 s
        if image.evaluate("img => img.naturalWidth") > 0:
            break
        page.wait_for_timeout(100)
    assert image.evaluate("img => img.naturalWidth") > 0, "the case image never loaded"
    wrap.click()
    assert "blurred" not in wrap.get_attribute("class")
    context.close()
