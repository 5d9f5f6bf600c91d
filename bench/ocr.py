"""OCR accuracy and speed on the image fixtures: rapidocr defaults vs our tuned settings (vs PaddleOCR).

    python bench/ocr.py                          # accuracy + median time per image, per engine setting
    python bench/ocr.py --memory 1000            # + RSS after 100 and 1,000 images through the Detector
    python bench/ocr.py --json reports/bench_ocr.json

Character recall/precision are order-free over the characters drawn (tests/fixtures/media/manifest.json),
whitespace ignored. Every setting runs on the same images with the same thread count, in this process.
The paddleocr row appears when the `paddle` extra is installed.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "media"


def settings_to_compare(threads: int) -> dict[str, object]:
    from fanzha.models.ocr import TUNED_SETTINGS, PaddleOcrEngine, RapidOcrEngine

    configs: dict[str, object] = {
        "rapidocr defaults": lambda: RapidOcrEngine({"Global.log_level": "error"}, threads=threads),
        "rapidocr tuned (ours)": lambda: RapidOcrEngine(TUNED_SETTINGS, threads=threads),
        "tuned, no direction cls": lambda: RapidOcrEngine(
            {**TUNED_SETTINGS, "Global.use_cls": False}, threads=threads
        ),
        "tuned, detect at 960": lambda: RapidOcrEngine(
            {**TUNED_SETTINGS, "Det.limit_side_len": 960}, threads=threads
        ),
        "tuned, recognise in batches of 6": lambda: RapidOcrEngine(
            {**TUNED_SETTINGS, "Rec.rec_batch_num": 6}, threads=threads
        ),
    }
    try:
        import paddleocr  # noqa: F401

        configs["paddleocr (PP-OCRv5 mobile)"] = lambda: PaddleOcrEngine(threads=threads)
    except ImportError:
        pass
    return configs


def images() -> list[tuple[str, np.ndarray, str]]:
    from fanzha.models.image import decode_image

    manifest = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))["images"]
    out = []
    for name, spec in manifest.items():
        rgb = decode_image((FIXTURES / name).read_bytes())
        out.append((name, np.ascontiguousarray(rgb[..., ::-1]), "".join(spec["lines"])))
    return out


def bench_engine(make, pictures, repeats: int) -> dict:
    from fanzha.models.ocr import char_recall_precision

    t0 = time.perf_counter()
    engine = make()
    engine.read(pictures[0][1])  # warm-up (first call builds sessions)
    build_s = time.perf_counter() - t0
    rows = {}
    for name, bgr, truth in pictures:
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            lines = engine.read(bgr)
            times.append(time.perf_counter() - t)
        read = "".join(line.text for line in lines)
        recall, precision = (
            char_recall_precision(truth, read) if truth else (None, None)
        )  # no text drawn: nothing to recall
        rows[name] = {
            "median_s": round(statistics.median(times), 3),
            "recall": recall and round(recall, 3),
            "precision": precision and round(precision, 3),
            "chars_read": len(read),
        }
    scored = [r for r in rows.values() if r["recall"] is not None]
    return {
        "build_s": round(build_s, 2),
        "images": rows,
        "median_s": round(statistics.median(r["median_s"] for r in rows.values()), 3),
        "recall": round(statistics.mean(r["recall"] for r in scored), 4),
        "min_recall": min(r["recall"] for r in scored),
        "precision": round(statistics.mean(r["precision"] for r in scored), 4),
    }


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def memory_run(n: int, threads: int) -> dict:
    """The whole image path (decode → OCR → QR → classify) over the fixtures, n images in all."""
    from tqdm import tqdm

    from fanzha.models import Detector

    detector = Detector.load(threads=threads)
    blobs = [
        (FIXTURES / name).read_bytes()
        for name in json.loads((FIXTURES / "manifest.json").read_text())["images"]
    ]
    marks = {}
    for i in tqdm(range(1, n + 1), desc="memory", unit=" images", file=sys.stderr):
        detector.classify_image(blobs[i % len(blobs)])
        if i in (100, n):
            marks[i] = round(rss_mb(), 1)
    return {
        "images": n,
        "rss_after_100_mb": marks.get(100),
        f"rss_after_{n}_mb": marks.get(n),
        "growth_pct": round(100 * (marks[n] / marks[100] - 1), 2) if 100 in marks else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per image (the median is reported)"
    )
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads")
    parser.add_argument(
        "--memory", type=int, default=0, help="also push this many images through the Detector and report RSS"
    )
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args()

    pictures = images()
    results = {
        name: bench_engine(make, pictures, args.repeats)
        for name, make in settings_to_compare(args.threads).items()
    }
    names = [p[0] for p in pictures]
    print(
        f"\nOCR on {len(names)} fixture images, {args.threads} threads, median of {args.repeats} runs (seconds / char recall)\n"
    )
    print("| image | " + " | ".join(results) + " |")
    print("|---|" + "---|" * len(results))
    for name in names:
        cells = [
            (r["images"][name]["median_s"], r["images"][name]["recall"], r["images"][name]["chars_read"])
            for r in results.values()
        ]
        print(
            f"| {name} | "
            + " | ".join(
                f"{t:.3f} s / " + (f"{rec:.3f}" if rec is not None else f"no text ({n} chars read)")
                for t, rec, n in cells
            )
            + " |"
        )
    print("| **median time** | " + " | ".join(f"**{r['median_s']:.3f} s**" for r in results.values()) + " |")
    print(
        "| **mean recall (min)** | "
        + " | ".join(f"**{r['recall']:.3f}** ({r['min_recall']:.3f})" for r in results.values())
        + " |"
    )
    print("| mean precision | " + " | ".join(f"{r['precision']:.3f}" for r in results.values()) + " |")
    print(
        "| engine build + first call | "
        + " | ".join(f"{r['build_s']:.2f} s" for r in results.values())
        + " |"
    )
    out = {"threads": args.threads, "repeats": args.repeats, "engines": results}
    if args.memory:
        out["memory"] = memory_run(args.memory, args.threads)
        m = out["memory"]
        print(
            f"\nmemory: RSS after 100 images {m['rss_after_100_mb']} MB, after {args.memory} {m[f'rss_after_{args.memory}_mb']} MB "
            f"({m['growth_pct']:+.2f} %), peak RSS {m['peak_rss_mb']} MB"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
