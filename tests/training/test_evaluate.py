"""evaluate.main() on the tiny model: the report, the baselines and (when present) the external corpora."""

import json

import pytest

from fanzha.datasets.external import corpora_dir, load_msglog, load_telecom
from fanzha.training import evaluate


def test_report_without_external_corpora(tiny_model_dir, tiny_corpus, tmp_path) -> None:
    metrics = evaluate.main(
        [
            "--model_dir",
            str(tiny_model_dir),
            "--corpus",
            str(tiny_corpus),
            "--report_dir",
            str(tmp_path),
            "--corpora_dir",
            "none",
        ]
    )
    for name in ("REPORT.md", "metrics.json", "pr_curves.png", "confusion.png"):
        assert (tmp_path / name).stat().st_size > 0
    assert set(metrics["systems"]) == {"fanzha", "tfidf_lr", "keywords"}
    ours = metrics["systems"]["fanzha"]
    assert set(ours["evasion"]) >= {
        "clean_recall",
        "homoglyph",
        "pinyin",
        "digits",
        "separators",
        "zero_width",
        "traditional",
        "emoji",
    }
    assert 0.0 <= ours["test_fraud"]["f1"] <= 1.0
    assert metrics["targets"]["real_normal_fpr"]["value"] is None
    report = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    assert "Not present on this machine" in report and "tfidf_lr" in report
    assert json.loads((tmp_path / "metrics.json").read_text())["model_version"] == "tiny-test"
    # the numbers are the confusion matrix of the Detector's own decisions on the test split, counted here
    from fanzha.datasets.corpus import load_corpus
    from fanzha.models import Detector

    test = load_corpus(tiny_corpus, splits=["test"])
    detector = Detector.load(tiny_model_dir)
    verdicts = detector.classify_texts([r["text"] for r in test])
    flagged = [v.decision != "pass" for v in verdicts]
    fraud = [bool(r["labels"]) for r in test]
    tp = sum(f and y for f, y in zip(flagged, fraud, strict=True))
    fp = sum(f and not y for f, y in zip(flagged, fraud, strict=True))
    fn = sum(y and not f for f, y in zip(flagged, fraud, strict=True))
    precision, recall = (tp / (tp + fp) if tp + fp else 0.0), (tp / (tp + fn) if tp + fn else 0.0)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    assert ours["test_fraud"] == {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
    }
    negatives = [f for f, y in zip(flagged, fraud, strict=True) if not y]
    assert ours["benign_fpr"] == round(sum(negatives) / len(negatives), 4)
    blocked = [v.decision == "block" for v in verdicts]
    tb = sum(b and y for b, y in zip(blocked, fraud, strict=True))
    assert ours["test_block"]["precision"] == (round(tb / sum(blocked), 4) if any(blocked) else 0.0)
    assert ours["test_block"]["recall"] == round(tb / sum(fraud), 4)
    # --render_only writes the same report again from metrics.json, scoring nothing
    (tmp_path / "REPORT.md").unlink()
    args = ["--corpus", str(tiny_corpus), "--report_dir", str(tmp_path), "--render_only", "true"]
    assert evaluate.main(args) == json.loads((tmp_path / "metrics.json").read_text())
    assert (tmp_path / "REPORT.md").read_text(encoding="utf-8") == report


def test_adapted_rows_carry_each_held_out_set_before_and_after() -> None:
    run = {
        "held_out_traffic": {
            "all": {
                "before": {"n": 10, "review_or_block": 0.3, "block": 0.1},
                "after": {"n": 10, "review_or_block": 0.1, "block": 0.0},
            }
        },
        "external_fraud_recall": {"loan_credit_card": {"before": 0.99, "after": 0.97}},
        "labelled": {"test": {"recall_before": 0.98, "recall_after": 0.975}},
    }
    lines = evaluate.adapted_precision({"label00+msgpass": run})
    assert "| label00+msgpass | all | 10 | 0.3 | 0.1 | 0.1 | 0.0 |" in lines
    assert any("telecom_loan_credit_card" in line and "| 0.99 | 0.97 |" in line for line in lines)
    assert any("corpus test lures" in line and "| 0.98 | 0.975 |" in line for line in lines)
    # no base model named: nothing to warn about
    assert not any("not this report's model" in line for line in lines)


