"""Video: changed-frame sampling, caption segments against the fixtures' truth, containers, bad files."""

from dataclasses import replace

import av
import numpy as np
import pytest

from fanzha.models import Detector, InputError, LimitExceeded
from fanzha.models.ocr import char_recall_precision, get_engine
from fanzha.models.video import read_video

from ..conftest import MEDIA

FPS = 25


@pytest.fixture(scope="module")
def readings(media_manifest) -> dict:
    engine = get_engine("rapidocr", 2)
    return {name: read_video(MEDIA / name, engine) for name in media_manifest["videos"]}


@pytest.mark.parametrize("name", ["subtitles.mp4", "flash_scam.mp4", "static.mp4", "split_lure.mp4"])
def test_every_caption_becomes_one_timed_segment(readings, media_manifest, name) -> None:
    captions = media_manifest["videos"][name]["captions"]
    segments = readings[name].segments
    assert len(segments) == len(captions), [s.text for s in segments]
    for caption, segment in zip(captions, segments, strict=True):
        assert char_recall_precision(caption["text"], segment.text)[0] >= 0.9, (caption["text"], segment.text)
        assert abs(segment.start - caption["start"]) <= 0.25 and abs(segment.end - caption["end"]) <= 0.25


def test_a_static_video_costs_one_ocr_call(readings) -> None:
    assert readings["static.mp4"].ocr_calls == 1 and readings["static.mp4"].frames_decoded == 8 * FPS


def test_ocr_calls_follow_caption_changes_not_frames(readings, media_manifest) -> None:
    for name, spec in media_manifest["videos"].items():
        # one call per caption (plus at most one for a settling change), far below one call per second
        assert readings[name].ocr_calls <= len(spec["captions"]) + 1, (name, readings[name].samples)


def test_the_short_scam_caption_triggers_the_verdict(default_detector, media_manifest) -> None:
    verdict = default_detector.classify_video(MEDIA / "flash_scam.mp4")
    scam = next(i for i, c in enumerate(media_manifest["videos"]["flash_scam.mp4"]["captions"]) if c["fraud"])
    assert verdict.decision != "pass" and verdict.media["trigger"] == {"by": "segment", "segments": [scam]}
    assert [entry["triggered"] for entry in verdict.timeline] == [
        i == scam for i in range(len(verdict.timeline))
    ]
    assert verdict.timeline[scam]["end"] - verdict.timeline[scam]["start"] == pytest.approx(1.5, abs=0.25)
    assert any(e["kind"] == "qq_group" and e["locations"][0]["index"] == scam for e in verdict.evidence)


def test_benign_videos_pass(default_detector) -> None:
    for name in ("subtitles.mp4", "static.mp4"):
        verdict = default_detector.classify_video(MEDIA / name)
        assert verdict.decision == "pass" and verdict.media["trigger"] is None, name


class HalvesClassifier:
    """A stand-in model that only fires when it sees both halves of a split lure in one text."""

    outputs = ("fraud", "fake_giveaway", "fee_demand", "click_farming", "other_fraud")
    thresholds = {"fraud": 0.5}
    version = "halves-test"

    def predict(self, texts: list[str]) -> np.ndarray:
        both = [float("皮肤" in t and "激活费" in t) for t in texts]
        return np.array([[b, b, b, 0.0, 0.0] for b in both], dtype=np.float32)


def test_a_lure_split_across_two_captions_is_caught_by_the_pair() -> None:
    detector = Detector(HalvesClassifier(), ocr_engine="rapidocr", threads=2)
    verdict = detector.classify_video(MEDIA / "split_lure.mp4")
    assert [entry["fraud_score"] for entry in verdict.timeline] == [0.0, 0.0, 0.0]  # no caption alone
    assert verdict.decision == "block" and verdict.media["trigger"] == {
        "by": "adjacent_captions",
        "segments": [0, 1],
    }
    assert [entry["triggered"] for entry in verdict.timeline] == [True, True, False]


