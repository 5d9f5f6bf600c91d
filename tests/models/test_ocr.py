"""The OCR engine interface: reading order, the default engine on the fixtures, the optional PaddleOCR engine."""

import numpy as np
import pytest

from fanzha.models.image import decode_image
from fanzha.models.ocr import OcrError, OcrLine, char_recall_precision, get_engine, reading_order

from ..conftest import MEDIA


def line(text: str, x0: int, y0: int, x1: int, y1: int) -> OcrLine:
    return OcrLine(text, ((x0, y0), (x1, y0), (x1, y1), (x0, y1)), 0.99)


def test_rows_read_top_to_bottom_then_left_to_right() -> None:
    # the detector returns boxes in any order; a row's boxes may sit a few pixels apart vertically
    shuffled = [
        line("右边", 300, 12, 400, 40),
        line("第二行", 10, 60, 200, 90),
        line("左边", 10, 10, 120, 38),
    ]
    assert [x.text for x in reading_order(shuffled)] == ["左边", "右边", "第二行"]


def test_vertical_columns_read_right_to_left() -> None:
    columns = [
        line("第一列文字", 400, 10, 440, 300),
        line("第三列文字", 100, 10, 140, 300),
        line("第二列文字", 250, 10, 290, 300),
    ]
    assert [x.text for x in reading_order(columns)] == ["第一列文字", "第二列文字", "第三列文字"]


def test_char_recall_precision_is_order_free_and_ignores_spaces() -> None:
    assert char_recall_precision("加 QQ群", "群QQ加") == (1.0, 1.0)
    recall, precision = char_recall_precision("免费领皮肤", "免费皮肤啊")
    assert recall == pytest.approx(0.8) and precision == pytest.approx(0.8)


def test_one_engine_per_process_and_unknown_engines_are_refused() -> None:
    assert get_engine("rapidocr", 2) is get_engine("rapidocr", 2)
    with pytest.raises(OcrError, match="unknown OCR engine"):
        get_engine("tesseract")


def test_default_engine_reads_every_fixture(media_manifest) -> None:
    engine = get_engine("rapidocr", 2)
    recalls = {}
    for name, spec in media_manifest["images"].items():
        rgb = decode_image((MEDIA / name).read_bytes())
        text = "".join(x.text for x in engine.read(np.ascontiguousarray(rgb[..., ::-1])))
        if spec["lines"]:
            recalls[name] = char_recall_precision("".join(spec["lines"]), text)[0]
        else:
            assert len(text) <= 2, f"{name} has no text, OCR read {text!r}"
    assert min(recalls.values()) >= 0.95, recalls
    assert sum(recalls.values()) / len(recalls) >= 0.98, recalls


def test_paddleocr_engine_when_installed(media_manifest) -> None:
    pytest.importorskip("paddleocr", reason="the paddle extra is not installed")
    engine = get_engine("paddleocr", 2)
    rgb = decode_image((MEDIA / "poster.png").read_bytes())
    text = "".join(x.text for x in engine.read(np.ascontiguousarray(rgb[..., ::-1])))
    assert char_recall_precision("".join(media_manifest["images"]["poster.png"]["lines"]), text)[0] >= 0.9
