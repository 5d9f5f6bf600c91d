"""What kind of media a file is, from its first bytes (never from the name a client sent)."""

from __future__ import annotations

from .errors import UnsupportedMedia

_IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*")
_VIDEO_MAGIC = (b"\x1a\x45\xdf\xa3", b"FLV\x01")  # Matroska/WebM, FLV


_IMAGE_BRANDS = (
    b"heic",
    b"heix",
    b"hevc",
    b"heim",
    b"heis",
    b"mif1",
    b"msf1",
    b"avif",
    b"avis",
)  # ISO-BMFF stills


def sniff(head: bytes) -> str:
    """ "image" or "video" from a file's first 16+ bytes; InputError for anything else."""
    if (
        head.startswith(_IMAGE_MAGIC)
        or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")
        or (head[4:8] == b"ftyp" and head[8:12] in _IMAGE_BRANDS)
    ):
        return "image"
    if (
        head.startswith(_VIDEO_MAGIC)
        or head[4:8] == b"ftyp"
        or (head[:4] == b"RIFF" and head[8:12] == b"AVI ")
        or head[:1] == b"\x47"
        and len(head) > 188
        and head[188:189] == b"\x47"
    ):  # MPEG-TS sync bytes
        return "video"
    if head[4:8] in (b"moov", b"mdat", b"wide", b"free"):  # QuickTime files without an ftyp box
        return "video"
    raise UnsupportedMedia(
        "unsupported media: not a JPEG/PNG/GIF/WebP/BMP/TIFF image or an MP4/MOV/WebM/MKV/FLV/AVI/TS video"
    )
