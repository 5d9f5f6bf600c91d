"""Fraud reports in the store: lifecycle and feedback, concurrent intake with nothing lost or doubled after a
restart, and the export of resolved reports as training examples (`fanzha export-feedback`)."""

from __future__ import annotations

import json
import threading
from collections import Counter

import pytest

from fanzha.cli import main as cli
from fanzha.datasets.corpus import read_jsonl
from fanzha.datasets.feedback import export_records
from fanzha.models import InputError
from fanzha.platform.reports import InvalidTransition, NewReport, ReportBook, UnknownReport

from .db_fixtures import db_url  # noqa: F401 (fixture)

SCAM_VERDICT = {
    "fraud_score": 0.99,
    "decision": "block",
    "labels": ["fee_demand", "fake_giveaway"],
    "evidence": [],
}
PASS_VERDICT = {"fraud_score": 0.02, "decision": "pass", "labels": [], "evidence": []}


def text_report(
    reporter: str = "kid-1", text: str = "免费领皮肤，先交10元激活费", verdict: dict | None = None, **kw
) -> NewReport:
    return NewReport(
        reporter_id=reporter,
        target_type="text",
        reason="他让我先交钱",
        target_text=text,
        verdict=verdict or SCAM_VERDICT,
        **kw,
    )


@pytest.fixture
def store(db_url):  # noqa: F811
    s = ReportBook(db_url)
    yield s
    s.close()


def test_lifecycle_with_feedback_to_the_reporter(store) -> None:
    report, created = store.create(text_report())
    assert created and report["status"] == "received" and report["report_id"].startswith("r")
    rid = report["report_id"]
    store.resolve(rid, "in_review", moderator_id="mod-1")
    store.resolve(rid, "confirmed", moderator_id="mod-1", reason="确认诈骗，账号已封禁")
    seen = store.status(rid, reporter_id="kid-1")
    assert (seen["status"], seen["status_reason"]) == ("confirmed", "确认诈骗，账号已封禁")
    assert [h["status"] for h in seen["history"]] == ["received", "in_review", "confirmed"]
    assert "mod-1" not in json.dumps(seen, ensure_ascii=False)  # the reporter never sees who moderated
    assert store.get(rid)["moderator_id"] == "mod-1"
    with pytest.raises(UnknownReport):
        store.status(rid, reporter_id="someone-else")  # answered like an unknown id: ids cannot be probed


@pytest.mark.parametrize(
    "steps,error,message",
    [
        (
            [("confirmed", "ok"), ("rejected", "changed my mind")],
            InvalidTransition,
            "is confirmed; it cannot become rejected (that is final)",
        ),
        (
            [("in_review", None), ("in_review", None)],
            InvalidTransition,
            "is in_review; it cannot become in_review",
        ),
        ([("rejected", None)], InputError, "needs a reason"),
        ([("received", None)], InputError, "status must be one of"),
    ],
)
def test_invalid_moves_are_refused(store, steps, error, message) -> None:
    rid = store.create(text_report())[0]["report_id"]
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        for status, reason in steps:
            store.resolve(rid, status, moderator_id="mod", reason=reason)


def test_labels_are_checked(store) -> None:
    benign = store.create(text_report(text="周六聚餐AA每人45元", verdict=PASS_VERDICT))[0]["report_id"]
    with pytest.raises(InputError, match="say which kind"):
        store.resolve(benign, "confirmed", moderator_id="mod", reason="确实是骗局")
    with pytest.raises(InputError, match="unknown labels"):
        store.resolve(benign, "confirmed", moderator_id="mod", reason="x", labels=["phishing"])
    with pytest.raises(InputError, match="labels go with `confirmed` only"):
        store.resolve(benign, "rejected", moderator_id="mod", reason="x", labels=["fee_demand"])
    assert store.resolve(
        benign, "confirmed", moderator_id="mod", reason="收款后失联", labels=["other_fraud"]
    )["labels"] == ["other_fraud"]
    with pytest.raises(UnknownReport):
        store.resolve("r-nope", "in_review", moderator_id="mod")


def test_idempotency_key_returns_the_stored_report(store) -> None:
    first, created = store.create(text_report(idempotency_key="k1"))
    again, created_again = store.create(text_report(idempotency_key="k1"))
    other, _ = store.create(text_report(reporter="kid-2", idempotency_key="k1"))  # keys are per reporter
    assert created and not created_again and again["report_id"] == first["report_id"] != other["report_id"]


def test_moderator_queue_pages_oldest_first(store) -> None:
    ids = [store.create(text_report(reporter=f"p{i}"))[0]["report_id"] for i in range(5)]
    store.resolve(ids[1], "rejected", moderator_id="m", reason="正常消息")
    queue = store.list_reports(status="received", limit=2)
    assert [r["report_id"] for r in queue] == [ids[0], ids[2]]
    assert [
        r["report_id"] for r in store.list_reports(status="received", after=queue[-1]["report_id"])
    ] == ids[3:]
    with pytest.raises(UnknownReport):
        store.list_reports(after="r-unknown")


