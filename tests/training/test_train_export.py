"""main() of train and export on the tiny fixtures: the real pipeline, end to end, in seconds."""

import json

import numpy as np
import onnx
import pytest

from fanzha.models import Detector, TextClassifier
from fanzha.models.labels import OUTPUTS


def test_training_writes_a_loadable_checkpoint(tiny_trained) -> None:
    from fanzha.training.model import FraudClassifier

    config = json.loads((tiny_trained / "fanzha_classifier.json").read_text())
    assert config["outputs"] == list(OUTPUTS)
    assert set(config["thresholds"]) == set(OUTPUTS)
    assert 0.5 <= config["thresholds"]["fraud"] <= 0.9
    assert all(0.2 <= config["thresholds"][o] <= 0.8 for o in OUTPUTS[1:])
    summary = json.loads((tiny_trained / "training_summary.json").read_text())
    assert summary["best_epoch"] >= 1 and len(summary["history"]) >= 1
    assert summary["history"][0]["train_loss"] > 0
    assert summary["base"]["num_layers"] >= 1  # trained from build_base's output: a fresh run, recorded
    model, tokenizer, _ = FraudClassifier.load(tiny_trained)
    assert model.head.out_features == len(OUTPUTS)


def test_export_metadata_and_parity(tiny_model_dir) -> None:
    meta = {p.key: p.value for p in onnx.load(str(tiny_model_dir / "model.onnx")).metadata_props}
    assert json.loads(meta["fanzha.outputs"]) == list(OUTPUTS)
    assert meta["fanzha.version"] == "tiny-test"
    assert len(meta["fanzha.tokenizer_sha256"]) == 64
    parity = json.loads((tiny_model_dir / "parity.json").read_text())
    assert parity["fp32_vs_torch_max_abs_logit_diff"] <= 1e-4
    assert parity["size_mb_int8"] < parity["size_mb_fp32"]
    graph = onnx.load(str(tiny_model_dir / "model.onnx")).graph
    ops = {node.op_type for node in graph.node}
    assert parity["fused"] and "QAttention" in ops  # fused attention, quantised
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLinear"}


def test_runtime_loads_the_export(tiny_model_dir) -> None:
    clf = TextClassifier.load(tiny_model_dir, threads=1)
    probs = clf.predict(["免费领取签名照", "明天考试"])
    assert probs.shape == (2, len(OUTPUTS))
    assert np.all((probs >= 0) & (probs <= 1))
    verdict = Detector(clf).classify_text("免费领取签名照，加QQ群 83726154")
    assert verdict.model_version == "tiny-test"
    assert {e["kind"] for e in verdict.evidence} >= {"qq_group", "giveaway_term"}


