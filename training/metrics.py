"""Metrics and threshold tuning shared by training, export and evaluation (and the tests).

Kept apart from the `train` entry point so that export, evaluation and adaptation import no training loop.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score

from fanzha.models.labels import LABELS, OUTPUTS, fraud_scores


def targets(records: list[dict]) -> np.ndarray:
    """(n, 5) multi-hot: fraud-any, then each label."""
    y = np.zeros((len(records), len(OUTPUTS)), dtype=np.float32)
    for i, r in enumerate(records):
        y[i, 0] = float(bool(r["labels"]))
        for label in r["labels"]:
            y[i, 1 + LABELS.index(label)] = 1.0
    return y


def dev_metrics(probs: np.ndarray, y: np.ndarray, thresholds: np.ndarray | None = None) -> dict[str, float]:
    t = np.full(probs.shape[1], 0.5) if thresholds is None else thresholds
    pred = probs >= t
    fraud_f1 = f1_score(y[:, 0], pred[:, 0], zero_division=0)
    macro = f1_score(y[:, 1:], pred[:, 1:], average="macro", zero_division=0)
    return {
        "fraud_f1": float(fraud_f1),
        "label_macro_f1": float(macro),
        "score": float((fraud_f1 + macro) / 2),
    }


# The fraud head's threshold is the default review threshold: below 0.5 the model itself says "more likely
# benign", and a review queue costs moderators' time, so it is only tuned upwards. Labels may go lower.
FRAUD_THRESHOLD_RANGE = (0.5, 0.9)
LABEL_THRESHOLD_RANGE = (0.2, 0.8)


def tune_thresholds(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per output, the threshold in its range that maximises dev F1 (ties → closest to 0.5)."""
    best = []
    for k in range(probs.shape[1]):
        low, high = FRAUD_THRESHOLD_RANGE if k == 0 else LABEL_THRESHOLD_RANGE
        grid = np.round(np.arange(low, high + 1e-9, 0.05), 2)
        scores = [(f1_score(y[:, k], probs[:, k] >= g, zero_division=0), -abs(g - 0.5), g) for g in grid]
        best.append(max(scores)[2])
    return np.array(best, dtype=np.float32)


def detector_score(probs: np.ndarray) -> np.ndarray:
    """The fraud score the Detector decides on (`fanzha.models.labels.fraud_scores`), rounded as its verdicts are."""
    return np.round(fraud_scores(probs, OUTPUTS), 4)


def decision_thresholds(probs: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Review and block thresholds on the score the Detector decides on, from a model's own dev scores.

    Training tunes each head alone; the Detector flags on the max over the heads, so a threshold tuned on the
    fraud head alone sat below the best one (0.5 where the max-score's dev F1 peaked at 0.9, measured on the
    round-5 candidates). Review maximises dev F1 (ties → closest to 0.5); block is the precise end, never
    below review.
    """
    score, is_fraud = detector_score(probs), y[:, 0]
    low, high = FRAUD_THRESHOLD_RANGE
    grid = np.round(np.arange(low, high + 1e-9, 0.05), 2)
    review = max((f1_score(is_fraud, score >= g, zero_division=0), -abs(g - 0.5), g) for g in grid)[2]
    return {"fraud": float(review), "block": max(float(review), tune_block_threshold(score, is_fraud))}


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# `block` removes content without a human look, so it must be very precise: the lowest threshold in this range
# whose dev precision reaches BLOCK_MIN_PRECISION (the highest of the range when none does).
BLOCK_THRESHOLD_RANGE = (0.9, 0.99)
BLOCK_MIN_PRECISION = 0.995


def tune_block_threshold(
    fraud_probs: np.ndarray, is_fraud: np.ndarray, min_precision: float = BLOCK_MIN_PRECISION
) -> float:
    low, high = BLOCK_THRESHOLD_RANGE
    for t in np.round(np.arange(low, high + 1e-9, 0.01), 2):
        blocked = fraud_probs >= t
        if blocked.any() and float(is_fraud[blocked].mean()) >= min_precision:
            return float(t)
    return float(high)
