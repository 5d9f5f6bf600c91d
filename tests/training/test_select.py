"""Choosing among exported candidates on dev through the Detector."""

import json

import numpy as np
import pytest

from fanzha.datasets.corpus import load_corpus
from fanzha.models import Detector
from fanzha.training import select


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


def test_main_measures_each_model_on_dev_and_writes_the_choice(tiny_model_dir, tiny_corpus, tmp_path) -> None:
    out = tmp_path / "select.json"
    result = select.main([str(tiny_model_dir), "--corpus", str(tiny_corpus), "--json", str(out)])

    dev = load_corpus(tiny_corpus, splits=["dev"])
    verdicts = Detector.load(tiny_model_dir).classify_texts([r["text"] for r in dev])
    flagged = np.array([v.decision != "pass" for v in verdicts])
    fraud = np.array([bool(r["labels"]) for r in dev])
    figures = result["figures"][str(tiny_model_dir)]
    assert figures["recall"] == pytest.approx((flagged & fraud).sum() / fraud.sum())
    assert result["chosen"] == str(tiny_model_dir) and result["dev_size"] == len(dev)
    assert json.loads(out.read_text())["figures"] == result["figures"]


def test_main_refuses_a_directory_without_a_model(tmp_path) -> None:
    with pytest.raises(SystemExit, match="no model.onnx"):
        select.main([str(tmp_path)])
