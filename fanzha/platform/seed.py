"""Open review cases in bulk, fast: for benchmarks and demos of the review console (not for production data).

    from fanzha.platform import Platform
    from fanzha.platform.seed import seed_open_cases
    platform = Platform(database="sqlite:////tmp/bench.db", review_dir="/tmp/bench-review")
    seed_open_cases(platform, 10_000)          # ~1 s: reports, review items, audit samples, alerts

or `python -m fanzha.platform.seed sqlite:////tmp/bench.db 10000 --review-dir /tmp/bench-review`.

The cases are spread over the four queues (60 % review, 20 % reports, 10 % audit, 10 % alerts) with varied
scores, labels, reach, report counts, wording aimed at minors and ages; 2 % are images with a kept PNG (OCR
boxes and a QR box drawn on the case page). The accounts and groups they name are given a risk state (one
flagged item each, a few sharing a QQ group so that clusters form). Rows are written with executemany, a
few statements in all.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import secrets
import time
from pathlib import Path

import sqlalchemy as sa

from .facade import Platform
from .review import aimed_at_minors, priority
from .risk import ScoredItem

TEMPLATES = (
    ("恭喜你成为幸运粉丝！免费领取签名照，加QQ群 {n} ，先交{m}元激活费", ["fake_giveaway", "fee_demand"]),
    ("小学生专属福利：免费送永久皮肤，进群{n}领取，名额有限", ["fake_giveaway"]),
    ("点赞一单{m}元日结，进任务群{n}接单，学生党也能做", ["click_farming"]),
    ("你的游戏账号因未成年防沉迷被冻结，请缴纳{m}元解冻费，联系QQ {n}", ["fee_demand", "other_fraud"]),
    ("后援会招新，加群 {n} 领周边，入会费{m}元", ["fake_giveaway", "fee_demand"]),
    ("我是客服，你的订单异常，需要退款请加微信 kf{n}", ["other_fraud"]),
    ("兼职刷单，先垫付{m}元后返佣，加QQ群{n}", ["click_farming", "fee_demand"]),
    ("明天数学考试，大家带好文具，{m}点在{n}教室集合", []),
)
SHARES = (("review", 0.6), ("reports", 0.2), ("audit", 0.1), ("alerts", 0.1))


def _png(width: int = 360, height: int = 240) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), (250, 240, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((20, 20, 340, 60), outline=(200, 0, 0), width=2)
    draw.rectangle((240, 120, 330, 210), fill=(30, 30, 30))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def seed_open_cases(platform: Platform, n: int, *, seed: int = 0, now: float | None = None) -> dict[str, int]:
    """Write `n` open cases; returns how many went to each queue."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    db, book = platform.database, platform.review
    cases_t, reports_t, events_t = book.cases, platform.reports.reports, platform.reports.events
    accounts = [f"seed-u{i}" for i in range(max(1, n // 20))]
    groups = [f"seed-g{i}" for i in range(max(1, n // 100))]
    png = _png()
    cases, reports, events, items = [], [], [], []
    counts = {q: 0 for q, _ in SHARES}
    with db.read() as conn:
        next_id = conn.execute(sa.select(sa.func.max(cases_t.c.id))).scalar() or 0
    for i in range(n):
        roll, queue = rng.random(), "review"
        for name, share in SHARES:
            if roll < share:
                queue = name
                break
            roll -= share
        counts[queue] += 1
        template, labels = rng.choice(TEMPLATES)
        text = template.format(n=rng.randint(10_000_000, 99_999_999), m=rng.randint(5, 500))
        score = round(rng.uniform(0.5, 0.99) if labels else rng.uniform(0.4, 0.6), 4)
        decision = "block" if queue == "audit" else "review" if queue == "review" else None
        account, group = rng.choice(accounts), rng.choice(groups) if rng.random() < 0.5 else None
        created = now - rng.uniform(0, 7 * 86400)
        reach, report_count = 1 + int(rng.expovariate(1.0)), int(rng.expovariate(1.5))
        minors = aimed_at_minors(text)
        kind = "image" if queue in ("review", "audit") and rng.random() < 0.02 else "text"
        media, media_dir = None, None
        if kind == "image":
            media_dir = f"seed/{secrets.token_hex(8)}"
            folder = book.review_dir / media_dir
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "image.png").write_bytes(png)
            media = [
                {
                    "name": "image.png",
                    "kind": "image",
                    "width": 360,
                    "height": 240,
                    "boxes": [{"points": [[20, 20], [340, 20], [340, 60], [20, 60]], "text": text[:16]}],
                    "qr": [
                        {
                            "points": [[240, 120], [330, 120], [330, 210], [240, 210]],
                            "payload": "https://qm.qq.com/x",
                        }
                    ],
                }
            ]
        verdict = {
            "fraud_score": score,
            "scores": {label: score for label in labels},
            "labels": labels,
            "decision": decision or ("block" if score >= 0.9 else "review"),
            "evidence": [],
            "model_version": "seed",
        }
        ref = None
        if queue == "reports":
            ref = "rseed" + secrets.token_hex(10)
            reports.append(
                {
                    "id": ref,
                    "reporter_id": f"seed-reporter-{rng.randint(1, 1000)}",
                    "idempotency_key": None,
                    "target_type": "text",
                    "target_text": text,
                    "target_media_sha256": None,
                    "target_account_id": account,
                    "target_group_id": group,
                    "target_source": "comment",
                    "reason": "他让我先交钱",
                    "status": "received",
                    "status_reason": None,
                    "labels": None,
                    "moderator_id": None,
                    "verdict": json.dumps(verdict, ensure_ascii=False),
                    "created_at": created,
                    "updated_at": created,
                }
            )
            events.append(
                {"report_id": ref, "ts": created, "status": "received", "actor": None, "note": None}
            )
            report_count = max(1, report_count)
        elif queue == "alerts":
            ref = f"seed{i}"
        next_id += 1
        case_id = {"reports": f"report:{ref}", "alerts": f"alert:{ref}"}.get(queue, f"{queue}:{next_id}")
        cases.append(
            {
                "id": next_id,
                "case_id": case_id,
                "queue": queue,
                "ref": ref,
                "kind": "alert" if queue == "alerts" else kind,
                "status": "open",
                "escalated": rng.random() < 0.03,
                "priority": priority(score, reach, report_count, minors),
                "fraud_score": score,
                "decision": decision,
                "labels": json.dumps(labels),
                "reach": reach,
                "report_count": report_count,
                "minors": minors,
                "snippet": text[:120],
                "text": text,
                "verdict": json.dumps(verdict, ensure_ascii=False),
                "media": json.dumps(media, ensure_ascii=False) if media else None,
                "media_dir": media_dir,
                "conversation": None,
                "content_sha": secrets.token_hex(32),
                "item_id": f"seed-item-{i}",
                "source": "comment",
                "account_id": account,
                "group_id": group,
                "created_at": created,
                "updated_at": created,
                "claimed_by": None,
                "claim_expires_at": None,
                "decided_at": None,
            }
        )
    for j, account in enumerate(accounts):
        items.append(
            ScoredItem(
                0.95,
                "block",
                ("fake_giveaway",),
                (("qq_group", str(83_700_000 + j % 25)),),
                account_id=account,
                group_id=groups[j % len(groups)],
                ts=now - 3600,
            )
        )
    with db.write() as conn:
        if reports:
            conn.execute(reports_t.insert(), reports)
            conn.execute(events_t.insert(), events)
        conn.execute(cases_t.insert(), cases)
        if not db.is_sqlite:  # ids given explicitly: move the sequence past them
            conn.execute(
                sa.text(
                    "SELECT setval(pg_get_serial_sequence('review_cases', 'id'), (SELECT max(id) FROM review_cases))"
                )
            )
    platform.risk.ingest_many(items)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("database", help="database URL, e.g. sqlite:////tmp/bench.db")
    parser.add_argument("n", type=int, nargs="?", default=10_000)
    parser.add_argument(
        "--review-dir", type=Path, default=None, help="kept files (default FANZHA_DATA_DIR/review)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    platform = Platform(database=args.database, review_dir=args.review_dir)
    try:
        started = time.perf_counter()
        counts = seed_open_cases(platform, args.n, seed=args.seed)
        print(json.dumps({"cases": counts, "seconds": round(time.perf_counter() - started, 2)}))
    finally:
        platform.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