def test_adapted_rows_name_an_older_base_model() -> None:
    run = {"adapted_from": "fanzha-text-old", "held_out_traffic": {}, "labelled": {}}
    same = evaluate.adapted_precision({"r": run}, "fanzha-text-old")
    other = evaluate.adapted_precision({"r": run}, "fanzha-text-new")
    assert any("Adapted from: `fanzha-text-old`" in line for line in same)
    assert not any("not this report's model" in line for line in same)
    assert any("`fanzha-text-old`, not this report's model (`fanzha-text-new`)" in line for line in other)


def test_the_report_says_when_the_model_trained_on_an_earlier_split() -> None:
    grown = {"splits": {"train": 23605, "test": 2940, "model_train": 17305}}
    assert evaluate.baselines_split(grown) == (
        "the baselines train on today's train split (23,605 messages), the model trained on an earlier one of "
        "17,305 (rounds landed since are in the baselines' fit only)"
    )
    same = {"splits": {"train": 23605, "test": 2940, "model_train": 23605}}
    assert evaluate.baselines_split(same) == "the baselines train on today's train split (23,605 messages)"


def test_adapted_rows_say_when_the_corpus_grew_since_the_runs() -> None:
    def run(test_n: int | None) -> dict:
        labelled = {"recall_before": 0.98, "recall_after": 0.97} | ({"n": test_n} if test_n else {})
        return {"adapted_from": "m", "held_out_traffic": {}, "labelled": {"test": labelled}}

    def header(runs: dict) -> str:
        return next(
            line for line in evaluate.adapted_precision(runs, "m", 2940) if line.startswith("Adapted from")
        )

    assert header({"a": run(2940)}) == "Adapted from: `m`."
    assert header({"a": run(2140)}).endswith(
        "The corpus test recall rows were measured on 2,140 test messages; this report's test split has 2,940."
    )
    assert "sizes were not recorded then" in header({"a": run(None)})


@pytest.mark.corpora
@pytest.mark.skipif(
    corpora_dir() is None, reason="external corpora (../shared/corpora or $FANZHA_CORPORA) not present"
)
def test_report_with_external_corpora(tiny_model_dir, tiny_corpus, tmp_path) -> None:
    root = corpora_dir()
    assert load_telecom(root) or load_msglog(root)
    metrics = evaluate.main(
        [
            "--model_dir",
            str(tiny_model_dir),
            "--corpus",
            str(tiny_corpus),
            "--report_dir",
            str(tmp_path),
            "--max_external",
            "20",
        ]
    )
    ours = metrics["systems"]["fanzha"]
    assert ours["external"] and all(v["n"] <= 20 for v in ours["external"].values())
    assert 0.0 <= ours["real_normal_fpr"] <= 1.0
    assert metrics["targets"]["real_normal_fpr"]["value"] == ours["real_normal_fpr"]


def test_model_card_is_written_from_measurements(tiny_model_dir, tiny_corpus, tmp_path) -> None:
    from fanzha.training import model_card

    evaluate.main(
        [
            "--model_dir",
            str(tiny_model_dir),
            "--corpus",
            str(tiny_corpus),
            "--report_dir",
            str(tmp_path),
            "--corpora_dir",
            "none",
        ]
    )
    card = model_card.main(
        ["--model_dir", str(tiny_model_dir), "--metrics", str(tmp_path / "metrics.json")]
    ).read_text(encoding="utf-8")
    parity = json.loads((tiny_model_dir / "parity.json").read_text())
    assert "tiny-test" in card
    assert f"{parity['fp32_vs_torch_max_abs_logit_diff']:.2e}" in card
    assert (
        "| real normal messages false-positive rate | n/a |" in card
    )  # absent corpora are said, not invented
    from fanzha.datasets.corpus import load_corpus

    n_test = len(load_corpus(tiny_corpus, splits=["test"]))
    assert (
        f"Test split: {n_test:,} messages by authors who wrote no train data; the baselines train on" in card
    )


def test_model_card_tells_a_fresh_run_from_a_warm_start() -> None:
    from fanzha.training import model_card

    def summary(base_model: str, base: dict | None = None) -> dict:
        return {"args": {"base_model": base_model}, "base": base}

    assert model_card._fresh(
        summary("runs/whatever", {"num_layers": 6})
    )  # build_base's record, since round 9
    assert model_card._fresh(summary("runs/base6"))  # before that, build_base's output names
    assert not model_card._fresh(summary("runs/warm-r7-beh"))
