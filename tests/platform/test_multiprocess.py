"""Separate processes against one PostgreSQL (the session's throwaway cluster, tests/postgres.py): what several
service replicas or batch workers do in production, and what in-process threads on SQLite never exercise.

- Two Platform replicas ingest the same 20-account campaign at once: the clusters, alerts, per-account and
  per-group state and every table's row count equal a single-process run; every alert was returned by
  exactly one replica; no post is lost or counted twice.
- The same campaign split between the replicas (every other batch each): nothing lost, the same clusters
  and counts, the same alerts per account and group.
- Eight writer processes store reports, all eight sending the same idempotency keys at the same moment: the
  unique index refuses the losers (the duplicate-key path, counted), each gets the stored report back, and
  every key is stored exactly once, across a reopen.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from .db_fixtures import pg_url, postgres_schema_url  # noqa: F401 (fixture)
from .replica import QQ_GROUP, batches, campaign, open_platform

REPO = Path(__file__).resolve().parents[2]


def run_replicas(jobs: list[list[str]], timeout: float = 180, after_go=None) -> list[dict]:
    """Start one process per job, wait until every one has opened its database, then start them together
    (and call `after_go`, if given, while they run)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.platform.replica", *job],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for job in jobs
    ]
    try:
        for p in procs:
            line = p.stdout.readline()
            assert line.strip() == "ready", f"replica did not start: {line!r} {p.stderr.read()[-3000:]}"
        for p in procs:  # every replica is waiting on its stdin: "go" to all of them back to back
            p.stdin.write("go\n")
            p.stdin.flush()
        if after_go:
            after_go()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def snapshot(url: str) -> dict:
    """Everything a caller can read back: every account's and group's state, the clusters, the alert log,
    and the row count of every table."""
    records = campaign()
    platform = open_platform(url)
    try:
        entities = {
            (kind, eid): platform.entity_risk(kind, eid)
            for kind, key in (("account", "account_id"), ("group", "group_id"))
            for eid in sorted({r[key] for r in records})
        }
        with platform.database.read() as conn:
            rows = {
                name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for name, table in platform.database.tables.items()
                if name != "schema_version"
            }
        return {
            "entities": entities,
            "clusters": platform.clusters(min_accounts=1, limit=1000),
            "alerts": platform.alerts(limit=100_000),
            "rows": rows,
        }
    finally:
        platform.close()


def single_process_run(base_url: str, batch: int) -> dict:
    url, drop = postgres_schema_url(base_url)
    try:
        platform = open_platform(url)
        returned = [
            a.to_dict()
            for chunk in batches(campaign(), batch, "all")
            for a in platform.ingest_verdicts(chunk, batch=batch)
        ]
        platform.close()
        return {"returned": returned, **snapshot(url)}
    finally:
        drop()


@pytest.fixture(scope="module")
def single(postgres_url) -> dict:
    return single_process_run(postgres_url, batch=5)


def test_the_campaign_itself(single) -> None:
    """What the single-process run (the reference) holds: one cluster of exactly the 20 accounts, a
    flagged_in_window alert for every scam account that posted twice or more, no pupil in anything."""
    records = campaign()
    scammers = sorted({r["account_id"] for r in records if r["decision"] == "block"})
    assert len(scammers) == 20 and len(records) > 150
    (cluster,) = single["clusters"]
    assert sorted(cluster["members"]) == scammers and cluster["accounts"] == 20
    assert [(h["kind"], h["value"], h["accounts"]) for h in cluster["handles"]] == [
        ("qq_group", QQ_GROUP, 20)
    ]
    posts = Counter(r["account_id"] for r in records if r["decision"] == "block")
    window = {
        a["entity_id"]
        for a in single["alerts"]
        if a["rule"] == "flagged_in_window" and a["entity_kind"] == "account"
    }
    assert window == {a for a, n in posts.items() if n >= 2}
    assert [a["rule"] for a in single["alerts"]].count("cluster_size") == 1
    assert not [
        a for a in single["alerts"] if a["entity_kind"] == "account" and not a["entity_id"].startswith("new_")
    ]
    assert single["rows"]["ingested_items"] == len(records) and single["returned"] == single["alerts"]


def test_two_replicas_ingesting_the_same_campaign_equal_one_process(pg_url, single) -> None:  # noqa: F811
    # different batch sizes: one replica's transaction overlaps parts of two of the other's
    a, b = run_replicas([["campaign", pg_url, "all", "7"], ["campaign", pg_url, "all", "5"]])
    state = snapshot(pg_url)
    assert state["rows"] == single["rows"]  # nothing lost, nothing duplicated, in any table
    assert state["clusters"] == single["clusters"]
    assert state["entities"] == single["entities"]
    assert state["alerts"] == single["alerts"]
    # every alert was raised once, by whichever replica counted the crossing item, and returned to it alone
    returned = sorted(a["alerts"] + b["alerts"], key=lambda x: x["id"])
    assert returned == state["alerts"]


