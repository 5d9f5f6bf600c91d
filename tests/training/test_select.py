"""Choosing among exported candidates on dev through the Detector."""

import json
import shutil

import pytest

from fanzha.datasets.corpus import author_of, load_corpus
from fanzha.training import select
from fanzha.training.graph import load_onnx, set_metadata


def test_choose_takes_the_f1_leader_and_breaks_near_ties_on_hard_negatives() -> None:
    figures = {
        "a": {"f1": 0.9700, "hard_negatives_flagged": 0.010},
        "b": {"f1": 0.9765, "hard_negatives_flagged": 0.030},
        "c": {"f1": 0.9760, "hard_negatives_flagged": 0.018},
    }
    assert select.choose(figures, tie=0.001) == "c"  # within the tie of b, fewer hard negatives
    assert select.choose(figures, tie=0.0) == "b"
    with pytest.raises(ValueError):
        select.choose({})


def test_main_measures_each_export_at_its_own_thresholds(tiny_model_dir, tiny_corpus, tmp_path) -> None:
    # two copies of one model: one flags everything (review 0), one only what it is sure of (review = block = 1)
    everything, nothing = tmp_path / "everything", tmp_path / "nothing"
    for copy, review, block in ((everything, 0.0, 0.0), (nothing, 1.0, 1.0)):
        shutil.copytree(tiny_model_dir, copy)
        path = copy / "model.onnx"
        metadata = {p.key: p.value for p in load_onnx().load(str(path)).metadata_props}
        thresholds = {**json.loads(metadata["fanzha.thresholds"]), "fraud": review, "block": block}
        set_metadata(path, {**metadata, "fanzha.thresholds": json.dumps(thresholds)})
    out = tmp_path / "select.json"
    result = select.main([str(everything), str(nothing), "--corpus", str(tiny_corpus), "--json", str(out)])

    dev = load_corpus(tiny_corpus, splits=["dev"])
    lures = sum(bool(r["labels"]) for r in dev)
    f = result["figures"][str(everything)]
    assert f["recall"] == 1.0 and f["precision"] == pytest.approx(lures / len(dev))
    assert f["f1"] == pytest.approx(2 * lures / (len(dev) + lures))
    assert f["hard_negatives_flagged"] == f["hard_negatives_blocked"] == 1.0
    assert result["figures"][str(nothing)]["hard_negatives_flagged"] == 0.0
    # per dev author: everything flagged = every benign message a false positive; nothing = every lure a miss
    by_author: dict[str, list[int]] = {}
    for r in dev:
        counts = by_author.setdefault(author_of(r), [0, 0])
        counts[bool(r["labels"])] += 1
    assert f["errors_by_author"] == {a: [benign, 0] for a, (benign, _) in by_author.items()}
    assert result["figures"][str(nothing)]["errors_by_author"] == {
        a: [0, lures] for a, (_, lures) in by_author.items()
    }
    assert list(f["errors_by_author"]) == sorted(by_author, key=lambda a: int(a.lstrip("a")))
    assert result["chosen"] == max(result["figures"], key=lambda d: result["figures"][d]["f1"])
    assert json.loads(out.read_text())["figures"] == result["figures"]


def test_main_refuses_a_directory_without_a_model(tmp_path) -> None:
    with pytest.raises(SystemExit, match="no model.onnx"):
        select.main([str(tmp_path)])
