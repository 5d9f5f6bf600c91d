"""The loop from a user's report to training: moderated reports → `fanzha export-feedback` → train --feedback,
which adds them to the train split only and never lets a dev/test text in."""

from __future__ import annotations

import json

import pytest

from fanzha.cli import main as cli
from fanzha.datasets.corpus import CorpusError, load_corpus
from fanzha.datasets.feedback import join_feedback
from fanzha.platform.reports import NewReport, ReportBook


def record(rid: str, text: str, labels: list[str], split: str = "train") -> dict:
    return {
        "id": rid,
        "text": text,
        "labels": labels,
        "source": "private_message",
        "script": "zh-Hans",
        "split": split,
        "hard_negative": not labels,
        "provenance": f"user_report:{rid}",
    }


def test_join_feedback_keeps_dev_and_test_clean() -> None:
    train = [record("t1", "加群领皮肤先交激活费", ["fee_demand"]), record("t2", "明天考试", [])]
    held_out = [record("d1", "点赞一单3元日结", ["click_farming"], split="dev")]
    feedback = [
        record(
            "report-a", "新的骗局：扫码领红包，先付保证金", ["fee_demand"], split="dev"
        ),  # any split → train
        record(
            "report-b", "点赞 一单3元日结", ["click_farming"]
        ),  # the dev text (same after normalisation): dropped
        record("report-c", "加群领皮肤先交激活费", ["fee_demand"]),  # already in train, same labels
        record("report-d", "明天考试", ["other_fraud"]),  # the moderator says otherwise: replaces it
    ]
    joined, stats = join_feedback(train, held_out, feedback)
    assert stats == {"added": 1, "replaced": 1, "duplicate": 1, "in_dev_or_test": 1}
    assert [r["id"] for r in joined] == ["t1", "report-d", "report-a"] and {r["split"] for r in joined} == {
        "train"
    }
    with pytest.raises(CorpusError, match="already used"):
        join_feedback(train, held_out, [record("t1", "全新的文本", [])])


def test_reports_export_and_train_with_feedback(tmp_path, tiny_base, tiny_corpus) -> None:
    from fanzha.training import train

    url = f"sqlite:///{tmp_path / 'service.db'}"
    store = ReportBook(url)
    dev_text = load_corpus(tiny_corpus, splits=["dev"])[0]["text"]
    for text, status, labels in (
        ("学生党刷单兼职，进任务群先垫付，日结返佣", "confirmed", ["click_farming"]),
        ("反诈提醒：让你先交激活费的都是骗子", "rejected", None),
        (dev_text, "rejected", None),
    ):
        rid = store.create(
            NewReport(
                reporter_id="kid",
                target_type="text",
                reason="可疑",
                target_text=text,
                verdict={"fraud_score": 0.5, "decision": "review", "labels": labels or []},
            )
        )[0]["report_id"]
        store.resolve(rid, status, moderator_id="mod", reason="核实", labels=labels)
    store.close()
    feedback = tmp_path / "feedback.jsonl"
    assert cli(["export-feedback", "--database-url", url, "--output", str(feedback)]) == 0

    out = train.main(
        [
            "--base_model",
            str(tiny_base),
            "--output_dir",
            str(tmp_path / "model"),
            "--corpus",
            str(tiny_corpus),
            "--epochs",
            "1",
            "--batch_size",
            "8",
            "--max_length",
            "24",
            "--max_train_samples",
            "8",
            "--threads",
            "1",
            "--feedback",
            str(feedback),
        ]
    )
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["feedback"] == {"added": 2, "replaced": 0, "duplicate": 0, "in_dev_or_test": 1}
    assert summary["train_size"] == 8 + 2 and summary["args"]["feedback"] == [str(feedback)]
