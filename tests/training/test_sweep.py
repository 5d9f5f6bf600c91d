"""Comparing candidates: the torch reader, evaluate on a checkpoint, the behaviour loss, and a whole sweep."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from transformers import HfArgumentParser

from fanzha.datasets.conversation_corpus import load_conversations
from fanzha.datasets.corpus import author_of, load_corpus
from fanzha.models.normalize import normalize
from fanzha.models.text import TextClassifier
from fanzha.training import evaluate, select, sweep, train
from fanzha.training.metrics import decision_thresholds, targets
from fanzha.training.model import FraudClassifier
from fanzha.training.torch_reader import TorchTextClassifier

TINY = ["--batch_size", "8", "--max_length", "24", "--learning_rate", "1e-3", "--threads", "1"]


def tiny_train(base, corpus, out, *extra: str):
    """One epoch of the tiny recipe on the tiny base and corpus, plus `extra` arguments."""
    return train.main(
        ["--base_model", str(base), "--output_dir", str(out), "--corpus", str(corpus), "--epochs", "1"]
        + [*TINY, *extra]
    )


def write_plan(tmp_path: Path, base: Path, corpus: Path, runs: list[dict]) -> Path:
    """A sweep plan over the tiny base and corpus with the tiny one-epoch recipe."""
    plan = {"base_models": {"2L": str(base)}, "common": ["--corpus", str(corpus), "--epochs", "1", *TINY]}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({**plan, "runs": runs}))
    return path


def sweep_args(tmp_path: Path, base: Path, corpus: Path, runs: list[dict]) -> list[str]:
    """The sweep's command line for those runs: the plan, the output under tmp_path/sweep, two at a time."""
    plan = write_plan(tmp_path, base, corpus, runs)
    return ["--plan", str(plan), "--output_dir", str(tmp_path / "sweep"), "--parallel", "2"]


def test_torch_reader_scores_what_the_exported_graph_scores(
    tiny_trained, tiny_model_dir, tiny_corpus
) -> None:
    """Same windows, same max over windows: the fp32 checkpoint and its fp32 ONNX export agree on every text,
    a long one read in several windows included."""
    texts = [normalize(r["text"]).text for r in load_corpus(tiny_corpus)]
    texts.append("，".join(texts[:12]))  # several windows long
    reader = TorchTextClassifier(*FraudClassifier.load(tiny_trained), device="cpu")
    onnx = TextClassifier(tiny_model_dir / "work" / "model.fp32.onnx", tiny_model_dir / "tokenizer.json")
    assert len(reader.windows(texts[-1])) > 1
    assert np.abs(reader.predict(texts) - onnx.predict(texts)).max() < 1e-4


def test_evaluate_reads_a_torch_checkpoint_without_baselines(tiny_trained, tiny_corpus, tmp_path) -> None:
    metrics = evaluate.main(
        [
            "--model_dir",
            str(tiny_trained),
            "--corpus",
            str(tiny_corpus),
            "--report_dir",
            str(tmp_path),
            "--corpora_dir",
            "none",
            "--baselines",
            "false",
            "--device",
            "cpu",
        ]
    )
    assert set(metrics["systems"]) == {"fanzha"}
    config = json.loads((tiny_trained / "fanzha_classifier.json").read_text())
    for label in ("fake_giveaway", "fee_demand", "click_farming", "other_fraud"):  # as training tuned them
        assert metrics["thresholds"][label] == round(config["thresholds"][label], 3)
    # review and block: tuned on the checkpoint's own dev scores, as export tunes them
    dev = load_corpus(tiny_corpus, splits=["dev"])
    reader = TorchTextClassifier(*FraudClassifier.load(tiny_trained), device="cpu")
    tuned = decision_thresholds(reader.predict([normalize(r["text"]).text for r in dev]), targets(dev))
    assert metrics["thresholds"]["fraud"] == round(tuned["fraud"], 3)
    assert metrics["block_threshold"] == tuned["block"] and 0.90 <= tuned["block"] <= 0.99
    report = (tmp_path / "REPORT.md").read_text(encoding="utf-8")
    assert "| metric | fanzha |" in report and "tfidf_lr" not in report


def test_behaviour_loss_and_left_out_authors(tiny_base, tiny_corpus, tiny_conversations, tmp_path) -> None:
    train_rows = load_corpus(tiny_corpus, splits=["train"])
    author = Counter(author_of(r) for r in train_rows).most_common(1)[0][0]
    out = tiny_train(
        tiny_base,
        tiny_corpus,
        tmp_path / "m",
        "--behaviour_weight",
        "1.0",
        "--conversations",
        str(tiny_conversations),
        "--exclude_authors",
        author,
    )
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["train_size"] == sum(author_of(r) != author for r in train_rows)
    chats = load_conversations(tiny_conversations, splits=["train"])
    assert summary["behaviour_messages"] == sum(len(c["messages"]) for c in chats) > 0
    # the behaviour head is training-only: the checkpoint is the plain classifier
    model, _, config = FraudClassifier.load(out)
    assert not hasattr(model, "behaviour_head") and config["outputs"][0] == "fraud"