def test_threshold_tuning_ranges() -> None:
    from fanzha.training.metrics import tune_thresholds

    y = np.array([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=np.float32)
    probs = np.full_like(y, 0.05) + y * 0.25  # positives at 0.30, negatives at 0.05
    t = tune_thresholds(probs, y)
    assert t[0] == 0.5  # the fraud head never tunes below 0.5, even when a lower cut is perfect on dev
    assert 0.2 <= t[1] <= 0.3 and 0.2 <= t[2] <= 0.3  # labels may go down to 0.2


def test_context_augmentation_keeps_the_message() -> None:
    import random

    from fanzha.training.train import in_context

    rng = random.Random(0)
    out = in_context("加群领皮肤先交激活费", ["今天下雨了", "作业写完了吗"], rng)
    assert "加群领皮肤先交激活费" in out and len(out) > len("加群领皮肤先交激活费")


def test_length_grouped_batches_cover_every_example_once_and_pad_less() -> None:
    import random

    from fanzha.training.train import batch_order

    rng = random.Random(3)
    lengths = [rng.choice([8, 20, 120]) for _ in range(1000)]
    grouped = batch_order(lengths, 32, random.Random(0), group_by_length=True, group=8)
    plain = batch_order(lengths, 32, random.Random(0), group_by_length=False)
    assert sorted(i for b in grouped for i in b) == list(range(1000))
    assert all(0 < len(b) <= 32 for b in grouped) and len(grouped) == len(plain)
    assert plain[0] == list(range(32))  # off: the shuffled order cut as it is
    padded = {
        name: sum(max(lengths[i] for i in b) * len(b) for b in bs)
        for name, bs in [("g", grouped), ("p", plain)]
    }
    assert padded["g"] < 0.6 * padded["p"]
    # the batches are shuffled after sorting: an epoch does not walk from short to long
    firsts = [max(lengths[i] for i in b) for b in grouped[:8]]
    assert firsts != sorted(firsts)


def test_training_resumes_from_the_last_epoch_checkpoint(
    tmp_path, tiny_base, tiny_corpus, monkeypatch
) -> None:
    """A run killed after epoch 1 continues at epoch 2 and ends where an uninterrupted run ends."""
    import json

    from fanzha.training import train

    common = [
        "--base_model",
        str(tiny_base),
        "--corpus",
        str(tiny_corpus),
        "--batch_size",
        "8",
        "--max_length",
        "24",
        "--learning_rate",
        "1e-3",
        "--threads",
        "1",
        "--patience",
        "5",
    ]
    whole, split = tmp_path / "whole", tmp_path / "split"
    train.main([*common, "--output_dir", str(whole), "--epochs", "2"])

    class Killed(Exception):
        pass

    save = train.save_checkpoint

    def save_then_die(*a, **kw):
        save(*a, **kw)
        raise Killed  # the process dies right after the epoch-1 checkpoint

    monkeypatch.setattr(train, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train.main([*common, "--output_dir", str(split), "--epochs", "2"])
    monkeypatch.setattr(train, "save_checkpoint", save)
    assert (split / train.CHECKPOINT / "state.pt").is_file()
    train.main([*common, "--output_dir", str(split), "--epochs", "2"])
    a = json.loads((whole / "training_summary.json").read_text())["history"]
    b = json.loads((split / "training_summary.json").read_text())["history"]
    assert [h["epoch"] for h in b] == [1, 2]
    for x, y in zip(a, b, strict=True):
        assert abs(x["train_loss"] - y["train_loss"]) < 1e-4 and abs(x["score"] - y["score"]) < 1e-4


def test_block_threshold_is_the_lowest_that_is_precise_on_dev(tiny_model_dir) -> None:
    from fanzha.training.metrics import tune_block_threshold

    p = np.array([0.999, 0.985, 0.975, 0.955, 0.93, 0.5])
    y = np.array([1, 1, 1, 0, 1, 0])
    assert tune_block_threshold(p, y) == 0.96  # 0.93 would block the benign 0.955
    assert (
        tune_block_threshold(np.array([0.995, 0.2]), np.array([0, 1])) == 0.99
    )  # never precise: the top of the range
    clf = TextClassifier.load(tiny_model_dir, threads=1)
    assert 0.9 <= clf.thresholds["block"] <= 0.99
    assert (
        Detector(clf).thresholds.block == clf.thresholds["block"]
    )  # the detector blocks at the model's own threshold


def test_export_refuses_a_model_that_fails_parity(tiny_trained, tiny_corpus, tmp_path, monkeypatch) -> None:
    """The fp32 graph must reproduce torch's logits: a drift of 0.01 (100× the gate) is refused, and the output
    folder (the model a deployment ships) keeps what it had."""
    from fanzha.training import export

    real = export.predict_logits
    monkeypatch.setattr(export, "predict_logits", lambda *a, **kw: real(*a, **kw) + 0.01)
    out, work = tmp_path / "shipped", tmp_path / "work"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"the model shipped before")
    with pytest.raises(SystemExit, match="parity check failed") as refused:
        export.main(
            [
                "--model_dir",
                str(tiny_trained),
                "--output_dir",
                str(out),
                "--work_dir",
                str(work),
                "--corpus",
                str(tiny_corpus),
                "--version",
                "tiny-drift",
            ]
        )
    assert "nothing written" in str(refused.value)
    assert (
        sorted(p.name for p in out.iterdir()) == ["model.onnx"]
        and (out / "model.onnx").read_bytes() == b"the model shipped before"
    )
    parity = json.loads((work / "parity.json").read_text())
    assert parity["passed"] is False and parity["fp32_vs_torch_max_abs_logit_diff"] == pytest.approx(
        0.01, abs=1e-4
    )


def test_data_seed_draws_the_data_anew_from_the_same_first_weights(tmp_path, tiny_base, tiny_corpus) -> None:
    """Runs that differ in --data_seed alone start from the same weights (what a soup of them needs)."""
    import json

    import torch
    from safetensors.torch import load_file

    from fanzha.training import train

    frozen = ["--learning_rate", "0", "--head_learning_rate", "0"]  # the weights stay the first ones
    common = ["--base_model", str(tiny_base), "--corpus", str(tiny_corpus), "--epochs", "1"]
    common += ["--batch_size", "8", "--max_length", "24", "--threads", "1", *frozen]
    seeds = {"a": ["--data_seed", "1"], "b": ["--data_seed", "2"], "c": ["--seed", "14", "--data_seed", "1"]}
    runs = {
        name: train.main([*common, *extra, "--output_dir", str(tmp_path / name)])
        for name, extra in seeds.items()
    }
    head = {name: load_file(str(run / "head.safetensors"))["weight"] for name, run in runs.items()}
    loss = {
        name: json.loads((run / "training_summary.json").read_text())["history"][0]["train_loss"]
        for name, run in runs.items()
    }
    assert torch.equal(head["a"], head["b"]) and not torch.equal(head["a"], head["c"])
    assert loss["a"] != loss["b"]  # other augmentation twins and dropout masks


def test_warm_start_continues_from_a_checkpoint_head_and_all(
    tmp_path, tiny_base, tiny_trained, tiny_corpus
) -> None:
    """--warm_start reads the checkpoint's head as well as its encoder (frozen here, so the weights stay its own);
    without it the same directory is only an encoder under a fresh head; an encoder alone is refused."""
    import json

    import pytest
    import torch
    from safetensors.torch import load_file

    from fanzha.training import train

    frozen = ["--learning_rate", "0", "--head_learning_rate", "0", "--epochs", "1", "--threads", "1"]
    common = ["--corpus", str(tiny_corpus), "--batch_size", "8", "--max_length", "24", *frozen]
    warm = train.main(
        [
            "--base_model",
            str(tiny_trained),
            "--warm_start",
            "true",
            "--output_dir",
            str(tmp_path / "w"),
            *common,
        ]
    )
    fresh = train.main(["--base_model", str(tiny_trained), "--output_dir", str(tmp_path / "f"), *common])
    saved = load_file(str(tiny_trained / "head.safetensors"))["weight"]
    assert torch.equal(load_file(str(warm / "head.safetensors"))["weight"], saved)
    assert not torch.equal(load_file(str(fresh / "head.safetensors"))["weight"], saved)
    summary = json.loads((warm / "training_summary.json").read_text())
    assert summary["warm_start"]["from"] == str(tiny_trained)
    assert summary["warm_start"]["summary"]["args"]["base_model"] == str(tiny_base)
    # the model card rebuilds the whole chain: the start's run, the warm start from it, the export of the last
    from fanzha.training import model_card

    commands = model_card._recipe(summary).splitlines()
    assert [c.split()[2] for c in commands] == ["fanzha.training.train"] * 2 + ["fanzha.training.export"]
    assert commands[0].startswith(f"python -m fanzha.training.train --base_model {tiny_base} ")
    assert "--base_model runs/model " in commands[1] and "--warm_start True" in commands[1]
    assert commands[1].endswith("--output_dir runs/model-warm")
    assert commands[2].endswith("--model_dir runs/model-warm --output_dir models/default")
    assert "continues the checkpoint the ones before it build" in model_card._lineage(summary)
    assert model_card._lineage(json.loads((tiny_trained / "training_summary.json").read_text())) == ""
    with pytest.raises(SystemExit, match="head.safetensors"):
        train.main(
            [
                "--base_model",
                str(tiny_base),
                "--warm_start",
                "true",
                "--output_dir",
                str(tmp_path / "x"),
                *common,
            ]
        )


def test_the_card_counts_the_authors_a_run_read(tiny_trained, tiny_corpus) -> None:
    """A run records who wrote its train split; an older summary is not counted from a corpus that has grown."""
    import json

    from fanzha.datasets.corpus import load_corpus
    from fanzha.training import model_card

    summary = json.loads((tiny_trained / "training_summary.json").read_text())
    train = load_corpus(tiny_corpus, splits=["train"])
    assert summary["train_authors"] == sorted({r["provenance"] for r in train})
    assert model_card._authors(summary) == f"{len(summary['train_authors'])} authors"
    older = {k: v for k, v in summary.items() if k != "train_authors"} | {"train_size": -1}
    assert model_card._authors(older) == "the authors of its train split (`datasets/README.md`)"
