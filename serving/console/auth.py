"""Who is at the console: moderator keys, signed session cookies, and the loopback rule when no keys are set.

- FANZHA_MODERATOR_KEYS set: the login page takes one of those keys (and the moderator's name) and sets a
  signed session cookie (HttpOnly, SameSite=Strict, Path=/console, Secure over https). Automation sends the
  key as `X-API-Key: <key>` (or `Authorization: Bearer <key>`, as the API takes it, serving/gate.py) and names
  itself with `X-Moderator-Id`; no cookie, so no CSRF token either.
- No keys: the console is open as moderator "local" only while this process listens on loopback alone and the
  request came over loopback without a proxy's forwarding headers; otherwise every page is refused and says why.

Every visitor carries a session (anonymous until login) so that the login form has a CSRF token too (csrf.py).
The cookie is `base64url(json).hmac-sha256`, signed with FANZHA_CONSOLE_SECRET, else a random secret kept in
FANZHA_DATA_DIR/console_secret (0600, shared by the service's workers). It holds no key, only the key's
fingerprint: a session ends when its key is removed from FANZHA_MODERATOR_KEYS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from fanzha.models.settings import Settings, settings

from ..gate import offered_key

COOKIE = "fanzha_console"
SESSION_TTL_S = 12 * 3600
LOCAL_MODERATOR = "local"
MODERATOR_ID = re.compile(r"[\w.@-]{1,64}")  # \w takes CJK names too


@dataclass(frozen=True)
class Session:
    sid: str  # random, rotated at login: the CSRF token is bound to it
    moderator: str | None  # None: not signed in
    key_fp: str | None = None  # the key it signed in with (fingerprint)
    issued: float = 0.0
    via: str = "cookie"  # cookie | header | local

    @property
    def signed_in(self) -> bool:
        return self.moderator is not None


def fingerprint(key: str) -> str:
    return hashlib.sha256(b"fanzha-console-key:" + key.encode()).hexdigest()[:16]


def load_secret(s: Settings) -> bytes:
    """FANZHA_CONSOLE_SECRET, else a random 32-byte secret created once in the data directory (O_EXCL: the first
    worker to start writes it, the others read it)."""
    if s.console_secret:
        return hashlib.sha256(b"fanzha-console:" + s.console_secret.encode()).digest()
    path = Path(s.data_dir) / "console_secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker is writing it
            data = path.read_bytes()
            if len(data) >= 64:
                return bytes.fromhex(data[:64].decode())
            time.sleep(0.02)
        raise
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text()[:64])


class Auth:
    """Sign-in for the console. `keys` (tests) else FANZHA_MODERATOR_KEYS, read from the settings on each request
    (cached by models.settings); `secret` else load_secret's, loaded on first use (not at import)."""

    def __init__(self, keys: tuple[str, ...] | None = None, secret: bytes | None = None) -> None:
        self._keys = None if keys is None else {fingerprint(k): k.encode() for k in keys}
        self._secret = secret
        self._from: tuple[str, ...] | None = None
        self._cached: dict[str, bytes] = {}
        self._listening_on_loopback: bool | None = None

    @property
    def keys(self) -> dict[str, bytes]:
        if self._keys is not None:
            return self._keys
        configured = settings().moderator_keys
        if configured != self._from:
            self._cached, self._from = {fingerprint(k): k.encode() for k in configured}, configured
        return self._cached

    @property
    def secret(self) -> bytes:
        if self._secret is None:
            self._secret = load_secret(settings())
        return self._secret

    @property
    def open_mode(self) -> bool:
        """No moderator keys: the console is open, on loopback only."""
        return not self.keys

    # -- keys ------------------------------------------------------------------------------------------------
    def check_key(self, offered: str) -> str | None:
        """The fingerprint of the configured key `offered` is (compared in constant time), else None."""
        raw = offered.encode()
        found = None
        for fp, key in self.keys.items():
            if hmac.compare_digest(raw, key):
                found = fp
        return found

    # -- cookies ---------------------------------------------------------------------------------------------
    def sign(self, data: dict) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).rstrip(b"=")
        mac = hmac.new(self.secret, payload, hashlib.sha256).hexdigest()
        return f"{payload.decode()}.{mac}"

    def unsign(self, value: str) -> dict | None:
        payload, _, mac = value.partition(".")
        if not payload or not mac:
            return None
        expected = hmac.new(self.secret, payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def cookie_value(self, session: Session) -> str:
        return self.sign(
            {"sid": session.sid, "m": session.moderator, "k": session.key_fp, "t": round(session.issued)}
        )

    def new_session(self, moderator: str | None = None, key_fp: str | None = None) -> Session:
        return Session(secrets.token_urlsafe(18), moderator, key_fp, time.time())

    def session_of(
        self, cookies: dict[str, str], headers: dict[str, str], scope: dict
    ) -> tuple[Session, bool]:
        """(the request's session, whether a new cookie must be set). A header key wins over the cookie."""
        offered = offered_key(headers)
        if offered and self.keys:
            fp = self.check_key(offered)
            if fp:
                name = headers.get("x-moderator-id", "")
                moderator = name if MODERATOR_ID.fullmatch(name) else f"api-{fp[:6]}"
                return Session("hdr-" + fp, moderator, fp, time.time(), via="header"), False
        data = self.unsign(cookies.get(COOKIE, ""))
        now = time.time()
        session = None
        if data and isinstance(data.get("sid"), str) and isinstance(data.get("t"), int | float):
            if now - data["t"] <= SESSION_TTL_S:
                moderator, fp = data.get("m"), data.get("k")
                if moderator and fp in self.keys:
                    session = Session(data["sid"], moderator, fp, data["t"])
                else:  # anonymous, signed out, or its key was withdrawn: keep the sid (the CSRF binding) only
                    session = Session(data["sid"], None, None, data["t"])
        fresh = session is None
        if fresh:
            session = self.new_session()
        if (
            self.open_mode
        ):  # no keys: "local" on every request that passes the loopback rule, nobody otherwise
            local = self.local_request(scope, headers)
            session = Session(session.sid, LOCAL_MODERATOR if local else None, None, session.issued, "local")
        return session, fresh

    # -- loopback --------------------------------------------------------------------------------------------
    def local_request(self, scope: dict, headers: dict[str, str]) -> bool:
        """The request came over loopback (client and server addresses), not through a proxy, and the process
        listens on loopback only."""
        if any(h in headers for h in ("forwarded", "x-forwarded-for", "x-real-ip")):
            return False
        client, server = scope.get("client"), scope.get("server")
        if not client or not server or not (_is_loopback(client[0]) and _is_loopback(server[0])):
            return False
        return self.listening_on_loopback()

    def listening_on_loopback(self) -> bool:
        """Whether every TCP socket this process listens on is bound to a loopback address (once per process:
        the service's sockets are bound before the first request). No listening socket found: True (the request
        itself came over loopback, checked by the caller)."""
        if self._listening_on_loopback is None:
            try:
                import psutil

                conns = psutil.Process().net_connections(kind="inet")
                bound = [c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN]
            except Exception:
                bound = []
            self._listening_on_loopback = all(_is_loopback(ip) for ip in bound)
        return self._listening_on_loopback


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False
