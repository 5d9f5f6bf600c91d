"""Capture with the real Detector (the committed default model, RapidOCR, PyAV): a text and a video decided
`review` and a poster in the audit sample are kept with their evidence, OCR boxes and QR codes, and the video's
keyframe at its triggered caption; `block` goes to the audit sample only when sampled. The review band is
widened (review ≥ 0.05, block ≥ 0.99999) so that the lures land in it whatever the model's exact scores."""

from __future__ import annotations

import pytest

from fanzha.models import Detector
from fanzha.models.labels import DecisionThresholds
from fanzha.platform import ItemRef, Platform

from ..conftest import MEDIA, SCAM


@pytest.fixture(scope="module")
def wide_detector():
    return Detector.load(thresholds=DecisionThresholds(review=0.05, block=0.99999), threads=2)


@pytest.fixture
def platform(wide_detector, tmp_path):
    p = Platform(
        wide_detector, f"sqlite:///{tmp_path / 'fanzha.db'}", review_dir=tmp_path / "review", audit_sample=0.0
    )
    yield p
    p.close()


def test_text_poster_and_video_are_kept_with_their_evidence(platform, wide_detector) -> None:
    platform.audit_sample = 1.0  # the poster is decided `block` below: kept as an audit sample
    (text,) = platform.classify_texts([SCAM], [ItemRef(id="t1", account_id="u1", source="dm")])
    # the poster is read by a detector that blocks at 0.06, whatever the model's exact score for it
    platform.detector = Detector(wide_detector.classifier, DecisionThresholds(review=0.05, block=0.06))
    poster = platform.classify_media((MEDIA / "qr.png").read_bytes(), ItemRef(id="p1", account_id="u1"))
    platform.detector = wide_detector
    video = platform.classify_media(
        (MEDIA / "flash_scam.mp4").read_bytes(), ItemRef(id="v1", account_id="u1")
    )
    assert (text.verdict.decision, poster.verdict.decision, video.verdict.decision) == (
        "review",
        "block",
        "review",
    )
    cases = {c["kind"]: c for q in ("review", "audit") for c in platform.queue(q, limit=10)}
    assert set(cases) == {"text", "image", "video"} and cases["image"]["queue"] == "audit"
    full = platform.case(cases["text"]["case_id"])
    assert full["text"] == SCAM and full["source"] == "dm" and full["evidence"]
    for e in full["evidence"]:  # every span points into the kept text
        assert SCAM[e["start"] : e["end"]] == e["text"]
    image = platform.case(cases["image"]["case_id"])
    (media,) = image["media"]
    assert media["width"] > 0 and media["qr"] and media["qr"][0]["payload"]
    assert all(len(b["points"]) == 4 for b in media["boxes"] + media["qr"])
    assert (
        platform.media_path(image["case_id"], media["name"]).read_bytes() == (MEDIA / "qr.png").read_bytes()
    )
    clip = platform.case(cases["video"]["case_id"])
    assert clip["timeline"] and clip["media"]
    frame = clip["media"][0]
    entry = clip["timeline"][frame["segment"]]
    assert frame["kind"] == "keyframe" and entry["frame_time"] == frame["t"] and entry["triggered"]
    assert platform.media_path(clip["case_id"], frame["name"]).read_bytes()[:2] == b"\xff\xd8"


def test_block_is_kept_only_in_the_audit_sample(wide_detector, tmp_path) -> None:
    strict = Detector(wide_detector.classifier, DecisionThresholds(review=0.05, block=0.06))
    for rate, expected in ((0.0, 0), (1.0, 1)):
        p = Platform(
            strict, f"sqlite:///{tmp_path / f'{rate}.db'}", review_dir=tmp_path / "r", audit_sample=rate
        )
        (scored,) = p.classify_texts([SCAM], [ItemRef(id="b1")])
        assert scored.verdict.decision == "block" and p.queue_depths()["audit"] == expected
        p.close()
