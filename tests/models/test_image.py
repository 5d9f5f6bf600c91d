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
    assert decode_image((MEDIA / "rotated.jpg").read_bytes()).shape == (
        800,
        600,
        3,
    )  # upright: 600 wide, 800 tall


def test_transparency_is_flattened_onto_white() -> None:
    rgba = Image.new("RGBA", (20, 10), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    pixels = decode_image(encode(rgba))
    assert pixels.shape == (10, 20, 3) and pixels.dtype == np.uint8
    assert tuple(pixels[5, 5]) == (255, 255, 255) and tuple(pixels[0, 0]) == (255, 0, 0)


PATCHES = [(200, 30, 30), (30, 160, 60), (20, 40, 200), (0, 0, 0)]  # red, green, blue, black quadrants


def quadrants() -> Image.Image:
    image = Image.new("RGB", (32, 16))
    for i, colour in enumerate(PATCHES):
        image.paste(colour, (8 * i, 0, 8 * i + 8, 16))
    return image


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_is_converted_to_the_same_colours(fmt) -> None:
    """A CMYK file (print artwork; Pillow writes JPEG CMYK Adobe-style, inverted) reads as the colours it shows."""
    rgb = quadrants()
    cmyk = rgb.convert("CMYK")
    assert cmyk.mode == "CMYK"
    pixels = decode_image(encode(cmyk, fmt, **({"quality": 95} if fmt == "JPEG" else {})))
    assert pixels.shape == (16, 32, 3) and pixels.dtype == np.uint8
    for i, colour in enumerate(PATCHES):  # the middle of each patch, away from JPEG's block edges
        assert np.abs(pixels[4:12, 8 * i + 2 : 8 * i + 6].astype(int) - colour).max() <= 3, (
            i,
            pixels[8, 8 * i + 4],
        )
    assert np.abs(pixels.astype(int) - np.asarray(rgb)).mean() < 3


@pytest.mark.parametrize(
    "mode,fmt", [("L", "PNG"), ("P", "GIF"), ("1", "BMP"), ("RGB", "PNG"), ("RGB", "WEBP")]
)
def test_other_modes_become_their_own_rgb(mode, fmt) -> None:
    image = quadrants().convert(mode)
    pixels = decode_image(encode(image, fmt, **({"quality": 95} if fmt == "WEBP" else {})))
    assert pixels.shape == (16, 32, 3) and pixels.dtype == np.uint8
    expected = np.asarray(image.convert("RGB")).astype(
        int
    )  # grey stays grey, a palette its colours, 1-bit black/white
    if fmt != "WEBP":
        assert (pixels == expected).all()
    for i in range(len(PATCHES)):  # lossy WebP: the middle of each patch (chroma is subsampled across edges)
        middle = np.s_[4:12, 8 * i + 2 : 8 * i + 6]
        assert np.abs(pixels[middle].astype(int) - expected[middle]).max() <= 8, i


def test_sixteen_bit_grey_is_stretched_to_eight_bits() -> None:
    ramp = np.linspace(1000, 41_000, 32).astype(np.uint16)[None, :].repeat(4, axis=0)
    pixels = decode_image(encode(Image.fromarray(ramp), "PNG"))  # a uint16 array: mode I;16
    assert pixels.shape == (4, 32, 3) and (pixels[..., 0] == pixels[..., 2]).all()
    expected = ((ramp.astype(float) - 1000) * 255 / 40_000).astype(np.uint8)  # darkest → 0, brightest → 255
    assert (pixels[..., 0] == expected).all() and pixels.min() == 0 and pixels.max() == 255


def test_bad_files_are_clear_errors() -> None:
    poster = (MEDIA / "poster.png").read_bytes()
    cases = {
        b"": "empty",
        "就是一段文字，不是图片".encode(): "not an image",
        poster[: len(poster) // 2]: "corrupt or truncated",
        encode(Image.new("RGB", (32, 32)), "ICO"): "unsupported image format ICO",
        encode(Image.new("1", (10_000, 10_000))): "over the pixel limit",  # a 12 KB file of 100 Mpx
        encode(
            Image.new("1", (8_000, 6_000))
        ): "over the pixel limit",  # 48 Mpx: under Pillow's guard, over ours
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
        assert verdict.media["kind"] == "image" and len(verdict.ocr) == len(verdict.text.splitlines()) - len(
            verdict.qr
        )


def test_evidence_points_back_to_boxes_and_qr_codes(default_detector, media_manifest) -> None:
    verdict = default_detector.classify_image((MEDIA / "qr.png").read_bytes()).to_dict()
    group_code = "419276385"
    invite = [e for e in verdict["evidence"] if e["kind"] == "qr_group_invite"]
    assert invite and group_code in invite[0]["value"] and invite[0]["locations"][0]["source"] == "qr"
    spans = [e for e in verdict["evidence"] if e["kind"] == "qq_group" and e["value"] == group_code]
    assert spans, verdict["evidence"]
    for e in spans:  # the span's text is on the line whose box it names
        assert verdict["text"][e["start"] : e["end"]] == e["text"]
        loc = e["locations"][0]
        source_text = (
            verdict["ocr"][loc["index"]]["text"]
            if loc["source"] == "ocr"
            else verdict["qr"][loc["index"]]["payload"]
        )
        assert e["text"] in source_text and loc["box"]


def test_a_photo_with_no_text_passes_without_scoring(default_detector) -> None:
    verdict = default_detector.classify_image((MEDIA / "photo.jpg").read_bytes())
    assert (
        verdict.decision == "pass" and verdict.fraud_score == 0.0 and verdict.text == "" and verdict.ocr == []
    )


def test_pictures_the_ocr_engine_refuses_are_input_errors(default_detector) -> None:
    strip = encode(Image.new("RGB", (3000, 4), (255, 255, 255)))  # rapidocr refuses such aspect ratios
    try:
        verdict = default_detector.classify_image(strip)
    except InputError as e:
        assert "OCR engine cannot read this picture (3000×4)" in str(e)
    else:  # an engine that copes must still answer sensibly
        assert verdict.decision == "pass"
