"""Safe image decoding (every kind of bad file is a clear InputError), QR codes, and image verdicts."""

import io

import numpy as np
import pytest
from PIL import Image

from fanzha.models import InputError
from fanzha.models.image import decode_image, decode_qr

from ..conftest import MEDIA


def encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def test_exif_orientation_is_applied() -> None:
    raw = Image.open(MEDIA / "rotated.jpg")
    assert raw.getexif().get(0x0112) == 8 and raw.size == (800, 600)
    assert decode_image((MEDIA / "rotated.jpg").read_bytes()).shape == (800, 600, 3)  # upright: 600 wide, 800 tall


def test_transparency_is_flattened_onto_white() -> None:
    rgba = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    pixels = decode_image(encode(rgba))
    assert pixels.shape == (10, 20, 3) and pixels.dtype == np.uint8
    assert tuple(pixels[5, 5]) == (255, 255, 255) and tuple(pixels[0, 0]) == (255, 0, 0)


@pytest.mark.parametrize("mode,fmt", [("CMYK", "JPEG"), ("L", "PNG"), ("P", "GIF"), ("I;16", "PNG"), ("1", "BMP"), ("RGB", "WEBP")])
def test_other_modes_become_rgb(mode, fmt) -> None:
    image = Image.new("RGB", (16, 8), (200, 30, 30)).convert(mode)
    assert decode_image(encode(image, fmt)).shape == (8, 16, 3)


def test_bad_files_are_clear_errors() -> None:
    poster = (MEDIA / "poster.png").read_bytes()
    cases = {
        b"": "empty",
        "就是一段文字，不是图片".encode(): "not an image",
        poster[: len(poster) // 2]: "corrupt or truncated",
        encode(Image.new("RGB", (32, 32)), "ICO"): "unsupported image format ICO",
        encode(Image.new("1", (10_000, 10_000))): "over the pixel limit",  # a 12 KB file of 100 Mpx
        encode(Image.new("1", (8_000, 6_000))): "over the pixel limit",  # 48 Mpx: under Pillow's guard, over ours
    }
    for data, message in cases.items():
        with pytest.raises(InputError, match=message):
            decode_image(data)
    with pytest.raises(InputError, match="bytes; the limit is"):
        decode_image(poster, max_bytes=1000)


def test_qr_code_payload(media_manifest) -> None:
    codes = decode_qr(decode_image((MEDIA / "qr.png").read_bytes()))
    assert [c.payload for c in codes] == [media_manifest["images"]["qr.png"]["qr"]]
    assert len(codes[0].box) == 4


def test_image_verdicts_match_the_fixtures(default_detector, media_manifest) -> None:
    for name, spec in media_manifest["images"].items():
        verdict = default_detector.classify_image((MEDIA / name).read_bytes())
        assert (verdict.decision != "pass") == spec["fraud"], (name, verdict.fraud_score, verdict.text)
        assert verdict.media["kind"] == "image" and len(verdict.ocr) == len(verdict.text.splitlines()) - len(verdict.qr)


def test_evidence_points_back_to_boxes_and_qr_codes(default_detector, media_manifest) -> None:
    verdict = default_detector.classify_image((MEDIA / "qr.png").read_bytes()).to_dict()
    group_code = "419276385"
    invite = [e for e in verdict["evidence"] if e["kind"] == "qr_group_invite"]
    assert invite and group_code in invite[0]["value"] and invite[0]["locations"][0]["source"] == "qr"
    spans = [e for e in verdict["evidence"] if e["kind"] == "qq_group" and e["value"] == group_code]
    assert spans, verdict["evidence"]
    for e in spans:  # the span's text is on the line whose box it names
        assert verdict["text"][e["start"]:e["end"]] == e["text"]
        loc = e["locations"][0]
        source_text = verdict["ocr"][loc["index"]]["text"] if loc["source"] == "ocr" else verdict["qr"][loc["index"]]["payload"]
        assert e["text"] in source_text and loc["box"]


def test_a_photo_with_no_text_passes_without_scoring(default_detector) -> None:
    verdict = default_detector.classify_image((MEDIA / "photo.jpg").read_bytes())
    assert verdict.decision == "pass" and verdict.fraud_score == 0.0 and verdict.text == "" and verdict.ocr == []


def test_pictures_the_ocr_engine_refuses_are_input_errors(default_detector) -> None:
    strip = encode(Image.new("RGB", (3000, 4), (255, 255, 255)))  # rapidocr refuses such aspect ratios
    try:
        verdict = default_detector.classify_image(strip)
    except InputError as e:
        assert "OCR engine cannot read this picture (3000×4)" in str(e)
    else:  # an engine that copes must still answer sensibly
        assert verdict.decision == "pass"
