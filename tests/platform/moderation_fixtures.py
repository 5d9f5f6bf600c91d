"""A Platform for moderation tests: a scripted detector (no model: the verdict follows keywords), a movable
clock, a private review folder, on SQLite and PostgreSQL (`db_url`)."""

from __future__ import annotations

import pytest

from fanzha.models.verdict import Evidence, Location, MediaInfo, Verdict
from fanzha.platform import ItemRef, Platform

T0 = 1_800_000_000.0
SCAM = "恭喜你成为幸运粉丝！免费领取签名照，加QQ群 83726154，先交29元激活费"  # block
LURE = "免费送皮肤，私聊我领取"  # review
BENIGN = "明天下午三点数学考试，大家记得带好文具"  # pass


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def verdict_for(text: str) -> Verdict:
    if "激活费" in text:
        start = text.index("激活费")
        return Verdict(
            0.97,
            {"fake_giveaway": 0.95, "fee_demand": 0.97},
            ["fake_giveaway", "fee_demand"],
            "block",
            [Evidence("fee_term", "激活费", start, start + 3, "激活费")]
            + (
                [
                    Evidence(
                        "qq_group", "83726154", text.index("83726154"), text.index("83726154") + 8, "83726154"
                    )
                ]
                if "83726154" in text
                else []
            ),
            "scripted",
        )
    if "皮肤" in text or "unlabelled" in text:
        labels = [] if "unlabelled" in text else ["fake_giveaway"]
        return Verdict(0.7, {"fake_giveaway": 0.7}, labels, "review", [], "scripted")
    return Verdict(0.02, {"fake_giveaway": 0.02}, [], "pass", [], "scripted")


class ScriptedDetector:
    """classify_texts by keywords; classify_media answers an image verdict with one OCR line and a QR code."""

    def classify_texts(self, texts: list[str]) -> list[Verdict]:
        return [verdict_for(t) for t in texts]

    def classify_media(self, data: bytes, expected=None, max_seconds=None) -> Verdict:
        from fanzha.models.image import QrCode
        from fanzha.models.ocr import OcrLine

        text = "免费送皮肤 加群"
        box = ((10, 10), (110, 10), (110, 30), (10, 30))
        return Verdict(
            0.7,
            {"fake_giveaway": 0.7},
            ["fake_giveaway"],
            "review",
            [Evidence("giveaway_term", "免费送", 0, 3, "免费送", (Location("ocr", 0, box),))],
            "scripted",
            text=text,
            ocr=[OcrLine(text, box, 0.98)],
            qr=[QrCode("https://qm.qq.com/abc", ((50, 50), (90, 50), (90, 90), (50, 90)))],
            media=MediaInfo("image", 120, 100),
        )


@pytest.fixture
def make_platform(db_url, tmp_path):
    opened: list[Platform] = []

    def make(clock: Clock | None = None, **kw) -> Platform:
        kw.setdefault("audit_sample", 0.0)
        kw.setdefault("review_dir", tmp_path / "review")
        platform = Platform(ScriptedDetector(), db_url, clock=clock or Clock(), **kw)
        opened.append(platform)
        return platform

    yield make
    for platform in opened:
        platform.close()


def ref(
    n: int | str, account: str | None = "u1", group: str | None = None, source: str = "comment"
) -> ItemRef:
    return ItemRef(id=f"m{n}", account_id=account, group_id=group, source=source)