def test_eight_concurrent_writers_lose_and_double_nothing_across_a_restart(db_url) -> None:  # noqa: F811
    writers, per_writer = 8, 500  # bench/accounts.py runs 8 × 10,000
    store = ReportBook(db_url)
    ids: dict[tuple[str, str], set[str]] = {}
    lock, errors = threading.Lock(), []

    def write(w: int) -> None:
        try:
            for n in range(per_writer):
                key = f"w{w}-{n}"
                for _ in range(
                    2 if n % 50 == 0 else 1
                ):  # every 50th report is retried: it must not be stored twice
                    report, _ = store.create(text_report(reporter=f"writer-{w}", idempotency_key=key))
                    with lock:
                        ids.setdefault((f"writer-{w}", key), set()).add(report["report_id"])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.close()
    assert not errors
    assert len(ids) == writers * per_writer and all(len(v) == 1 for v in ids.values())
    reopened = ReportBook(db_url)
    assert reopened.count() == writers * per_writer
    stored = Counter(
        (r["reporter_id"], r["idempotency_key"])
        for r in reopened.list_reports(limit=writers * per_writer + 1)
    )
    assert set(stored) == set(ids) and set(stored.values()) == {1}
    for (reporter, _), (report_id,) in list(ids.items())[::97]:
        assert reopened.status(report_id, reporter)["status"] == "received"
    reopened.close()


def test_feedback_records_close_the_loop(store) -> None:
    def resolved(text: str, status: str, verdict=SCAM_VERDICT, labels=None, **kw) -> str:
        rid = store.create(text_report(text=text, verdict=verdict, **kw))[0]["report_id"]
        store.resolve(rid, status, moderator_id="mod", reason="核实", labels=labels)
        return rid

    fraud = resolved("恭喜中奖！加群领皮肤，先交激活费", "confirmed", target_source="dm")
    hard_negative = resolved("凡是让你先交激活费的都是骗子", "rejected", verdict=PASS_VERDICT)
    relabelled = resolved("我是网警，你的账号涉嫌违规，扫码交解冻金", "confirmed", labels=["other_fraud"])
    traditional = resolved("恭喜妳獲得免費皮膚，請先繳納認證費", "confirmed", target_source="qq_group")
    resolved("明天交校服费", "confirmed", labels=["fee_demand"])
    resolved("明天交校服费", "rejected")  # moderators disagree: left out
    resolved("加群领签名照", "confirmed")
    resolved("加群领签名照", "confirmed")  # repeated: one example
    store.create(text_report(text="still waiting"))  # unresolved: not exported
    store.create(NewReport(reporter_id="k", target_type="account", reason="骗子", target_account_id="u1"))

    records, stats = export_records(store.resolved())
    by_id = {r["id"]: r for r in records}
    assert stats == {"confirmed": 4, "rejected": 1, "conflicting": 2, "repeats": 1}
    assert by_id[f"report-{fraud}"] | {"text": None} == {
        "id": f"report-{fraud}",
        "text": None,
        "labels": ["fake_giveaway", "fee_demand"],
        "source": "private_message",
        "script": "zh-Hans",
        "split": "train",
        "hard_negative": False,
        "provenance": f"user_report:{fraud}",
    }
    assert (
        by_id[f"report-{hard_negative}"]["labels"] == [] and by_id[f"report-{hard_negative}"]["hard_negative"]
    )
    assert by_id[f"report-{relabelled}"]["labels"] == ["other_fraud"]  # the moderator's labels win
    assert (by_id[f"report-{traditional}"]["script"], by_id[f"report-{traditional}"]["source"]) == (
        "zh-Hant",
        "qq_group",
    )


def test_export_feedback_command(db_url, tmp_path, capsys) -> None:  # noqa: F811
    store = ReportBook(db_url)
    rid = store.create(text_report())[0]["report_id"]
    store.resolve(rid, "confirmed", moderator_id="mod", reason="核实为诈骗")
    store.close()
    out = tmp_path / "feedback.jsonl"
    assert cli(["export-feedback", "--database-url", db_url, "--output", str(out)]) == 0
    (record,) = read_jsonl(out)  # validates every line against the corpus schema
    assert record["provenance"] == f"user_report:{rid}" and record["split"] == "train"
    assert "1 examples" in capsys.readouterr().err
    assert (
        cli(["export-feedback", "--database-url", db_url, "--output", str(out), "--since", "2999-01-01"]) == 0
    )
    assert out.read_text() == ""
    assert cli(["export-feedback", "--database-url", f"sqlite:///{tmp_path}/missing.db", "-o", str(out)]) == 2
    assert cli(["export-feedback", "--database-url", db_url, "-o", str(out), "--since", "last week"]) == 2


def test_a_nul_character_is_the_callers_input_on_either_backend(store) -> None:
    """PostgreSQL text cannot hold U+0000: the store says InputError (HTTP 400), never a DataError (500);
    SQLite stores it as given."""
    nul = text_report(reporter="kid-nul", text="免费领皮肤\x00先交激活费")
    if store.db.is_sqlite:
        stored, created = store.create(nul)
        assert created and stored["target_text"] == nul.target_text
    else:
        with pytest.raises(InputError, match="NUL"):
            store.create(nul)
        with pytest.raises(InputError, match="NUL"):
            store.find("kid\x00", "key")  # a read says so too
