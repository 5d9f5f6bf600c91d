"""training/soup.py on the tiny run: the weights averaged, the greedy recipe's dev rule, the refusals."""

import json
import shutil
from pathlib import Path

import pytest
import torch

from fanzha.models.labels import OUTPUTS


def variant(source: Path, out: Path, change) -> Path:
    """A copy of the run at `source` whose weights `change(state)` edited in place (a stand-in for another seed)."""
    from fanzha.training.model import FraudClassifier

    model, tokenizer, config = FraudClassifier.load(source)
    state = model.state_dict()
    change(state)
    model.load_state_dict(state)
    model.save(out, tokenizer, extra=config)
    shutil.copy(source / "training_summary.json", out / "training_summary.json")
    return out


def nudged(state: dict) -> None:
    generator = torch.Generator().manual_seed(7)
    for value in state.values():
        if value.is_floating_point():
            value += 0.01 * torch.randn(value.shape, generator=generator)


def flagging_nothing(state: dict) -> None:
    """Averaged with the original, the head reads nothing and says "benign" to everything."""
    state["head.weight"] *= -1
    state["head.bias"] -= 40.0


def soup(model_dirs: list[Path], out: Path, corpus: Path, recipe: str) -> Path:
    from fanzha.training import soup as soup_module

    return soup_module.main(
        [
            "--model_dirs",
            *map(str, model_dirs),
            "--output_dir",
            str(out),
            "--corpus",
            str(corpus),
            "--recipe",
            recipe,
        ]
    )


def test_a_uniform_soup_is_the_mean_of_its_runs(tiny_trained, tiny_corpus, tmp_path) -> None:
    from fanzha.training.model import FraudClassifier

    other = variant(tiny_trained, tmp_path / "other", nudged)
    out = soup([tiny_trained, other], tmp_path / "soup", tiny_corpus, "uniform")

    a, b, mixed = (FraudClassifier.load(d)[0].state_dict() for d in (tiny_trained, other, out))
    weight = "head.weight"
    assert not torch.equal(a[weight], b[weight])
    for key, value in mixed.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (a[key] + b[key]) / 2)
    config = json.loads((out / "fanzha_classifier.json").read_text())
    assert set(config["thresholds"]) == set(OUTPUTS)
    assert config["soup"] == [str(tiny_trained), str(other)] or config["soup"] == [
        str(other),
        str(tiny_trained),
    ]
    summary = json.loads((out / "training_summary.json").read_text())
    assert [i["in_soup"] for i in summary["soup"]["ingredients"]] == [True, True]
    assert summary["soup"]["recipe"] == "uniform"
    assert summary["history"]  # what the model card reads is there


def test_the_model_card_says_what_a_soup_is_made_of(tiny_trained, tiny_corpus, tmp_path) -> None:
    from fanzha.training import model_card

    other = variant(tiny_trained, tmp_path / "other", nudged)
    out = soup([tiny_trained, other], tmp_path / "soup", tiny_corpus, "uniform")
    note = model_card._soup_note(json.loads((out / "training_summary.json").read_text()))
    assert f"--model_dirs {tiny_trained} {other} --recipe uniform` (uniform: every run listed" in note
    assert note.count("| yes |") == 2 and "(the first run)" in note
    assert model_card._soup_note(json.loads((tiny_trained / "training_summary.json").read_text())) == ""
    # the card's commands rebuild each kept run with its own options, then average and export the soup
    summary = json.loads((out / "training_summary.json").read_text())
    commands = model_card._recipe(summary).splitlines()
    assert [c.split()[2] for c in commands] == [
        "fanzha.training.train",
        "fanzha.training.train",
        "fanzha.training.soup",
        "fanzha.training.export",
    ]
    assert commands[2].endswith(
        "--model_dirs runs/model-1 runs/model-2 --recipe uniform --output_dir runs/soup"
    )
    assert commands[3].startswith("python -m fanzha.training.export --model_dir runs/soup")