def test_two_replicas_splitting_the_campaign_lose_nothing(pg_url, single) -> None:  # noqa: F811
    a, b = run_replicas([["campaign", pg_url, "even", "5"], ["campaign", pg_url, "odd", "5"]])
    state = snapshot(pg_url)
    assert state["rows"] == single["rows"]

    # which item crossed a threshold depends on which replica got there first; what was counted does not
    def counted(e: dict) -> tuple:
        return (
            e["items"],
            e["flagged"],
            e["flagged_in_window"],
            e["risk"],
            e["level"],
            e["labels"],
            [(h["kind"], h["value"], h["items"], h["flagged"], h["accounts"]) for h in e["handles"]],
            sorted(e["cluster"]["members"]) if e["cluster"] else None,
            sorted(x["item_id"] for x in e["recent_flagged"]),
        )

    assert {k: counted(e) for k, e in state["entities"].items()} == {
        k: counted(e) for k, e in single["entities"].items()
    }
    assert [sorted(c["members"]) for c in state["clusters"]] == [
        sorted(c["members"]) for c in single["clusters"]
    ]

    def per_entity(alerts: list[dict]) -> Counter:
        return Counter(
            (x["rule"], x["entity_kind"], x["entity_id"]) for x in alerts if x["rule"] != "cluster_size"
        )

    assert per_entity(state["alerts"]) == per_entity(single["alerts"])
    assert [x["value"] for x in state["alerts"] if x["rule"] == "cluster_size"] == [5]
    assert sorted(x["id"] for x in a["alerts"] + b["alerts"]) == [x["id"] for x in state["alerts"]]


def test_eight_writer_processes_race_on_the_same_keys_and_store_each_once(pg_url) -> None:  # noqa: F811
    from fanzha.platform.database import database_url
    from fanzha.platform.reports import ReportBook

    writers, own, shared = 8, 60, 50
    ReportBook(pg_url).close()  # the schema, so that the table can be locked before the writers start
    admin = sa.create_engine(database_url(pg_url))
    hold = admin.connect()
    hold.begin()
    # SHARE mode lets every writer look its first key up (and find nothing) but holds every INSERT back: all
    # eight are then inside create() with the same key at once, for certain, not by luck of scheduling
    hold.execute(sa.text("LOCK TABLE reports IN SHARE MODE"))

    def release_when_all_wait() -> None:
        waiting, deadline = 0, time.monotonic() + 60
        with admin.connect() as conn:
            while waiting < writers and time.monotonic() < deadline:
                time.sleep(0.05)
                waiting = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                ).scalar_one()
        hold.rollback()
        hold.close()
        assert waiting == writers, f"only {waiting} of {writers} writers reached the INSERT"

    try:
        results = run_replicas(
            [["reports", pg_url, str(w), str(own), str(shared)] for w in range(writers)],
            after_go=release_when_all_wait,
        )
    finally:
        if not hold.closed:
            hold.close()
        admin.dispose()
    # the races happened: inserts the unique index refused, each answered with the report stored first
    violations = sum(r["unique_violations"] for r in results)
    assert violations >= writers - 1  # the first key: one insert wins, seven are refused
    for n in range(shared):
        answers = [r["shared"][f"s{n}"] for r in results]
        assert len({rid for rid, _ in answers}) == 1, answers  # every writer got the same report
        assert sum(created for _, created in answers) == 1, answers  # and exactly one of them created it
    for w, r in enumerate(results):
        assert len(r["own"]) == own and all(len(set(ids)) == 1 for ids in r["own"].values()), (
            w
        )  # a retry: the same report
    book = ReportBook(pg_url)  # "restart": a fresh process's view
    try:
        assert book.count() == writers * own + shared
        stored = Counter(
            (x["reporter_id"], x["idempotency_key"])
            for x in book.list_reports(limit=writers * own + shared + 1)
        )
        expected = {("shared", f"s{n}") for n in range(shared)} | {
            (f"writer-{w}", f"w{n}") for w in range(writers) for n in range(own)
        }
        assert set(stored) == expected and set(stored.values()) == {1}
        for key, (rid, _) in list(results[0]["shared"].items())[::7]:
            assert book.status(rid, "shared")["status"] == "received", key
    finally:
        book.close()
    print(
        f"\n8 writer processes: {violations} inserts refused by the unique index and answered with the stored report"
    )
