"""CSRF protection for every console form: a token bound to the session, checked on every POST.

The token is HMAC(secret, "csrf:" + session id): it needs no server-side state, changes when the session id
does (at login), and every form carries it as the hidden field `csrf`. A POST without it, or with another
session's, is refused (403) before anything happens. As a second line, a POST whose Origin (or, without one,
Referer) names another host is refused too; SameSite=Strict on the cookie is the third. Requests signed in by
an `X-API-Key` header carry no cookie, so a browser cannot forge them, and need no token.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlsplit

FIELD = "csrf"


def token(secret: bytes, sid: str) -> str:
    return hmac.new(secret, b"csrf:" + sid.encode(), hashlib.sha256).hexdigest()[:40]


def valid(secret: bytes, sid: str, offered: str | None) -> bool:
    return bool(offered) and hmac.compare_digest(str(offered), token(secret, sid))


def same_origin(headers: dict[str, str]) -> bool:
    """The request's Origin (or Referer) is this host, or the browser sent neither."""
    source = headers.get("origin") or headers.get("referer")
    if not source or source == "null":
        return source != "null"
    return urlsplit(source).netloc.lower() == headers.get("host", "").lower()
