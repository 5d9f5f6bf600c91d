"""Contact handles: the QQ numbers and groups, WeChat IDs, phone numbers, links and QR payloads a lure pushes,
each in one canonical spelling so that two accounts pushing the same group are seen to push the same thing.

The evidence kinds that name a handle are defined with every other kind in `fanzha.models.evidence`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from fanzha.models.errors import SettingsError
from fanzha.models.evidence import HANDLE_KINDS as EVIDENCE_HANDLE_KINDS

# canonical kinds: a QR group invite is a link (or a bare QR payload), so it is kept as `url` or `qr`
HANDLE_KINDS = tuple(k for k in EVIDENCE_HANDLE_KINDS if k != "qr_group_invite")
MAX_HANDLE_CHARS = 512
MAX_HANDLES_PER_ITEM = 32  # a 200,000-character post can carry thousands of numbers: the first 32 identify it


def canonical_handle(kind: str, value: str) -> tuple[str, str] | None:
    """The handle an evidence item names, in one spelling; None for evidence that is not a handle.

    URLs lose their scheme, `www.` and trailing slash (http://www.x.cn/ = x.cn); a QR payload that is a link
    is a URL; a WeChat ID that is a mobile number is that phone number.
    """
    value = value.strip()
    if not value:
        return None
    if kind in ("qr", "qr_group_invite"):
        low = value.lower()
        kind = "url" if low.startswith(("http://", "https://", "www.")) else "qr"
    if kind == "url":
        value = value.split("://", 1)[1] if "://" in value[:10] else value
        host, slash, rest = value.partition("/")
        host = host.lower().removeprefix("www.")
        value = (host + slash + rest).rstrip("/")
    elif kind == "wechat" and value.isdigit() and len(value) == 11 and value.startswith("1"):
        kind = "phone"
    elif kind in ("qq", "qq_group", "phone"):
        value = "".join(c for c in value if c.isdigit()) or value
    elif kind == "wechat":
        value = value.lower()
    elif kind != "qr":
        return None
    return (kind, value[:MAX_HANDLE_CHARS]) if value else None


def handle_key(kind: str, value: str) -> str:
    return f"{kind}:{value}"


def handles_of(evidence: Iterable[Mapping]) -> tuple[tuple[str, str], ...]:
    """The distinct canonical handles in a verdict's evidence, first ones first, at most MAX_HANDLES_PER_ITEM."""
    handles: dict[str, tuple[str, str]] = {}
    for e in evidence:
        canonical = canonical_handle(str(e.get("kind", "")), str(e.get("value", "")))
        if canonical:
            handles.setdefault(handle_key(*canonical), canonical)
    return tuple(handles.values())[:MAX_HANDLES_PER_ITEM]


def ignored_handles(specs: Iterable[str]) -> frozenset[str]:
    """`kind:value` specs (FANZHA_RISK_IGNORE_HANDLES) as handle keys; SettingsError for one that names no handle."""
    keys = set()
    for raw in specs:
        kind, _, value = raw.strip().partition(":")
        canonical = canonical_handle(kind, value)
        if canonical is None:
            raise SettingsError(
                f"FANZHA_RISK_IGNORE_HANDLES: {raw.strip()!r} is not kind:value with kind in {HANDLE_KINDS}"
            )
        keys.add(handle_key(*canonical))
    return frozenset(keys)
