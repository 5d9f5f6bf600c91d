"""Video pipeline speed and recall: changed-frame sampling (ours) vs naive one-frame-per-second OCR.

    python bench/video.py                        # bench/media/captions_60s.mp4: 60 s, 1280×720, 10 caption changes
    python bench/video.py --json reports/bench_video.json

Both run in this process on the same file with the same OCR engine and threads. A caption counts as found
when some segment (ours) or some sampled frame (naive) reads ≥ 90 % of its characters.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO / "bench" / "media"


def found(captions: list[dict], texts: list[str]) -> list[bool]:
    from fanzha.models.ocr import char_recall_precision

    return [any(char_recall_precision(c["text"], t)[0] >= 0.9 for t in texts) for c in captions]


def naive(path: Path, engine) -> dict:
    """Decode everything, OCR the first frame of every second."""
    from fanzha.models.image import read_image
    from fanzha.models.video import open_video

    t0 = time.perf_counter()
    container = open_video(path)
    texts, next_t = [], 0.0
    try:
        for frame in container.decode(container.streams.video[0]):
            if frame.time is not None and frame.time >= next_t:
                texts.append(read_image(frame.to_ndarray(format="rgb24"), engine, frame=True, qr=False).text)
                next_t += 1.0
    finally:
        container.close()
    return {"seconds": time.perf_counter() - t0, "ocr_calls": len(texts), "texts": texts}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--video", default=str(MEDIA / "captions_60s.mp4"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    from fanzha.models import Detector

    path = Path(args.video)
    truth = json.loads((path.parent / "manifest.json").read_text(encoding="utf-8"))["videos"][path.name]
    detector = Detector.load(threads=args.threads)
    detector.ocr.read(__import__("numpy").zeros((64, 64, 3), "uint8"))  # build sessions before timing

    t0 = time.perf_counter()
    verdict = detector.classify_video(path)
    ours_s = time.perf_counter() - t0
    ours_found = found(truth["captions"], [s["text"] for s in verdict.timeline])
    base = naive(path, detector.ocr)
    base_found = found(truth["captions"], base["texts"])
    short = [i for i, c in enumerate(truth["captions"]) if c["end"] - c["start"] < 2]

    duration = truth["duration"]
    rows = [
        ("changed-frame sampling (ours)", ours_s, verdict.media["ocr_calls"], ours_found),
        ("naive 1 frame / s", base["seconds"], base["ocr_calls"], base_found),
    ]
    print(
        f"\n{path.name}: {duration:g} s, {truth['size'][0]}×{truth['size'][1]}, {len(truth['captions'])} captions "
        f"({len(truth['captions']) - 1} changes), {args.threads} threads\n"
    )
    print("| method | wall time | × real time | OCR calls | captions found | short caption(s) found |")
    print("|---|---|---|---|---|---|")
    for name, seconds, calls, hits in rows:
        print(
            f"| {name} | {seconds:.2f} s | {duration / seconds:.1f}× | {calls} | {sum(hits)}/{len(hits)} | "
            f"{sum(hits[i] for i in short)}/{len(short)} |"
        )
    print(
        f"\nOCR calls, ours / naive: {verdict.media['ocr_calls'] / base['ocr_calls']:.2f}; "
        f"wall time, naive / ours: {base['seconds'] / ours_s:.2f}×; verdict: {verdict.decision} "
        f"(trigger {verdict.media['trigger']})"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "video": path.name,
                    "duration_s": duration,
                    "threads": args.threads,
                    "ours": {
                        "seconds": round(ours_s, 3),
                        "ocr_calls": verdict.media["ocr_calls"],
                        "captions_found": sum(ours_found),
                        "frames_decoded": verdict.media["frames_decoded"],
                        "decision": verdict.decision,
                    },
                    "naive_1fps": {
                        "seconds": round(base["seconds"], 3),
                        "ocr_calls": base["ocr_calls"],
                        "captions_found": sum(base_found),
                    },
                    "captions": len(ours_found),
                    "short_captions": len(short),
                    "short_found_ours": sum(ours_found[i] for i in short),
                    "short_found_naive": sum(base_found[i] for i in short),
                },
                ensure_ascii=False,
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
