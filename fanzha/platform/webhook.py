"""Early-warning alerts POSTed to a webhook, off the request path.

    FANZHA_ALERT_WEBHOOK=https://ops.example.com/fanzha-alerts      # every alert, as one JSON object per POST
    FANZHA_ALERT_WEBHOOK_SECRET=…                                    # optional: X-Fanzha-Signature: sha256=<HMAC>

A background thread drains a bounded queue and POSTs each alert with a timeout. A slow or failing receiver
never slows ingestion: when the queue is full the alert is dropped from the webhook (it is still stored and
listed by /alerts, which is the record) and a warning is logged; failed POSTs are retried a few times with
back-off, then logged and dropped.
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

from fanzha.models.errors import SettingsError
from fanzha.models.settings import Settings, settings

log = logging.getLogger("fanzha.webhook")


class AlertWebhook:
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
                f"the alert webhook must be an http(s) URL, got {url!r} (FANZHA_ALERT_WEBHOOK)"
            )
        self.url, self.timeout_s, self.retries = url, timeout_s, retries
        self.secret = secret.encode() if secret else None
        self.queue: queue.Queue[dict | None] = queue.Queue(maxsize=queue_size)
        self.sent = self.failed = self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="fanzha-alert-webhook", daemon=True)
        self._thread.start()

    @classmethod
    def from_settings(cls, s: Settings | None = None) -> AlertWebhook | None:
        """The webhook FANZHA_ALERT_WEBHOOK names (signed with FANZHA_ALERT_WEBHOOK_SECRET), or None."""
        s = s or settings()
        if not s.alert_webhook:
            return None
        return cls(s.alert_webhook, secret=s.alert_webhook_secret, timeout_s=s.alert_webhook_timeout_s)

    def send(self, alert: dict) -> None:
        """Queue one alert; never blocks, never raises."""
        try:
            self.queue.put_nowait(alert)
        except queue.Full:
            self.dropped += 1
            log.warning(
                "alert webhook queue full: alert %s not posted (it is still listed by /alerts)",
                alert.get("id"),
            )

    def close(self, timeout_s: float = 10.0) -> None:
        """Post what is queued (up to `timeout_s`), then stop the thread."""
        try:
            self.queue.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while (alert := self.queue.get()) is not None:
            self._post(alert)

    def _post(self, alert: dict) -> None:
        body = json.dumps(alert, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "fanzha-alerts"}
        if self.secret:
            headers["X-Fanzha-Signature"] = (
                "sha256=" + hmac.new(self.secret, body, hashlib.sha256).hexdigest()
            )
        for attempt in range(self.retries + 1):
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(self.url, data=body, headers=headers, method="POST"),
                    timeout=self.timeout_s,
                ) as response:
                    response.read()
                self.sent += 1
                return
            except (urllib.error.URLError, OSError, ValueError) as e:
                if attempt == self.retries:
                    self.failed += 1
                    log.error(
                        "alert webhook %s: alert %s not delivered after %d tries: %s",
                        self.url,
                        alert.get("id"),
                        attempt + 1,
                        e,
                    )
                    return
                time.sleep(0.5 * 2**attempt)
