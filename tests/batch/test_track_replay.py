"""`fanzha score --track` after a crash: tracking is at least once (a chunk is tracked before its part is
written), and the risk state counts a replayed record once, so a resumed run ends where a clean run does."""

import json

import pytest

from fanzha.batch.job import score_archive
from fanzha.platform import Platform

from ..conftest import BENIGN, SCAM


class Crash(Exception):
    pass


def entity_counts(url: str) -> dict:
    platform = Platform(database=url)
    try:
        out = {}
        for kind, entity in (("account", "scammer"), ("account", "kid"), ("group", "g1")):
            e = platform.entity_risk(kind, entity)
            out[(kind, entity)] = (
                e["items"],
                e["flagged"],
                round(e["risk"], 2),
                e["labels"],
            )  # risk decays with the wall clock
        out["alerts"] = [(a["rule"], a["entity_id"], a["item_id"]) for a in platform.alerts(limit=1000)]
        return out
    finally:
        platform.close()


def test_a_resumed_track_run_counts_like_a_clean_run(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FANZHA_ALERT_FLAGGED", "3")
    rows = [{"id": f"s{i}", "text": SCAM, "account_id": "scammer", "group_id": "g1"} for i in range(5)]
    rows += [{"id": "b", "text": BENIGN, "account_id": "kid", "group_id": "g1"}]
    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")

    clean_url = f"sqlite:///{tmp_path / 'clean.db'}"
    score_archive(
        [str(src)],
        tmp_path / "clean.parquet",
        chunk_size=2,
        progress=False,
        tracker=lambda: Platform.from_settings(database=clean_url),
    )

    url = f"sqlite:///{tmp_path / 'crashed.db'}"
    calls = {"n": 0}

    class CrashAfterTrackingTheSecondChunk(Platform):
        def ingest_verdicts(self, records, batch=1000):
            alerts = super().ingest_verdicts(records, batch)
            calls["n"] += 1
            if calls["n"] == 2:
                raise Crash("killed between tracking a chunk and writing its part")
            return alerts

    with pytest.raises(Crash):
        score_archive(
            [str(src)],
            tmp_path / "o.parquet",
            chunk_size=2,
            progress=False,
            tracker=lambda: CrashAfterTrackingTheSecondChunk.from_settings(database=url),
        )
    summary = score_archive(
        [str(src)],
        tmp_path / "o.parquet",
        chunk_size=2,
        progress=False,
        tracker=lambda: Platform.from_settings(database=url),
    )
    assert summary.scored_this_run == 4  # the second chunk (tracked, no part) and the third
    assert entity_counts(url) == entity_counts(clean_url)
    assert entity_counts(url)[("account", "scammer")][:2] == (5, 5)