def test_sweep_trains_evaluates_compares_and_resumes(tiny_base, tiny_corpus, tmp_path) -> None:
    author = author_of(load_corpus(tiny_corpus, splits=["train"])[0])
    runs = [
        {"id": "all", "name": "all data", "base": "2L"},
        {"id": "less", "name": f"without {author}", "base": "2L", "args": ["--exclude_authors", author]},
    ]
    args = [
        *sweep_args(tmp_path, tiny_base, tiny_corpus, runs),
        "--report",
        str(tmp_path / "table.md"),
        "--eval_extra",
        f"--corpus={tiny_corpus} --corpora_dir=none --device=cpu",
    ]
    result = sweep.main(args)
    dev = {
        run: json.loads((tmp_path / "sweep" / run / "training_summary.json").read_text())["best_dev_score"]
        for run in ("all", "less")
    }
    assert result["dev_scores"] == dev and result["best"] == max(dev, key=dev.get) and not result["failed"]
    table = (tmp_path / "table.md").read_text(encoding="utf-8")
    assert "| all data |" in table and f"| without {author} |" in table
    # a second call finds both runs measured and repeats neither
    stamp = (tmp_path / "sweep" / "all" / "metrics.json").stat().st_mtime_ns
    sweep.main(args)
    assert (tmp_path / "sweep" / "all" / "metrics.json").stat().st_mtime_ns == stamp


def test_a_misnamed_author_or_no_parallelism_is_refused(tiny_base, tiny_corpus, tmp_path) -> None:
    import pytest

    with pytest.raises(SystemExit, match="no train messages"):
        tiny_train(tiny_base, tiny_corpus, tmp_path / "m", "--exclude_authors", "a999")
    (tmp_path / "plan.json").write_text(json.dumps({"base_models": {}, "runs": []}))
    with pytest.raises(SystemExit, match="at least 1"):
        sweep.main(
            ["--plan", str(tmp_path / "plan.json"), "--output_dir", str(tmp_path / "s"), "--parallel", "0"]
        )


def test_without_baselines_no_target_claims_to_beat_them() -> None:
    targets_ = evaluate.check_targets({"fanzha": {"test_fraud": {"f1": 0.1}, "hard_negative_fpr": 0.9}})
    assert (
        targets_["test_fraud_f1"]["passed"] is False and targets_["test_fraud_f1"]["beats_baselines"] is None
    )


def test_sweep_exports_and_chooses_on_dev_without_evaluating(tiny_base, tiny_corpus, tmp_path) -> None:
    runs = [
        {"id": "a", "name": "seed 13", "base": "2L"},
        {"id": "b", "name": "seed 7", "base": "2L", "args": ["--seed", "7"]},
    ]
    result = sweep.main(
        [
            *sweep_args(tmp_path, tiny_base, tiny_corpus, runs),
            "--evaluate",
            "false",
            "--export",
            "true",
            "--export_extra",
            f"--corpus={tiny_corpus} --strict_parity=false",
        ]
    )
    root = tmp_path / "sweep"
    assert all((root / run / "export" / "model.onnx").exists() for run in ("a", "b"))
    assert not any((root / run / "metrics.json").exists() for run in ("a", "b"))  # nothing scored on test
    figures = select.main(
        [str(root / "a" / "export"), str(root / "b" / "export"), "--corpus", str(tiny_corpus)]
    )
    assert result["selected"] == Path(figures["chosen"]).parent.name
    assert json.loads((root / "sweep.json").read_text())["selected"] == result["selected"]


def test_every_committed_plan_is_one_the_trainer_accepts(tmp_path) -> None:
    """A typo in a plan (an argument the trainer lacks, a base the plan does not name) fails here, not on a GPU."""
    plans = sorted((Path(__file__).parents[2] / "training" / "sweeps").glob("*.json"))
    assert plans
    for path in plans:
        plan = json.loads(path.read_text())
        ids = [run["id"] for run in plan["runs"]]
        assert len(ids) == len(set(ids)), f"{path.name}: run ids repeat"
        for run in plan["runs"]:
            train_cmd = sweep.commands(plan, run, tmp_path / run["id"], [], [])[0]
            assert train_cmd[1:3] == ["-m", "fanzha.training.train"]
            (parsed,) = HfArgumentParser(train.TrainArguments).parse_args_into_dataclasses(args=train_cmd[3:])
            assert parsed.base_model == plan["base_models"][run["base"]]
    # the check above can fail: an unknown flag is refused
    with pytest.raises(ValueError, match="behavior_weight"):
        HfArgumentParser(train.TrainArguments).parse_args_into_dataclasses(args=["--behavior_weight", "1"])