def test_greedy_keeps_a_run_that_does_not_lower_the_dev_score(tiny_trained, tiny_corpus, tmp_path) -> None:
    same = variant(tiny_trained, tmp_path / "same", lambda state: None)
    out = soup([tiny_trained, same], tmp_path / "soup", tiny_corpus, "greedy")

    summary = json.loads((out / "training_summary.json").read_text())
    assert out == tmp_path / "soup"
    assert [i["in_soup"] for i in summary["soup"]["ingredients"]] == [True, True]  # a tie keeps the run
    assert summary["best_dev_score"] == pytest.approx(
        summary["soup"]["ingredients"][0]["dev_score"], abs=1e-4
    )


def test_greedy_leaves_out_a_run_that_lowers_the_dev_score(
    tiny_trained, tiny_corpus, tmp_path, caplog
) -> None:
    bad = variant(tiny_trained, tmp_path / "bad", flagging_nothing)
    with caplog.at_level("INFO", logger="fanzha.soup"):
        chosen = soup([bad, tiny_trained], tmp_path / "soup", tiny_corpus, "greedy")

    # the premise: the tiny run learned something on dev (the trainer's own record of its dev score)
    assert (
        json.loads((tiny_trained / "fanzha_classifier.json").read_text())["dev_metrics_at_0.5"]["score"] > 0
    )
    assert chosen == tiny_trained  # the better run alone: nothing averaged, nothing written
    assert not (tmp_path / "soup").exists()
    assert "nothing averaged" in caplog.text


def test_runs_that_cannot_be_averaged_are_refused(tiny_trained, tiny_corpus, tmp_path) -> None:
    from fanzha.training.model import FraudClassifier

    model, tokenizer, config = FraudClassifier.load(tiny_trained)
    model.head = torch.nn.Linear(model.head.in_features, 3)  # another head: another label set
    model.save(tmp_path / "other-head", tokenizer, extra={**config, "outputs": ["a", "b", "c"]})
    shutil.copy(tiny_trained / "training_summary.json", tmp_path / "other-head")
    with pytest.raises(SystemExit, match="has outputs"):
        soup([tiny_trained, tmp_path / "other-head"], tmp_path / "soup", tiny_corpus, "uniform")
    with pytest.raises(SystemExit, match="would be overwritten"):
        soup([tiny_trained, tmp_path / "other-head"], tiny_trained, tiny_corpus, "uniform")
    with pytest.raises(SystemExit, match="at least two"):
        soup([tiny_trained], tmp_path / "soup", tiny_corpus, "uniform")
    with pytest.raises(SystemExit, match="weigh double"):
        soup([tiny_trained, tmp_path / "other-head", tiny_trained], tmp_path / "soup", tiny_corpus, "uniform")
    with pytest.raises(SystemExit, match="--recipe"):
        soup([tiny_trained, tmp_path / "other-head"], tmp_path / "soup", tiny_corpus, "mean")

    other_tokenizer = variant(tiny_trained, tmp_path / "other-tokenizer", lambda state: None)
    tokenizer_json = json.loads((other_tokenizer / "tokenizer.json").read_text())
    tokenizer_json["normalizer"] = None
    (other_tokenizer / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    with pytest.raises(SystemExit, match="another tokenizer"):
        soup([tiny_trained, other_tokenizer], tmp_path / "soup", tiny_corpus, "uniform")
    (other_tokenizer / "training_summary.json").unlink()
    with pytest.raises(SystemExit, match="no training_summary.json"):
        soup([tiny_trained, other_tokenizer], tmp_path / "soup", tiny_corpus, "uniform")
    assert not (tmp_path / "soup").exists()


def test_weights_of_other_shapes_are_refused(tiny_trained) -> None:
    from fanzha.training.model import FraudClassifier
    from fanzha.training.soup import check_compatible, state_of

    model, _, config = FraudClassifier.load(tiny_trained)
    state = state_of(model)
    wider = {**state, "head.weight": torch.zeros(state["head.weight"].shape[0], 7)}
    check_compatible(["a", "b"], [state, dict(state)], [config, config], ["t", "t"])  # the same: accepted
    with pytest.raises(SystemExit, match="does not have a's architecture"):
        check_compatible(["a", "b"], [state, wider], [config, config], ["t", "t"])
