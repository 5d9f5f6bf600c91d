"""Account/group early warning and fraud-report intake: ingest throughput, alert latency, concurrent reports.

    python bench/accounts.py                                   # SQLite (the default store), 2 cores
    python bench/accounts.py --json reports/bench_accounts.json
    python bench/accounts.py --postgres-url postgresql://postgres@127.0.0.1:5432/postgres   # + the same on PostgreSQL

1. Ingest: the test split's 650 messages are scored once by the committed model (real verdicts with real
   evidence: QQ groups, WeChat IDs, phones, links), then posted round-robin by 20,000 accounts in 500 groups,
   and ingested into a fresh database per batch size: 1 item per transaction (a one-message request),
   64 (a classify_text request) and 1,000 (a batch run). Scored items per second, the state written. Then the
   same items again (a replay: each has an item id): items per second, and whether any count moved.
2. Alert latency: an account with N−1 flagged items in the window gets the N-th; time until `ingest` returns
   with the alert, and until a webhook receiver on loopback has it.
3. Reports: 8 threads each store 10,000 reports (every 100th sent twice with the same idempotency key, as a
   client retry would); then the store is closed and reopened ("restart") and every report is looked for:
   lost = keys with no report, duplicated = keys with more than one.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from common import messages

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(
    0, str(REPO / "tests" / "platform")
)  # the PostgreSQL scratch-schema helper of the store tests


def scored_pool(threads: int) -> list[dict]:
    from fanzha.models import Detector

    texts = list(dict.fromkeys(messages(650)))
    return [v.to_dict() for v in Detector.load(threads=threads).classify_texts(texts)]


def make_items(pool: list[dict], n: int, t0: float):
    from fanzha.platform.risk import ScoredItem

    rng = random.Random(0)
    return [
        ScoredItem.from_verdict(
            pool[i % len(pool)],
            account_id=f"acct{rng.randrange(20_000)}",
            group_id=f"grp{rng.randrange(500)}",
            item_id=f"item{i}",
            ts=t0 + i * 0.01,
        )
        for i in range(n)
    ]


def bench_ingest(url: str, pool: list[dict], items: int, batch: int) -> dict:
    from fanzha.platform.risk import RiskState

    t0 = time.time()
    data = make_items(pool, items, t0)
    store = RiskState(url, clock=lambda: t0 + items * 0.01)
    started = time.perf_counter()
    alerts = 0
    for i in range(0, len(data), batch):
        alerts += len(store.ingest_many(data[i : i + batch]))
    seconds = time.perf_counter() - started
    clusters = store.clusters(min_accounts=2, limit=100_000, members=0)
    flagged = sum(x.flagged for x in data)
    # the same items again (a retried task, a resumed --track run): counted once, so the state must not move
    before = state_digest(store)
    started = time.perf_counter()
    replay_alerts = sum(len(store.ingest_many(data[i : i + batch])) for i in range(0, len(data), batch))
    replay_seconds = time.perf_counter() - started
    unchanged = state_digest(store) == before and replay_alerts == 0
    store.close()
    return {
        "batch": batch,
        "items": items,
        "flagged": flagged,
        "with_handles": sum(bool(x.handles) for x in data),
        "seconds": round(seconds, 2),
        "items_per_s": round(items / seconds, 1),
        "alerts": alerts,
        "clusters": len(clusters),
        "replay_items_per_s": round(items / replay_seconds, 1),
        "replay_unchanged": unchanged,
    }


def state_digest(store) -> tuple:
    """Every count the risk state keeps, summed: entities, handles, links, flagged items, alerts."""
    import sqlalchemy as sa

    t = store.db.tables
    e, h, eh = t["entities"], t["handles"], t["entity_handles"]
    queries = [
        sa.select(
            sa.func.count(), sa.func.sum(e.c["items"]), sa.func.sum(e.c.flagged), sa.func.sum(e.c.risk)
        ).select_from(e),
        sa.select(sa.func.count(), sa.func.sum(h.c["items"])).select_from(h),
        sa.select(sa.func.count(), sa.func.sum(eh.c["items"])).select_from(eh),
        sa.select(sa.func.count()).select_from(t["flagged_items"]),
        sa.select(sa.func.count()).select_from(t["alerts"]),
    ]
    with store.db.read() as conn:
        return tuple(tuple(conn.execute(q).one()) for q in queries)


class _Receiver(BaseHTTPRequestHandler):
    arrivals: dict[int, float] = {}

    def do_POST(self) -> None:  # noqa: N802
        alert = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).arrivals[alert["id"]] = time.perf_counter()
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def bench_alert_latency(url: str, pool: list[dict], rounds: int) -> dict:
    from fanzha.platform.risk import RiskRules, RiskState, ScoredItem
    from fanzha.platform.webhook import AlertWebhook

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = AlertWebhook(f"http://127.0.0.1:{server.server_port}/", timeout_s=5)
    rules = RiskRules(flagged_in_window=5, risk=1000)
    store = RiskState(url, rules=rules)
    store.ingest_many(
        make_items(pool, 20_000, time.time())
    )  # a store with state in it (its alerts not posted)
    store.webhook, _Receiver.arrivals = hook, {}
    scam = next(v for v in pool if v["decision"] == "block")
    sync_ms, webhook_ms = [], []
    for r in range(rounds):
        now = time.time()
        store.ingest_many(
            [
                ScoredItem.from_verdict(scam, account_id=f"lat{r}", ts=now)
                for _ in range(rules.flagged_in_window - 1)
            ]
        )
        started = time.perf_counter()
        (alert,) = [
            a
            for a in store.ingest(ScoredItem.from_verdict(scam, account_id=f"lat{r}", ts=now))
            if a.rule == "flagged_in_window"
        ]
        sync_ms.append((time.perf_counter() - started) * 1000)
        deadline = time.time() + 5
        while alert.id not in _Receiver.arrivals and time.time() < deadline:
            time.sleep(0.0005)
        webhook_ms.append((_Receiver.arrivals[alert.id] - started) * 1000)
    store.close()
    server.shutdown()
    q = lambda xs, p: round(statistics.quantiles(xs, n=100)[p - 1], 2)  # noqa: E731
    return {
        "rounds": rounds,
        "sync_p50_ms": q(sync_ms, 50),
        "sync_p99_ms": q(sync_ms, 99),
        "webhook_p50_ms": q(webhook_ms, 50),
        "webhook_p99_ms": q(webhook_ms, 99),
    }


def bench_reports(url: str, writers: int, per_writer: int) -> dict:
    from fanzha.platform.reports import NewReport, ReportBook

    verdict = {"fraud_score": 0.99, "decision": "block", "labels": ["fee_demand"], "evidence": []}
    store = ReportBook(url)
    errors: list[str] = []
    sent = Counter()

    def write(w: int) -> None:
        for n in range(per_writer):
            for _ in range(2 if n % 100 == 0 else 1):
                try:
                    store.create(
                        NewReport(
                            reporter_id=f"writer{w}",
                            target_type="text",
                            reason="先交激活费才给皮肤",
                            target_text=f"免费领皮肤，先交{n % 50 + 1}元激活费",
                            verdict=verdict,
                            idempotency_key=f"k{n}",
                        )
                    )
                    sent[w] += 1
                except Exception as e:  # counted, not raised: the figure is how many were lost
                    errors.append(repr(e))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    store.close()
    reopened = ReportBook(url)  # the "restart": a new engine on the same database
    rows = reopened.list_reports(limit=writers * per_writer * 2)
    per_key = Counter((r["reporter_id"], r["idempotency_key"]) for r in rows)
    expected = {(f"writer{w}", f"k{n}") for w in range(writers) for n in range(per_writer)}
    sample = random.Random(1).sample(rows, min(1000, len(rows)))
    retrievable = sum(
        reopened.status(r["report_id"], r["reporter_id"])["status"] == "received" for r in sample
    )
    reopened.close()
    return {
        "writers": writers,
        "reports": writers * per_writer,
        "requests": sum(sent.values()) + len(errors),
        "seconds": round(seconds, 1),
        "reports_per_s": round(writers * per_writer / seconds, 1),
        "errors": len(errors),
        "stored": len(rows),
        "lost": len(expected - set(per_key)),
        "duplicated": sum(c - 1 for c in per_key.values() if c > 1),
        "status_checked": len(sample),
        "status_ok": retrievable,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--items",
        type=int,
        default=20_000,
        help="items per ingest run (the 1-per-transaction run uses a tenth)",
    )
    p.add_argument("--writers", type=int, default=8)
    p.add_argument("--reports-per-writer", type=int, default=10_000)
    p.add_argument("--latency-rounds", type=int, default=200)
    p.add_argument("--threads", type=int, default=2, help="onnxruntime threads for scoring the message pool")
    p.add_argument(
        "--postgres-url", default=None, help="also run everything against this PostgreSQL (a scratch schema)"
    )
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args()

    pool = scored_pool(args.threads)
    print(
        f"pool: {len(pool)} scored messages, {sum(v['decision'] != 'pass' for v in pool)} flagged",
        file=sys.stderr,
    )
    backends = ["sqlite"] + (["postgresql"] if args.postgres_url else [])
    results: dict = {}
    for name in backends:

        def fresh(name: str = name):
            """A new empty database: a SQLite file in a temp dir, or a scratch PostgreSQL schema."""
            if name == "postgresql":
                from db_fixtures import postgres_schema_url

                return postgres_schema_url(args.postgres_url)
            return f"sqlite:///{tempfile.mkdtemp(prefix='fanzha-bench-')}/fanzha.db", lambda: None

        out = results[name] = {"ingest": []}
        for batch in (1, 64, 1000):
            url, drop = fresh()
            out["ingest"].append(
                bench_ingest(url, pool, args.items // 10 if batch == 1 else args.items, batch)
            )
            drop()
            print(name, out["ingest"][-1], file=sys.stderr)
        url, drop = fresh()
        out["alert_latency"] = bench_alert_latency(url, pool, args.latency_rounds)
        drop()
        print(name, out["alert_latency"], file=sys.stderr)
        url, drop = fresh()
        out["reports"] = bench_reports(url, args.writers, args.reports_per_writer)
        drop()
        print(name, out["reports"], file=sys.stderr)

    print("| store | measure | figure | target |\n|---|---|---|---|")
    for name, out in results.items():
        for row in out["ingest"]:
            target = "≥ 1,000 ✅" if row["items_per_s"] >= 1000 else "≥ 1,000 ❌" if row["batch"] > 1 else ""
            print(
                f"| {name} | ingest, {row['batch']:,} item(s) per transaction ({row['items']:,} scored items, {row['flagged']:,} flagged, "
                f"{row['with_handles']:,} with handles; {row['clusters']:,} clusters, {row['alerts']:,} alerts) | "
                f"**{row['items_per_s']:,.0f} items/s** | {target} |"
            )
            same = "✅" if row["replay_unchanged"] else "❌"
            print(
                f"| {name} | the same {row['items']:,} items again, {row['batch']:,} per transaction (replays: counted once) | "
                f"{row['replay_items_per_s']:,.0f} items/s; state unchanged {same} | every count as after one run |"
            )
        lat = out["alert_latency"]
        print(
            f"| {name} | alert latency: crossing item → alert returned (p50 / p99, {lat['rounds']} rounds) | "
            f"{lat['sync_p50_ms']} / {lat['sync_p99_ms']} ms | the crossing item raises it |"
        )
        print(
            f"| {name} | alert latency: crossing item → webhook on loopback has it (p50 / p99) | "
            f"{lat['webhook_p50_ms']} / {lat['webhook_p99_ms']} ms | |"
        )
        rep = out["reports"]
        ok = (
            "✅"
            if rep["lost"] == rep["duplicated"] == rep["errors"] == 0 and rep["stored"] == rep["reports"]
            else "❌"
        )
        print(
            f"| {name} | {rep['writers']} writers × {rep['reports'] // rep['writers']:,} reports ({rep['requests']:,} requests incl. "
            f"retries), then reopened | {rep['reports_per_s']:,.0f} reports/s; stored {rep['stored']:,}, lost {rep['lost']}, "
            f"duplicated {rep['duplicated']}, errors {rep['errors']}; status of {rep['status_ok']:,}/{rep['status_checked']:,} "
            f"sampled read back | none lost or duplicated {ok} |"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
