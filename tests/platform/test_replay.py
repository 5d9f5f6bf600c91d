"""Idempotent risk ingestion: an item is counted once per (source, item id), however often it is replayed — a
retried request or archive task, a resumed `fanzha score --track`, the same batch twice."""

from __future__ import annotations

import pytest

from fanzha.platform.risk import RiskRules, RiskState, ScoredItem, UnknownEntity

from .db_fixtures import db_url  # noqa: F401 (fixture)

T0 = 1_800_000_000.0
GROUP = ("qq_group", "83726154")


def scam(
    item: str | None,
    account: str = "u1",
    group: str | None = "g1",
    source: str | None = "comment",
    ts: float = T0,
    handles=(GROUP,),
) -> ScoredItem:
    return ScoredItem(
        0.99,
        "block",
        ("fake_giveaway",),
        handles,
        account_id=account,
        group_id=group,
        item_id=item,
        source=source,
        ts=ts,
    )


def counts(store: RiskState, kind: str, entity: str) -> tuple:
    e = store.entity(kind, entity)
    return (
        e["items"],
        e["flagged"],
        round(e["risk"], 6),
        e["labels"],
        len(e["recent_flagged"]),
        len(e["alerts"]),
    )


@pytest.fixture
def store(db_url):  # noqa: F811
    opened = RiskState(
        db_url, rules=RiskRules(flagged_in_window=3, cluster_accounts=2), clock=lambda: T0 + 10
    )
    yield opened
    opened.close()


def test_a_replayed_batch_leaves_every_count_as_one_clean_run(store, db_url, tmp_path) -> None:  # noqa: F811
    batch = [scam(f"m{i}", ts=T0 + i) for i in range(4)] + [scam("n1", account="u2", ts=T0 + 5)]
    first = store.ingest_many(batch)
    assert {a.rule for a in first} >= {"flagged_in_window", "cluster_size"}
    before = counts(store, "account", "u1"), counts(store, "account", "u2"), counts(store, "group", "g1")
    alerts_before = store.alerts(limit=1000)
    assert store.ingest_many(batch) == []  # a retry: nothing counted, no alert raised again
    assert (
        store.ingest_many(batch[2:]) == [] and store.ingest(batch[0]) == []
    )  # a resumed tail, one item again
    assert (
        counts(store, "account", "u1"),
        counts(store, "account", "u2"),
        counts(store, "group", "g1"),
    ) == before
    assert store.alerts(limit=1000) == alerts_before
    (cluster,) = store.clusters()
    assert cluster["accounts"] == 2 and cluster["handles"][0]["flagged"] == 5

    clean = RiskState(f"sqlite:///{tmp_path / 'clean.db'}", rules=store.rules, clock=store.clock)
    clean.ingest_many(batch)
    assert (counts(clean, "account", "u1"), counts(clean, "group", "g1")) == before[0::2]
    clean.close()


def test_the_key_is_source_and_item_id(store) -> None:
    store.ingest_many([scam("m1"), scam("m1")])  # twice in one batch: the first counts
    assert counts(store, "account", "u1")[:2] == (1, 1)
    store.ingest(scam("m1", source="dm"))  # the same id from another source is another item
    store.ingest(scam("m1", source=None))  # and so is one that names no source
    store.ingest(scam("m1", source=None))
    assert counts(store, "account", "u1")[:2] == (3, 3)
    store.ingest(scam("m1", account="someone-else"))  # counted once: the item, not the account, is the key
    with pytest.raises(UnknownEntity):
        store.entity("account", "someone-else")


def test_items_without_an_id_count_each_time(store) -> None:
    store.ingest_many([scam(None), scam(None)])
    store.ingest(scam(None))
    assert counts(store, "account", "u1")[:2] == (3, 3)


def test_replay_keys_are_kept_as_long_as_flagged_items(db_url) -> None:  # noqa: F811
    now = {"t": T0}
    store = RiskState(db_url, rules=RiskRules(retention_s=3600), clock=lambda: now["t"])
    try:
        store.ingest(scam("m1"))
        now["t"] = T0 + 1800
        store.ingest(scam("m1"))  # within the retention: a replay
        assert store.entity("account", "u1")["items"] == 1
        now["t"] = T0 + 2 * 3600  # past it (the hourly prune runs on this ingest): the key is gone
        store._last_prune = 0.0
        store.ingest(scam("other"))
        store.ingest(scam("m1"))
        assert store.entity("account", "u1")["items"] == 3
    finally:
        store.close()


def test_ingest_verdicts_is_idempotent_by_record_id_and_source(store) -> None:
    records = [
        {
            "id": f"r{i}",
            "source": "a.jsonl:line 1",
            "account_id": "bulk",
            "fraud_score": 0.97,
            "decision": "block",
            "labels": ["click_farming"],
            "evidence": [],
        }
        for i in range(3)
    ]
    store.ingest_verdicts(records)
    store.ingest_verdicts(records)
    assert counts(store, "account", "bulk")[:2] == (3, 3)
