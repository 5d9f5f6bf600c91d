"""Review console server time with 10,000 open cases (issue 15's targets): the queue page ≤ 300 ms, a case
page with an image ≤ 500 ms, on SQLite.

    python bench/console.py                      # seeds a temporary SQLite database, serves the console on
                                                 # loopback, times the pages; table + reports/bench_console.json

Two seedings, each timed on its own database: `facade` goes through the Platform facade — real verdicts of the
committed model on test-split messages, each kept for review (`keep_for_review`, one case per item, 9,000 in
the review queue over 2,000 accounts), 1,000 fraud reports (`report`, scored at once) and one image
(`classify_media`, the QR poster); `bulk` is the platform's seed helper (fanzha.platform.seed: the four
queues, varied priorities, reach and reports, 2 % images).
Server time is measured inside the process, around the console's ASGI app (from the request reaching it to
its last body byte), so the HTTP client's own time is left out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from common import messages

REPO = Path(__file__).resolve().parents[1]
KEY = "bench-key"


def demo_platform(tmp: Path, detector=None):
    from fanzha.platform import Platform

    return Platform(detector, f"sqlite:///{tmp / 'fanzha.db'}", review_dir=tmp / "review", audit_sample=1.0)


def seed(platform, n_review: int, n_reports: int, threads: int = 2, log=print) -> dict:
    """Open cases through the facade: n_review items decided `review`, n_reports reports, one image."""
    from fanzha.platform import ItemRef, Scored

    texts = list(dict.fromkeys(messages(2000)))
    verdicts = platform.detector.classify_texts(texts)
    flagged = [(t, v) for t, v in zip(texts, verdicts, strict=True) if v.labels] or list(
        zip(texts, verdicts, strict=True)
    )
    t0 = time.perf_counter()
    for i in range(n_review):
        text, verdict = flagged[i % len(flagged)]
        text = f"{text} #{i}"  # one case per item (the same content again would count as reach)
        verdict = dataclasses.replace(verdict, decision="review")
        ref = ItemRef(id=f"item{i}", account_id=f"acct{i % 2000}", group_id=f"grp{i % 300}", source="comment")
        platform.keep_for_review(Scored(ref, verdict), content=text)
        if (i + 1) % 2000 == 0:
            log(f"  {i + 1:,} review cases ({time.perf_counter() - t0:.0f} s)")
    for i in range(n_reports):
        text, _ = flagged[i % len(flagged)]
        platform.report(
            f"user{i}", "骗我交钱", "text", text=f"{text} (report {i})", account_id=f"acct{i % 2000}"
        )
    image = (REPO / "tests" / "fixtures" / "media" / "qr.png").read_bytes()
    platform.classify_media(image, ItemRef(id="img-1", account_id="acct1"), expected="image")
    image_case = next(r["case_id"] for q in ("review", "audit") for r in platform.queue(q, kind="image"))
    return {"seed_s": round(time.perf_counter() - t0, 1), "image_case": image_case}


class Timed:
    """Server time per request: from the request reaching the app to its last body message."""

    def __init__(self, app) -> None:
        self.app, self.times = app, []

    async def __call__(self, scope, receive, send):
        t0 = time.perf_counter()

        async def timed_send(message):
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                self.times.append((time.perf_counter() - t0) * 1000)

        await self.app(scope, receive, timed_send)


def measure(platform, image_case: str, runs: int) -> list[dict]:
    """Time each page `runs` times (after one warm-up) through uvicorn on loopback, signed in by key."""
    import httpx
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from fanzha.serving.console import create_app
    from fanzha.serving.console.auth import Auth
    from fanzha.serving.launch import asgi_in_thread

    timed = Timed(create_app(platform, Auth(keys=(KEY,), secret=b"b" * 32)))
    pages = {
        "queue page (review, first 50)": "/queues?queue=review",
        "queue page (reports)": "/queues?queue=reports",
        "queue page (review, filtered by label)": "/queues?queue=review&label=fee_demand",
        "queue page (review, offset 5000)": "/queues?queue=review&offset=5000",
        "case page with an image": f"/case/{quote(image_case, safe='')}",
        "case page (text report)": f"/case/{quote(platform.queue('reports')[0]['case_id'], safe='')}",
        "dashboard": "/dashboard",
    }
    targets = {"queue page (review, first 50)": 300, "case page with an image": 500}
    rows = []
    with asgi_in_thread(Starlette(routes=[Mount("/console", timed)])) as url:
        client = httpx.Client(base_url=url + "/console", headers={"X-API-Key": KEY}, timeout=60)
        for name, path in pages.items():
            assert client.get(path).status_code == 200, path  # warm-up (templates compiled, caches)
            timed.times.clear()
            for _ in range(runs):
                r = client.get(path)
                assert r.status_code == 200
            t = sorted(timed.times)
            rows.append(
                {
                    "page": name,
                    "path": path,
                    "runs": len(t),
                    "p50_ms": round(statistics.median(t), 1),
                    "p95_ms": round(t[int(0.95 * (len(t) - 1))], 1),
                    "max_ms": round(t[-1], 1),
                    "target_ms": targets.get(name),
                    "bytes": len(r.content),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--review", type=int, default=9000)
    ap.add_argument("--reports", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--seeders",
        default="facade,bulk",
        help="facade: scored items kept one by one through the Platform facade; bulk: the platform's own "
        "seed helper (fanzha.platform.seed: all four queues, varied priorities, 2%% images)",
    )
    ap.add_argument("--json", default=str(REPO / "reports" / "bench_console.json"))
    args = ap.parse_args(argv)

    from fanzha.models import Detector
    from fanzha.platform.seed import seed_open_cases

    detector = Detector.load(threads=args.threads)
    results = []
    for seeder in args.seeders.split(","):
        tmp = Path(tempfile.mkdtemp(prefix=f"fanzha-bench-console-{seeder}-"))
        platform = demo_platform(tmp, detector)
        n = args.review + args.reports
        print(f"[{seeder}] seeding {n:,} open cases into {tmp / 'fanzha.db'} …")
        t0 = time.perf_counter()
        if seeder == "facade":
            image_case = seed(platform, args.review, args.reports, args.threads)["image_case"]
        else:
            seed_open_cases(platform, n)
            image_case = next(
                r["case_id"] for q in ("review", "audit") for r in platform.queue(q, kind="image")
            )
        seed_s = round(time.perf_counter() - t0, 1)
        depths = platform.queue_depths()
        print(f"[{seeder}] open cases: {depths} ({sum(depths.values()):,}) in {seed_s} s")
        rows = measure(platform, image_case, args.runs)
        platform.close()
        print(f"\n[{seeder}] {'page':40} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'target':>8}  ok")
        for row in rows:
            target = row["target_ms"]
            ok = "" if target is None else ("yes" if row["p95_ms"] <= target else "NO")
            print(
                f"[{seeder}] {row['page']:40} {row['p50_ms']:8.1f} {row['p95_ms']:8.1f} {row['max_ms']:8.1f} "
                f"{target or '':>8}  {ok}"
            )
        print()
        results.append(
            {
                "seeder": seeder,
                "open_cases": sum(depths.values()),
                "queue_depths": depths,
                "seed_s": seed_s,
                "pages": rows,
            }
        )
    out = {
        "database": "sqlite",
        "runs_per_page": args.runs,
        "results": results,
        "note": "server time inside the process around the console's ASGI app; one run on this machine",
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