def remux(src, dst, fmt: str | None = None, codec: str | None = None) -> None:
    """Copy (or re-encode with `codec`) the video stream of src into another container."""
    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt) as out:
        stream_in = inp.streams.video[0]
        if codec is None:
            stream_out = out.add_stream_from_template(stream_in)
            for packet in inp.demux(stream_in):
                if packet.dts is not None:
                    packet.stream = stream_out
                    out.mux(packet)
            return
        stream_out = out.add_stream(codec, rate=FPS)
        stream_out.width, stream_out.height, stream_out.pix_fmt = stream_in.width, stream_in.height, "yuv420p"
        for frame in inp.decode(stream_in):
            out.mux(stream_out.encode(frame.reformat(format="yuv420p")))
        out.mux(stream_out.encode(None))


@pytest.mark.parametrize(
    "suffix,fmt,codec",
    [(".mov", "mov", None), (".mkv", "matroska", None), (".flv", "flv", None), (".webm", "webm", "libvpx")],
)
def test_other_containers(tmp_path, default_detector, suffix, fmt, codec) -> None:
    target = tmp_path / f"split{suffix}"
    remux(MEDIA / "split_lure.mp4", target, fmt, codec)
    verdict = default_detector.classify_file(target)
    assert verdict.media["kind"] == "video" and len(verdict.timeline) == 3 and verdict.decision != "pass"


def test_bad_videos_are_clear_errors(tmp_path, default_detector) -> None:
    data = (MEDIA / "subtitles.mp4").read_bytes()
    with pytest.raises(InputError, match="empty"):
        default_detector.classify_video(b"")
    with pytest.raises(InputError, match="not a readable video"):
        default_detector.classify_video(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 500)
    with pytest.raises(
        InputError, match="not a readable video"
    ):  # mp4 writes its index last: a cut file has none
        default_detector.classify_video(data[: len(data) // 2])


def test_a_truncated_stream_keeps_what_was_decoded(tmp_path, default_detector) -> None:
    mkv = tmp_path / "subtitles.mkv"
    remux(MEDIA / "subtitles.mp4", mkv, "matroska")
    cut = mkv.read_bytes()
    verdict = default_detector.classify_video(cut[: len(cut) * 3 // 5])
    assert 0 < verdict.media["frames_decoded"] < 12 * FPS and "stream ends at" in verdict.media["truncated"]
    assert 1 <= len(verdict.timeline) <= 3


def test_limits(monkeypatch, default_detector) -> None:
    limits = (
        default_detector.limits
    )  # the settings' limits (FANZHA_MAX_VIDEO_*), taken when the Detector was built
    monkeypatch.setattr(default_detector, "limits", replace(limits, max_video_seconds=5.0))
    with pytest.raises(LimitExceeded, match="12.0 s; the limit is 5 s"):
        default_detector.classify_video(MEDIA / "subtitles.mp4")
    monkeypatch.setattr(
        default_detector, "limits", replace(limits, max_video_seconds=600.0, max_video_pixels=320 * 240)
    )
    with pytest.raises(LimitExceeded, match="640×360"):
        default_detector.classify_video(MEDIA / "subtitles.mp4")
    with pytest.raises(LimitExceeded, match="the limit is 4 s"):
        default_detector.classify_video(MEDIA / "static.mp4", max_seconds=4)


def test_timelines_start_at_zero_when_the_stream_does_not(tmp_path, default_detector) -> None:
    # a clip cut from a long broadcast: its first frame is at 700 s
    src, shifted = MEDIA / "static.mp4", tmp_path / "shifted.mkv"
    with av.open(str(src)) as inp, av.open(str(shifted), "w", format="matroska") as out:
        stream_in = inp.streams.video[0]
        stream_out = out.add_stream_from_template(stream_in)
        offset = int(700 / stream_in.time_base)
        for packet in inp.demux(stream_in):
            if packet.dts is None:
                continue
            packet.pts, packet.dts = packet.pts + offset, packet.dts + offset
            packet.stream = stream_out
            out.mux(packet)
    verdict = default_detector.classify_video(shifted)
    assert verdict.timeline[0]["start"] == 0.0 and verdict.timeline[-1]["end"] <= 8.5
