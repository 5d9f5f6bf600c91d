"""The scam taxonomy and the decision rule: the one place that names labels and thresholds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import SettingsError
from .settings import settings

# Order matters: it is the order of the classifier's label logits after the binary `fraud` head.
LABELS: tuple[str, ...] = ("fake_giveaway", "fee_demand", "click_farming", "other_fraud")
FRAUD_HEAD = "fraud"  # binary "any of the labels applies" head, trained jointly
OUTPUTS: tuple[str, ...] = (FRAUD_HEAD, *LABELS)

LABEL_NAMES_ZH = {
    "fake_giveaway": "虚假赠送 / 福利诱导",
    "fee_demand": "以各种费用为名索要钱款",
    "click_farming": "刷单返利 / 做任务",
    "other_fraud": "其他诈骗",
}

DECISIONS = ("pass", "review", "block")


def fraud_scores(probs: np.ndarray, outputs: Sequence[str] = OUTPUTS) -> np.ndarray:
    """The score decisions are made on, per row of (n, outputs) probabilities: P(any label) is never below
    P(one label), so it is the max of the `fraud` head and the label heads. Training tunes thresholds on it."""
    probs = np.asarray(probs, dtype=np.float64).reshape(-1, len(outputs))
    columns = [list(outputs).index(name) for name in (FRAUD_HEAD, *LABELS)]
    return probs[:, columns].max(axis=1)


@dataclass(frozen=True)
class DecisionThresholds:
    """`fraud_score` ≥ block → block; ≥ review → review; else pass.

    Defaults favour recall for review (a human looks) and precision for block (content disappears).
    The review default is the model's own `fraud` threshold (tuned on dev, stored in the ONNX metadata);
    override with FANZHA_REVIEW_THRESHOLD / FANZHA_BLOCK_THRESHOLD or the CLI flags.
    """

    review: float = 0.5
    block: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 <= self.review <= self.block <= 1.0:
            raise SettingsError(
                f"thresholds must satisfy 0 <= review <= block <= 1, got review={self.review} block={self.block}"
            )

    @classmethod
    def from_env(cls, review: float | None = None, block: float | None = None) -> DecisionThresholds:
        """FANZHA_REVIEW_THRESHOLD / FANZHA_BLOCK_THRESHOLD (settings), else the given defaults (the model's tuned
        ones), else the class defaults; a block threshold left to its default follows a review threshold set above it."""
        s = settings()
        review = (
            s.review_threshold if s.review_threshold is not None else cls.review if review is None else review
        )
        block = (
            s.block_threshold
            if s.block_threshold is not None
            else max(cls.block if block is None else block, review)
        )
        return cls(review=review, block=block)

    def decide(self, fraud_score: float) -> str:
        if fraud_score >= self.block:
            return "block"
        if fraud_score >= self.review:
            return "review"
        return "pass"
