"""The review console under test: a Platform on a temporary SQLite database with the committed model, the
console (with the gate in front, as the service has it) served by uvicorn on loopback in this process, a
loopback receiver for the action webhook, and Debian's Chromium driven by playwright.

Without playwright or a `chromium` on PATH the browser tests skip and say why; with
FANZHA_TEST_REQUIRE_BROWSER=1 (.ci/run sets it) that is a failure instead."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

KEYS = {"alice": "key-alice-7f3a9c", "bob": "key-bob-2d8e41"}
HOOK_SECRET = "hook-secret-5b1c"
REQUIRED = os.environ.get("FANZHA_TEST_REQUIRE_BROWSER") == "1"
SCAM = "恭喜你成为幸运粉丝！加QQ群 83726154 免费领签名照，先交29元激活费"


def browser_problem() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (the dev extra: pip install -e '.[dev]')"
    if not chromium_path():
        return "no chromium on PATH (Debian: apt-get install chromium fonts-noto-cjk)"
    return None


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


# per module, not per session: Playwright's sync API keeps an event loop running in this thread until it
# stops, and later tests' asyncio.run() would fail
@pytest.fixture(scope="module")
def chromium():
    problem = browser_problem()
    if problem:
        if REQUIRED:
            pytest.fail(f"FANZHA_TEST_REQUIRE_BROWSER=1 but {problem}", pytrace=False)
        pytest.skip(f"browser tests skipped: {problem}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox", "--disable-gpu"])
        yield browser
        browser.close()


class Receiver:
    """A loopback HTTP server that records every POST (the platform's action webhook)."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict, bytes]] = []
        self.event = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.event:
                    receiver.posts.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    receiver.event.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/actions"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate, timeout: float = 10.0):
        with self.event:
            ok = self.event.wait_for(lambda: any(predicate(h, json.loads(b)) for h, b in self.posts), timeout)
        assert ok, f"no matching webhook POST in {timeout} s: {self.posts!r}"
        return next((h, b) for h, b in self.posts if predicate(h, json.loads(b)))


@pytest.fixture(scope="session")
def receiver():
    r = Receiver()
    yield r
    r.server.shutdown()


def make_platform(tmp: Path, detector, receiver_url: str | None = None, **kwargs):
    from fanzha.platform import Platform
    from fanzha.platform.webhook import ActionWebhook

    webhook = ActionWebhook(receiver_url, secret=HOOK_SECRET, timeout_s=2) if receiver_url else None
    return Platform(
        detector,
        f"sqlite:///{tmp / 'fanzha.db'}",
        action_webhook=webhook,
        review_dir=tmp / "review",
        audit_sample=kwargs.pop("audit_sample", 1.0),
        **kwargs,
    )


def gated(console):
    """The console behind the service's gate, mounted at /console as serving/service.py mounts it."""
    from fanzha.serving.gate import Gate

    async def nothing(scope, receive, send):  # the rest of the service: not under test here
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    return Gate(nothing, body_limits={}, apps={"/console": console})


@pytest.fixture(scope="module")
def site(tmp_path_factory, default_detector, receiver):
    """A keyed console (alice and bob) over a fresh platform: (base url, platform, the console app)."""
    from fanzha.serving.console import create_app
    from fanzha.serving.console.auth import Auth
    from fanzha.serving.launch import asgi_in_thread

    platform = make_platform(tmp_path_factory.mktemp("console"), default_detector, receiver.url)
    console = create_app(platform, Auth(keys=tuple(KEYS.values()), secret=os.urandom(32)))
    with asgi_in_thread(gated(console)) as url:
        yield url + "/console", platform, console
    platform.close()


def report(platform, reporter: str, account: str, text: str = SCAM, reason: str = "骗我交激活费") -> str:
    intake = platform.report(reporter, reason, "text", text=text, account_id=account)
    return intake.report["report_id"]


def login(browser, base: str, name: str):
    """A new browser context signed in as `name`, and its page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.goto(base + "/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=key]", KEYS[name])
    page.click("#login-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/queues.*"))
    return context, page
