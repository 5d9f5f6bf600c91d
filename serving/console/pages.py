"""What the templates need beyond the platform's dicts: evidence spans highlighted in the text as written, OCR
boxes and QR codes as an SVG overlay, names in Chinese and English, times and scores for people."""

from __future__ import annotations

import time
from html import escape

from markupsafe import Markup

LABELS = {
    "fake_giveaway": "虚假赠送",
    "fee_demand": "索要费用",
    "click_farming": "刷单返利",
    "other_fraud": "其他诈骗",
}
QUEUES = {  # the four queues, in the order moderators see them
    "reports": ("用户举报", "User reports"),
    "review": ("待复核", "Decided review"),
    "audit": ("抽检", "Block audit sample"),
    "alerts": ("预警", "Alerts"),
}
DECISIONS = {"confirm": "确认违规 confirm", "reject": "驳回 reject (benign)", "escalate": "升级 escalate"}
ACCOUNT_ACTIONS = {
    "warn": "警告 warn",
    "restrict": "限制 restrict",
    "suspend": "暂停 suspend",
    "ban": "封禁 ban",
}
GROUP_ACTIONS = {"mute": "禁言 mute", "dissolve": "解散 dissolve"}
KINDS = ("text", "image", "video", "conversation", "account", "group", "alert")
DURATIONS = [
    ("", "永久 permanent"),
    ("3600", "1 小时"),
    ("86400", "1 天"),
    ("604800", "7 天"),
    ("2592000", "30 天"),
]
IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


def label_name(label: str) -> str:
    return f"{LABELS[label]} {label}" if label in LABELS else label


def when(ts: float | None) -> str:
    if not ts:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def ago(ts: float | None, now: float | None = None) -> str:
    if not ts:
        return "—"
    s = max(0, (now or time.time()) - ts)
    for unit, size in (("天", 86400), ("小时", 3600), ("分钟", 60)):
        if s >= size:
            return f"{int(s // size)} {unit}前"
    return "刚刚"


def score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def duration(seconds: float | None) -> str:
    if not seconds:
        return "永久"
    for unit, size in (("天", 86400), ("小时", 3600), ("分钟", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)} {unit}"
    return f"{seconds:g} 秒"


def highlight(text: str | None, evidence: list[dict] | None) -> Markup:
    """The text as written, each evidence span wrapped in <mark> where its [start, end) offsets put it.
    Overlapping spans are merged into one mark naming every kind; spans outside the text are ignored."""
    if not text:
        return Markup("")
    n = len(text)
    cover: list[list[str]] = [[] for _ in range(n)]
    for e in evidence or []:
        try:
            start, end = int(e.get("start", -1)), int(e.get("end", -1))
        except (TypeError, ValueError):
            continue
        if 0 <= start < end <= n:
            for i in range(start, end):
                cover[i].append(str(e.get("kind", "evidence")))
    out, i = [], 0
    while i < n:
        j = i
        while j < n and bool(cover[j]) == bool(cover[i]) and (not cover[i] or cover[j] == cover[i]):
            j += 1
        chunk = escape(text[i:j])
        if cover[i]:
            kinds = " ".join(dict.fromkeys(cover[i]))
            out.append(f'<mark class="ev" data-kind="{escape(kinds)}" title="{escape(kinds)}">{chunk}</mark>')
        else:
            out.append(chunk)
        i = j
    return Markup("".join(out))


def _points(shape: dict) -> list[tuple[float, float]]:
    pts = shape.get("points") or shape.get("box")
    if not pts:
        return []
    if len(pts) == 4 and all(isinstance(v, int | float) for v in pts):  # [x0, y0, x1, y1]
        x0, y0, x1, y1 = pts
        return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    try:
        return [(float(p[0]), float(p[1])) for p in pts]
    except (TypeError, ValueError, IndexError):
        return []


def overlay(media: dict) -> Markup:
    """An SVG over the picture (same viewBox as its pixels): OCR boxes in blue with their text, QR codes in
    red, a box that carries evidence drawn thicker."""
    w, h = media.get("width") or 0, media.get("height") or 0
    if not w or not h:
        return Markup("")
    parts = [
        f'<svg class="overlay" viewBox="0 0 {w} {h}" preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg">'
    ]
    for cls, shapes in (("ocr", media.get("boxes") or []), ("qr", media.get("qr") or [])):
        for shape in shapes:
            pts = _points(shape)
            if not pts:
                continue
            label = shape.get("text") or shape.get("payload") or ""
            hit = " hit" if shape.get("evidence") else ""
            parts.append(
                f'<polygon class="{cls}{hit}" points="{" ".join(f"{x:.0f},{y:.0f}" for x, y in pts)}">'
                f"<title>{escape(str(label))}</title></polygon>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def renderable_image(head: bytes) -> bool:
    """Whether the first bytes of a kept file are a picture a browser shows (PNG, JPEG, GIF, BMP, WebP)."""
    return head.startswith(IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def image_type(head: bytes) -> str:
    if head.startswith(b"\x89PNG"):
        return "image/png"
    if head.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if head.startswith(b"GIF8"):
        return "image/gif"
    if head.startswith(b"BM"):
        return "image/bmp"
    return "image/webp"
