"""The console in the real service (`bentoml serve` on loopback, moderator keys set), in Chromium: a report sent
to /report is confirmed in the console and the reporter reads the reason from /report_status; a ban reaches the
action webhook signed; and no console route of the running service opens without a session."""

from __future__ import annotations

import hashlib
import hmac
import re
from urllib.parse import quote

import httpx
import pytest

from ..live import bentoml_serve
from .conftest import HOOK_SECRET, KEYS, SCAM, login
from .test_console import routes_of

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live(model_tag, tmp_path_factory, receiver):
    workdir = tmp_path_factory.mktemp("console-live")
    env = {
        "FANZHA_MODERATOR_KEYS": ",".join(KEYS.values()),
        "FANZHA_ACTION_WEBHOOK": receiver.url,
        "FANZHA_ACTION_WEBHOOK_SECRET": HOOK_SECRET,
        "FANZHA_DATA_DIR": str(workdir),
    }
    with bentoml_serve(workdir, **env) as url:
        yield url


def test_confirm_in_the_console_reaches_report_status(chromium, live, receiver):
    receipt = httpx.post(
        live + "/report",
        json={
            "reporter_id": "kid-7",
            "target": {"type": "text", "text": SCAM, "account_id": "live-acct"},
            "reason": "骗钱",
        },
        timeout=60,
    ).raise_for_status()
    report_id = receipt.json()["report_id"]
    context, page = login(chromium, live + "/console", "alice")
    page.goto(f"{live}/console/queues?queue=reports")
    page.click(f"tr[data-case='report:{report_id}'] a")
    page.wait_for_url(re.compile(r".*/case/.*"))
    assert page.locator("#case-text mark.ev").count() >= 3
    page.click("#claim")
    page.wait_for_selector("#release")
    page.check("#decision-confirm")
    page.fill("#reason", "已核实为诈骗，感谢举报")
    page.click("#submit-decision")
    page.wait_for_selector("#flash")
    status = httpx.post(
        live + "/report_status", json={"report_id": report_id, "reporter_id": "kid-7"}, timeout=30
    ).json()
    assert status["status"] == "confirmed" and status["status_reason"] == "已核实为诈骗，感谢举报"
    # a ban from the account page: the platform's webhook gets it, signed
    page.goto(f"{live}/console/account/live-acct")
    form = page.locator("#dispose-account")
    form.locator("input[value=ban]").check()
    form.locator("input[name=reason]").fill("确认诈骗")
    form.locator("button[type=submit]").click()
    page.wait_for_selector("#flash")
    headers, body = receiver.wait_for(lambda h, b: b.get("action", {}).get("entity_id") == "live-acct")
    expected = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-fanzha-signature"], expected)
    context.close()


def test_no_console_route_of_the_service_opens_without_a_session(live):
    from fanzha.serving.console import create_app

    for method, path in routes_of(create_app(platform=object())):
        path = path.replace("report:r1", quote("report:r1", safe=""))
        r = httpx.request(method, live + "/console" + path, headers={"accept": "text/html"}, timeout=30)
        if path == "/login" or path.startswith("/static/"):
            assert r.status_code in (200, 403), (method, path, r.status_code)
        else:
            assert r.status_code in (303, 401), (method, path, r.status_code)
            assert r.headers.get("x-request-id")  # through the gate
