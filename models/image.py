"""Images: safe decoding, OCR in reading order and QR payloads, assembled into one text to classify.

    pixels = decode_image(data)                     # RGB uint8, EXIF-rotated; InputError on bad bytes
    reading = read_image(pixels, get_engine())      # OCR lines + QR codes + the text the classifier sees

The assembled text keeps a map from every character back to the OCR line or QR code it came from, so a
Verdict's evidence can point at boxes on the picture.
"""

from __future__ import annotations

import io
import warnings
from bisect import bisect_right
from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError, LimitExceeded, UnsupportedMedia
from .ocr import OcrEngine, OcrLine, Point, _box
from .settings import settings
from .verdict import Location, _Readable

# what platforms actually upload; Pillow can open more (EPS, PSD, ICO...), which only widens the attack surface
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO")


def decode_image(data: bytes, max_bytes: int | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Bytes → H×W×3 uint8 RGB, upright per EXIF, transparency flattened onto white, CMYK converted.

    Every way a file can be bad (too big, a decompression bomb, truncated, not an image, a format we do
    not take) raises InputError with a message a caller can act on. The limits default to the settings'
    (FANZHA_MAX_IMAGE_BYTES, FANZHA_MAX_IMAGE_PIXELS).
    """
    limits = settings().limits
    max_bytes = limits.max_image_bytes if max_bytes is None else max_bytes
    max_pixels = limits.max_image_pixels if max_pixels is None else max_pixels
    if not data:
        raise InputError("image is empty (0 bytes)")
    if len(data) > max_bytes:
        raise LimitExceeded(
            f"image is {len(data):,} bytes; the limit is {max_bytes:,} (FANZHA_MAX_IMAGE_BYTES)"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.format not in FORMATS:
                raise UnsupportedMedia(
                    f"unsupported image format {image.format}; send one of {', '.join(FORMATS)}"
                )
            width, height = image.size
            if width * height > max_pixels:  # checked from the header, before any pixel is decoded
                raise LimitExceeded(
                    f"image is {width}×{height} = {width * height:,} pixels, over the pixel limit "
                    f"{max_pixels:,} (FANZHA_MAX_IMAGE_PIXELS)"
                )
            image.load()
            image = ImageOps.exif_transpose(image)
            return _to_rgb(image)
    except InputError:
        raise
    except UnidentifiedImageError:
        raise UnsupportedMedia(
            f"not an image file (or an unsupported format); send one of {', '.join(FORMATS)}"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's own guard fires at open() for twice its limit, before our header check can
        raise LimitExceeded(f"image is over the pixel limit (a decompression bomb?): {e}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # Pillow reports truncated and corrupt data as OSError ("image file is truncated"), SyntaxError (bad
        # PNG chunks) or ValueError/EOFError from a codec
        raise InputError(f"image file is corrupt or truncated: {e}") from None


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # text on a transparent sticker is usually dark: white is the background a reader would see
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode == "I;16" or image.mode == "I":
        array = np.asarray(image, dtype=np.float64)
        span = max(1.0, float(array.max() - array.min()))
        image = Image.fromarray(((array - array.min()) * 255.0 / span).astype(np.uint8))
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


@dataclass(frozen=True)
class QrCode(_Readable):
    payload: str
    box: tuple[Point, Point, Point, Point]

    def to_dict(self) -> dict:
        return {"payload": self.payload, "box": [list(p) for p in self.box]}


_qr_detector = None


def decode_qr(rgb: np.ndarray) -> list[QrCode]:
    """Every QR code OpenCV finds and decodes (group invites, payment and phishing links)."""
    global _qr_detector
    if _qr_detector is None:
        _qr_detector = cv2.QRCodeDetector()
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    try:
        ok, payloads, points, _ = _qr_detector.detectAndDecodeMulti(gray)
    except cv2.error:  # OpenCV raises on degenerate candidates; no QR code is the honest answer
        return []
    if not ok or points is None:
        return []
    return [QrCode(text, _box(pts)) for text, pts in zip(payloads, points, strict=False) if text]


@dataclass
class Reading:
    """What a picture says: OCR lines in reading order, QR payloads, and the text assembled from both."""

    lines: list[OcrLine]
    qr: list[QrCode]
    text: str = ""
    # sources[i] = (kind, index) of the i-th piece of `text`; piece_starts[i] = its first character
    sources: list[tuple[str, int]] = field(default_factory=list)
    piece_starts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        pieces = [line.text for line in self.lines] + [code.payload for code in self.qr]
        self.sources = [("ocr", i) for i in range(len(self.lines))] + [("qr", i) for i in range(len(self.qr))]
        self.piece_starts = piece_starts(pieces)
        self.text = "\n".join(pieces)

    def qr_span(self, index: int) -> tuple[int, int]:
        """Where QR code `index`'s payload sits in `text`."""
        start = self.piece_starts[len(self.lines) + index]
        return start, start + len(self.qr[index].payload)

    def locate(self, start: int, end: int) -> list[Location]:
        """The OCR lines / QR codes a text span [start, end) falls on, with their boxes."""
        if not self.sources:
            return []
        first = max(0, bisect_right(self.piece_starts, start) - 1)
        last = max(first, bisect_right(self.piece_starts, max(start, end - 1)) - 1)
        found = []
        for kind, index in self.sources[first : last + 1]:
            box = self.lines[index].box if kind == "ocr" else self.qr[index].box
            found.append(Location(kind, index, box=box))
        return found


def piece_starts(pieces: list[str]) -> list[int]:
    """Offsets of each piece in "\\n".join(pieces): how spans in the joined text map back to their pieces."""
    starts, offset = [], 0
    for piece in pieces:
        starts.append(offset)
        offset += len(piece) + 1
    return starts


def read_image(rgb: np.ndarray, engine: OcrEngine, *, frame: bool = False, qr: bool = True) -> Reading:
    """OCR + QR on one RGB picture (a video frame with `frame=True`)."""
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    try:
        lines = engine.read(bgr, frame=frame)
    except (
        Exception
    ) as e:  # e.g. rapidocr refuses extreme aspect ratios (a 3000×4 strip): the picture's fault
        raise InputError(
            f"the OCR engine cannot read this picture ({rgb.shape[1]}×{rgb.shape[0]}): {e}"
        ) from None
    return Reading(lines, decode_qr(rgb) if qr else [])
