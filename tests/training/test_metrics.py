"""The evaluation and tuning metrics against answers worked out by hand (a known confusion matrix), not against
sklearn run a second time."""

import numpy as np
import pytest

from fanzha.models.labels import LABELS, OUTPUTS
from fanzha.training.evaluate import as_flags, prf, rate
from fanzha.training.metrics import dev_metrics, targets, tune_block_threshold, tune_thresholds


def confusion(tp: int, fp: int, fn: int, tn: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, pred) with exactly these counts, shuffled so that nothing depends on order."""
    y = np.array([1] * tp + [0] * fp + [1] * fn + [0] * tn)
    pred = np.array([1] * tp + [1] * fp + [0] * fn + [0] * tn)
    order = np.random.default_rng(0).permutation(len(y))
    return y[order], pred[order]


def test_precision_recall_f1_of_a_known_confusion_matrix() -> None:
    y, pred = confusion(tp=6, fp=2, fn=3, tn=9)
    # precision 6/8, recall 6/9, F1 = 2·6 / (2·6 + 2 + 3) = 12/17
    assert prf(y, pred) == {"precision": 0.75, "recall": 0.6667, "f1": 0.7059}
    assert prf(*confusion(tp=0, fp=0, fn=4, tn=5)) == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
    }  # nothing flagged
    assert prf(*confusion(tp=5, fp=0, fn=0, tn=5)) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert rate(np.array([True, False, False, True, False])) == 0.4 and np.isnan(rate(np.array([])))


def test_labels_count_only_on_an_item_flagged_as_fraud() -> None:
    scores = np.array(
        [
            [0.9, 0.8, 0.1, 0.1, 0.1],  # fraud, with a label
            [0.3, 0.9, 0.9, 0.1, 0.1],  # labels high, fraud low: the Detector passes it, no labels
            [0.6, 0.4, 0.1, 0.1, 0.7],
        ]
    )
    assert scores.shape[1] == len(OUTPUTS)
    flags = as_flags(scores, np.array([0.5, 0.5, 0.5, 0.5, 0.5]))
    assert flags.tolist() == [
        [True, True, False, False, False],
        [False, False, False, False, False],
        [True, False, False, False, True],
    ]


def test_dev_metrics_of_known_counts() -> None:
    records = [{"labels": [LABELS[0]]}] * 4 + [{"labels": [LABELS[1]]}] * 2 + [{"labels": []}] * 4
    y = targets(records)
    assert y.shape == (10, len(OUTPUTS)) and y[:, 0].tolist() == [1] * 6 + [0] * 4
    probs = np.zeros_like(y)
    probs[:, 0] = [0.9, 0.9, 0.9, 0.2, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1]  # fraud: TP 5, FN 1, FP 1, TN 3
    probs[:, 1] = [0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]  # label 0: TP 2, FN 2 → F1 2/3
    probs[:, 2] = [0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.1, 0.1, 0.1]  # label 1: TP 2, FP 1 → F1 4/5
    m = dev_metrics(probs, y)
    fraud_f1 = 2 * 5 / (2 * 5 + 1 + 1)
    macro = (2 / 3 + 4 / 5 + 0 + 0 + 0) / (len(OUTPUTS) - 1)  # labels nobody has and nobody predicts score 0
    assert m == pytest.approx(
        {"fraud_f1": fraud_f1, "label_macro_f1": macro, "score": (fraud_f1 + macro) / 2}
    )


def test_tuned_thresholds_are_the_best_in_their_ranges() -> None:
    y = np.array([[1, 1, 0, 0, 0]] * 3 + [[0] * 5] * 3, dtype=np.float32)
    probs = np.zeros(y.shape)
    probs[:, 0] = [
        0.72,
        0.8,
        0.9,
        0.55,
        0.6,
        0.1,
    ]  # only a threshold in (0.6, 0.72] separates: 0.65 or 0.7, closer to 0.5 wins
    probs[:, 1] = [0.37, 0.4, 0.9, 0.32, 0.1, 0.1]  # label: (0.32, 0.37] → 0.35
    t = tune_thresholds(probs, y)
    assert t[0] == pytest.approx(0.65, abs=1e-6) and t[1] == pytest.approx(0.35, abs=1e-6)
    assert t[2:] == pytest.approx(
        [0.5, 0.5, 0.5], abs=1e-6
    )  # no positives: every threshold ties, the one nearest 0.5
    # block: the lowest threshold in 0.90–0.99 with dev precision ≥ 99.5 %
    fraud = np.array([0.91, 0.93, 0.95, 0.97, 0.99])
    is_fraud = np.array([0, 1, 1, 1, 1])
    assert tune_block_threshold(fraud, is_fraud) == pytest.approx(0.92)
    assert tune_block_threshold(fraud, np.zeros(5)) == pytest.approx(
        0.99
    )  # none precise enough: the top of the range


def test_decision_thresholds_tune_the_score_the_detector_flags_on() -> None:
    """The fraud head alone would pick 0.5, but a label head (its max with the fraud head is what the Detector
    flags on) puts three benign texts at 0.8: the review threshold has to go above them."""
    from fanzha.training.metrics import decision_thresholds, detector_score

    probs = np.array(
        [[0.95, 0.9, 0, 0, 0]] * 10  # lures
        + [[0.2, 0.8, 0, 0, 0]] * 3  # benign, but a label head says 0.8
        + [[0.1, 0.1, 0, 0, 0]] * 10
    )
    y = np.zeros((23, 5))
    y[:10, 0] = y[:10, 1] = 1
    assert detector_score(probs)[10] == pytest.approx(0.8)
    t = decision_thresholds(probs, y)
    assert t["fraud"] == pytest.approx(0.85) and t["block"] >= t["fraud"]
    assert tune_thresholds(probs, y)[0] == pytest.approx(0.5)  # the per-head tuning training does
