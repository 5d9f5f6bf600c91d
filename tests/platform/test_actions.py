"""Disposal actions (fanzha.platform.actions through the Platform facade), on SQLite and PostgreSQL: what may be
done to accounts and groups, lifting and expiry, and the POST to FANZHA_ACTION_WEBHOOK through the one webhook
sender alerts use (signed, retried), with each delivery's status stored: delivered, failed after retries, not
configured."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fanzha.models import InputError
from fanzha.models.errors import Conflict, NotFound, SettingsError
from fanzha.models.settings import Settings
from fanzha.platform.webhook import ActionWebhook, AlertWebhook

from .moderation_fixtures import LURE, T0, Clock, ref


class Receiver:
    """A loopback webhook receiver: records (body, signature) and answers `status`."""

    def __init__(self, status: int = 204) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((body, self.headers.get("X-Fanzha-Signature", "")))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/actions"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_dispose_and_lift(make_platform) -> None:
    clock = Clock()
    platform = make_platform(clock)
    platform.classify_texts([LURE], [ref(1)])
    case_id = platform.queue("review")[0]["case_id"]
    ban = platform.dispose(
        "account",
        "u1",
        "ban",
        "mod-1",
        "多次发布虚假赠送",
        duration_s=86400,
        case_id=case_id,
        evidence=[{"case_id": case_id, "span": [0, 3]}],
    )
    assert (ban["status"], ban["expires_at"], ban["delivery"], ban["case_id"]) == (
        "active",
        T0 + 86400,
        "not_configured",
        case_id,
    )
    assert ban["evidence"] == [{"case_id": case_id, "span": [0, 3]}] and ban["moderator_id"] == "mod-1"
    mute = platform.dispose("group", "g1", "mute", "mod-2", "群内刷屏")
    assert [a["action_id"] for a in platform.actions()] == [ban["action_id"], mute["action_id"]]
    assert [a["action"] for a in platform.actions(entity_kind="group", entity_id="g1")] == ["mute"]
    assert platform.actions(after_id=ban["action_id"]) == [platform.action(mute["action_id"])]
    assert [a["action_id"] for a in platform.actions(newest_first=True, limit=1)] == [mute["action_id"]]
    lifted = platform.lift(ban["action_id"], "mod-3", "申诉成功")
    assert (lifted["status"], lifted["lifted_by"], lifted["lift_reason"]) == ("lifted", "mod-3", "申诉成功")
    assert [d["event"] for d in lifted["deliveries"]] == ["dispose", "lift"]
    with pytest.raises(Conflict, match="lifted already"):
        platform.lift(ban["action_id"], "mod-3", "again")
    timed = platform.dispose("account", "u2", "suspend", "mod-1", "刷单", duration_s=60)
    clock.t += 61
    assert platform.action(timed["action_id"])["status"] == "expired"
    with pytest.raises(Conflict, match="expired"):
        platform.lift(timed["action_id"], "mod-1", "late")
    # the case page shows the actions on its account
    assert [a["action"] for a in platform.case(case_id)["actions"]] == ["ban"]


@pytest.mark.parametrize(
    "args,kw,error",
    [
        (("account", "u1", "mute", "m", "r"), {}, InputError),  # a group's action
        (("group", "g1", "ban", "m", "r"), {}, InputError),
        (("channel", "c1", "ban", "m", "r"), {}, InputError),
        (("account", "u1", "ban", "m", "  "), {}, InputError),  # no reason
        (("account", "u1", "ban", "", "r"), {}, InputError),
        (("account", "", "ban", "m", "r"), {}, InputError),
        (("account", "u1", "warn", "m", "r"), {"duration_s": 60}, InputError),  # a warning has no duration
        (("account", "u1", "ban", "m", "r"), {"duration_s": -1}, InputError),
        (("account", "u1", "ban", "m", "r"), {"case_id": "review:999"}, NotFound),
    ],
)
def test_dispose_refuses_what_makes_no_sense(make_platform, args, kw, error) -> None:
    with pytest.raises(error):
        make_platform().dispose(*args, **kw)


def test_unknown_actions(make_platform) -> None:
    platform = make_platform()
    for bad in (999, "x", 0, -1, 2**70):
        with pytest.raises(NotFound):
            platform.lift(bad, "m", "r")
    with pytest.raises(InputError):
        platform.actions(entity_kind="channel")


def test_actions_are_posted_signed_and_their_delivery_is_stored(make_platform) -> None:
    receiver = Receiver()
    try:
        platform = make_platform(action_webhook=ActionWebhook(receiver.url, secret="s3cret", timeout_s=2))
        ban = platform.dispose("account", "u1", "ban", "mod-1", "诈骗")
        delivered = wait_for(
            lambda: (a := platform.action(ban["action_id"]))["delivery"] == "delivered" and a
        )
        assert delivered["deliveries"][0]["attempts"] == 1 and delivered["deliveries"][0]["error"] is None
        platform.lift(ban["action_id"], "mod-1", "误判")
        wait_for(lambda: len(receiver.received) == 2)
        (body, signature), (lift_body, _) = receiver.received
        assert signature == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        posted = json.loads(body)
        assert (posted["type"], posted["event"], posted["id"]) == ("action", "dispose", ban["action_id"])
        assert posted["action"]["entity_id"] == "u1" and "deliveries" not in posted["action"]
        assert (
            json.loads(lift_body)["event"] == "lift" and json.loads(lift_body)["action"]["status"] == "lifted"
        )
        wait_for(lambda: platform.action(ban["action_id"])["delivery"] == "delivered")
    finally:
        receiver.close()


def test_a_receiver_that_is_gone_is_retried_then_shown_as_failed(make_platform) -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: every try is refused
    platform = make_platform(
        action_webhook=ActionWebhook(f"http://127.0.0.1:{port}/", timeout_s=1, retries=2)
    )
    started = time.time()
    action = platform.dispose("group", "g1", "dissolve", "mod-1", "诈骗群")
    assert time.time() - started < 0.5 and action["delivery"] == "pending"  # never waits for the POST
    failed = wait_for(lambda: (a := platform.action(action["action_id"]))["delivery"] == "failed" and a)
    (delivery,) = failed["deliveries"]
    assert delivery["attempts"] == 3 and "refused" in delivery["error"].lower()


def test_an_error_status_counts_as_a_failed_try(make_platform) -> None:
    receiver = Receiver(status=500)
    try:
        platform = make_platform(action_webhook=ActionWebhook(receiver.url, timeout_s=2, retries=1))
        action = platform.dispose("account", "u1", "warn", "mod-1", "警告")
        failed = wait_for(lambda: (a := platform.action(action["action_id"]))["delivery"] == "failed" and a)
        assert failed["deliveries"][0]["attempts"] == 2 and len(receiver.received) == 2
    finally:
        receiver.close()


def test_one_webhook_sender_for_alerts_and_actions() -> None:
    s = Settings.from_env(
        {
            "FANZHA_ALERT_WEBHOOK": "http://127.0.0.1:9/alerts",
            "FANZHA_ALERT_WEBHOOK_SECRET": "alert-secret",
            "FANZHA_ACTION_WEBHOOK": "http://127.0.0.1:9/actions",
        }
    )
    alerts, actions = AlertWebhook.from_settings(s), ActionWebhook.from_settings(s)
    assert type(alerts).__mro__[1] is type(actions).__mro__[1]  # the same Webhook underneath
    assert actions.secret == b"alert-secret"  # no action secret: the alert webhook's
    own = ActionWebhook.from_settings(
        Settings.from_env(
            {"FANZHA_ACTION_WEBHOOK": "https://x.example/a", "FANZHA_ACTION_WEBHOOK_SECRET": "own"}
        )
    )
    assert own.secret == b"own"
    assert ActionWebhook.from_settings(Settings.from_env({})) is None
    with pytest.raises(SettingsError, match="FANZHA_ACTION_WEBHOOK"):
        ActionWebhook("ftp://nope")
    for hook in (alerts, actions, own):
        hook.close(timeout_s=1)
