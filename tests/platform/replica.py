"""A platform replica in a process of its own, for the multi-process store tests (test_multiprocess.py).

    python -m tests.platform.replica campaign URL PART BATCH   # ingest the campaign (all / even / odd batches)
    python -m tests.platform.replica reports URL WRITER N_OWN N_SHARED

Each opens its own Platform (or ReportBook) on URL, prints "ready", waits for a line on stdin (so every
replica starts at once), does its work and prints one JSON line with what it saw. Stdlib + fanzha only: no
pytest, so it starts fast.
"""

from __future__ import annotations

import json
import random
import sys

T0 = 1_800_000_000.0  # a fixed "now" for every replica: the state cannot depend on when a process ran
QQ_GROUP = "83726154"
TEACHER = "13812345678"
RULES = {"cluster_accounts": 5, "flagged_in_window": 2, "risk": 2.5}


def _verdict(score: float, decision: str, labels: list[str], handles: list[tuple[str, str]]) -> dict:
    return {
        "fraud_score": score,
        "decision": decision,
        "labels": labels,
        "evidence": [{"kind": k, "value": v, "start": 0, "end": len(v), "text": v} for k, v in handles],
    }


def campaign() -> list[dict]:
    """A 20-account campaign in its platform's traffic, as verdict records (`fanzha score --track`'s shape):
    20 new accounts push one QQ group (1-3 flagged posts each); 100 pupils post benign messages, some with
    the shared teacher's phone, and one warns about the group (quoting it, not pushing it); every post has
    an id and a source, so a replica that gets a post another already counted changes nothing."""
    rng = random.Random(10)
    posts = [(f"new_{i:02d}", "scam") for i in range(20) for _ in range(rng.randint(1, 3))]
    posts += [
        (f"kid_{i:02d}", rng.choice(["benign", "benign", "teacher"]))
        for i in range(100)
        for _ in range(rng.randint(1, 2))
    ]
    posts.append(("kid_07", "warning"))
    rng.shuffle(posts)
    verdicts = {
        "scam": _verdict(0.97, "block", ["fake_giveaway", "fee_demand"], [("qq_group", QQ_GROUP)]),
        "benign": _verdict(0.02, "pass", [], []),
        "teacher": _verdict(0.03, "pass", [], [("phone", TEACHER)]),
        "warning": _verdict(0.31, "pass", [], [("qq_group", QQ_GROUP)]),
    }
    return [
        {
            "id": f"p{n:03d}",
            "source": "comment",
            "account_id": account,
            "group_id": f"class_{rng.randint(1, 6)}",
            "ts": T0 - 3600 + n * 10,
            **verdicts[kind],
        }
        for n, (account, kind) in enumerate(posts)
    ]


def batches(records: list[dict], size: int, part: str) -> list[list[dict]]:
    """`size` records a transaction; `part` all = every batch, even / odd = every other batch."""
    chunks = [records[i : i + size] for i in range(0, len(records), size)]
    return chunks if part == "all" else chunks[part == "odd" :: 2]


def open_platform(url: str):
    from fanzha.platform import Platform
    from fanzha.platform.risk import RiskRules

    return Platform(database=url, rules=RiskRules(**RULES), clock=lambda: T0)


def _wait_for_go() -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("no go")


def run_campaign(url: str, part: str, batch: int) -> dict:
    platform = open_platform(url)
    chunks = batches(campaign(), batch, part)
    _wait_for_go()
    alerts = [a.to_dict() for chunk in chunks for a in platform.ingest_verdicts(chunk, batch=batch)]
    platform.close()
    return {"alerts": alerts}


def run_reports(url: str, writer: int, n_own: int, n_shared: int) -> dict:
    """Shared keys first (every writer sends the same reporter's keys, in the same order, at the same moment:
    the races the unique index settles), then this writer's own keys (every 50th sent twice, as a retry)."""
    import sqlalchemy as sa

    from fanzha.platform.reports import NewReport, ReportBook

    book = ReportBook(url)
    violations = []

    @sa.event.listens_for(book.db.engine, "handle_error")
    def _count(context) -> None:
        if getattr(context.original_exception, "sqlstate", None) == "23505":  # unique_violation
            violations.append(1)

    def create(reporter: str, key: str) -> tuple[str, bool]:
        report, created = book.create(
            NewReport(
                reporter_id=reporter,
                target_type="account",
                reason="骗我交激活费",
                target_account_id="new_01",
                idempotency_key=key,
            )
        )
        return report["report_id"], created

    _wait_for_go()
    shared = {f"s{n}": create("shared", f"s{n}") for n in range(n_shared)}
    own: dict[str, list[str]] = {}
    for n in range(n_own):
        for _ in range(2 if n % 50 == 0 else 1):
            own.setdefault(f"w{n}", []).append(create(f"writer-{writer}", f"w{n}")[0])
    book.close()
    return {"shared": shared, "own": own, "unique_violations": len(violations)}


def main(argv: list[str]) -> None:
    if argv[0] == "campaign":
        out = run_campaign(argv[1], argv[2], int(argv[3]))
    elif argv[0] == "reports":
        out = run_reports(argv[1], int(argv[2]), int(argv[3]), int(argv[4]))
    else:
        raise SystemExit(f"unknown job {argv[0]!r}")
    print(json.dumps(out, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
