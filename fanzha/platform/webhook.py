"""Webhooks: JSON POSTed off the request path, HMAC-signed, retried. One sender for every kind of message.

    FANZHA_ALERT_WEBHOOK=https://ops.example.com/fanzha-alerts      # every alert, as one JSON object per POST
    FANZHA_ALERT_WEBHOOK_SECRET=…                                    # optional: X-Fanzha-Signature: sha256=<HMAC>
    FANZHA_ACTION_WEBHOOK=https://platform.example.com/dispose      # disposal actions and their lifts
    FANZHA_ACTION_WEBHOOK_SECRET=…                                   # default: the alert webhook's secret

A background thread drains a bounded queue and POSTs each message with a timeout. A slow or failing receiver
never slows the caller: when the queue is full the message is dropped from the webhook (it is still stored and
listed — /alerts, /actions — which is the record) and a warning is logged; failed POSTs are retried a few times
with back-off, then logged and dropped. A caller that keeps a delivery status passes `on_done`, called from the
webhook's thread with (delivered, attempts, error) once the message is delivered, failed or dropped.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from fanzha.models.errors import SettingsError
from fanzha.models.settings import Settings, settings

log = logging.getLogger("fanzha.webhook")

OnDone = Callable[[bool, int, "str | None"], None]


def sign(secret: bytes, body: bytes) -> str:
    """The X-Fanzha-Signature header value of a body: sha256=<hex HMAC-SHA256 of the exact bytes POSTed>."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Webhook:
    """POST JSON messages to one URL from a background thread: signed, retried, never blocking the caller."""

    what = "message"  # for logs: what one POST carries
    setting = "the webhook URL"

    def __init__(
        self,
        url: str,
        secret: str | None = None,
        timeout_s: float = 5.0,
        queue_size: int = 1000,
        retries: int = 2,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise SettingsError(
                f"the {self.what} webhook must be an http(s) URL, got {url!r} ({self.setting})"
            )
        self.url, self.timeout_s, self.retries = url, timeout_s, retries
        self.secret = secret.encode() if secret else None
        self.queue: queue.Queue[tuple[dict, OnDone | None] | None] = queue.Queue(maxsize=queue_size)
        self.sent = self.failed = self.dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"fanzha-{self.what}-webhook", daemon=True)
        self._thread.start()

    def send(self, message: dict, on_done: OnDone | None = None) -> None:
        """Queue one message; never blocks, never raises."""
        try:
            self.queue.put_nowait((message, on_done))
        except queue.Full:
            self.dropped += 1
            log.warning(
                "%s webhook queue full: %s %s not posted (it is still stored and listed)",
                self.what,
                self.what,
                message.get("id"),
            )
            _call(on_done, False, 0, "webhook queue full: not posted")

    def close(self, timeout_s: float = 10.0) -> None:
        """Post what is queued (up to `timeout_s`), then stop the thread."""
        try:
            self.queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (entry := self.queue.get()) is not None:
            self._post(*entry)

    def _post(self, message: dict, on_done: OnDone | None = None) -> None:
        body = json.dumps(message, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": f"fanzha-{self.what}s"}
        if self.secret:
            headers["X-Fanzha-Signature"] = sign(self.secret, body)
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(self.url, data=body, headers=headers, method="POST"),
                    timeout=self.timeout_s,
                ) as response:
                    response.read()
                self.sent += 1
                _call(on_done, True, attempt + 1, None)
                return
            except (urllib.error.URLError, OSError, ValueError) as e:
                if attempt == self.retries:
                    self.failed += 1
                    log.error(
                        "%s webhook %s: %s %s not delivered after %d tries: %s",
                        self.what,
                        self.url,
                        self.what,
                        message.get("id"),
                        attempt + 1,
                        e,
                    )
                    _call(on_done, False, attempt + 1, str(e)[:500])
                    return
                time.sleep(0.5 * 2**attempt)


def _call(on_done: OnDone | None, delivered: bool, attempts: int, error: str | None) -> None:
    if on_done is None:
        return
    try:
        on_done(delivered, attempts, error)
    except Exception:  # a delivery record that cannot be written must not stop the webhook's thread
        log.exception("webhook delivery callback failed")


class AlertWebhook(Webhook):
    """Early-warning alerts (FANZHA_ALERT_WEBHOOK)."""

    what = "alert"
    setting = "FANZHA_ALERT_WEBHOOK"

    @classmethod
    def from_settings(cls, s: Settings | None = None) -> AlertWebhook | None:
        """The webhook FANZHA_ALERT_WEBHOOK names (signed with FANZHA_ALERT_WEBHOOK_SECRET), or None."""
        s = s or settings()
        if not s.alert_webhook:
            return None
        return cls(s.alert_webhook, secret=s.alert_webhook_secret, timeout_s=s.alert_webhook_timeout_s)


class ActionWebhook(Webhook):
    """Disposal actions and their lifts, for the platform to carry out (FANZHA_ACTION_WEBHOOK)."""

    what = "action"
    setting = "FANZHA_ACTION_WEBHOOK"

    @classmethod
    def from_settings(cls, s: Settings | None = None) -> ActionWebhook | None:
        """The webhook FANZHA_ACTION_WEBHOOK names (signed with FANZHA_ACTION_WEBHOOK_SECRET, else the alert
        webhook's secret), or None."""
        s = s or settings()
        if not s.action_webhook:
            return None
        return cls(s.action_webhook, secret=s.action_webhook_secret, timeout_s=s.alert_webhook_timeout_s)
