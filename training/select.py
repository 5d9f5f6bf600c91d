"""Choose among exported candidate models on dev, in the Detector's own terms (never test).

    python -m fanzha.training.select runs/export-a runs/export-b --json runs/select.json

Each candidate is an exported model directory (model.onnx + tokenizer.json) read through the Detector at
the review and block thresholds its export tuned on dev. The rule (`reports/MODEL_COMPARISON.md` §3): the
best Detector dev F1 (review or block counts as flagged), fewer hard negatives flagged breaking ties within
`--tie` of F1. The table also gives precision, recall, and hard negatives flagged and blocked; a second
table gives each candidate's errors per dev author (false positives / misses), since one author's voice can
move a split-wide figure.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Hashable
from pathlib import Path
from typing import TypeVar

import numpy as np

from fanzha.datasets.corpus import author_of, load_corpus
from fanzha.models import Detector, TextClassifier
from fanzha.models.labels import FRAUD_HEAD, DecisionThresholds

from .evaluate import DetectorScorer

K = TypeVar("K", bound=Hashable)  # a candidate's name


def dev_figures(model_dir: str | Path, dev: list[dict]) -> dict:
    """Detector figures on `dev` at the export's own thresholds (never FANZHA_*_THRESHOLD: candidates are
    compared as each was tuned); flagged = review or block; texts scored as `evaluate` scores them (a text
    the Detector refuses scores 0)."""
    classifier = TextClassifier.load(model_dir)
    own = classifier.thresholds
    review = own.get(FRAUD_HEAD, DecisionThresholds.review)
    block = max(own.get("block", DecisionThresholds.block), review)
    scorer = DetectorScorer(Detector(classifier, DecisionThresholds(review=review, block=block)))
    score = scorer.predict_proba([r["text"] for r in dev])[:, 0]  # fraud_score, what decisions are made on
    fraud = np.array([bool(r["labels"]) for r in dev])
    hard = np.array([bool(r.get("hard_negative")) for r in dev])
    flagged, blocked = score >= review, score >= block
    authors = [author_of(r) for r in dev]
    false_positives = Counter(a for a, f, y in zip(authors, flagged, fraud, strict=True) if f and not y)
    misses = Counter(a for a, f, y in zip(authors, flagged, fraud, strict=True) if y and not f)
    tp = int((flagged & fraud).sum())
    precision = tp / max(int(flagged.sum()), 1)
    recall = tp / max(int(fraud.sum()), 1)
    return {
        "review": review,
        "block": block,
        "f1": 2 * precision * recall / max(precision + recall, 1e-12),
        "precision": precision,
        "recall": recall,
        "hard_negatives_flagged": float(flagged[hard].mean()) if hard.any() else 0.0,
        "hard_negatives_blocked": float(blocked[hard].mean()) if hard.any() else 0.0,
        "rejected": scorer.rejected,
        "errors_by_author": {  # [false positives, misses], every dev author listed
            a: [false_positives[a], misses[a]] for a in sorted(set(authors), key=_author_key)
        },
    }


def _author_key(author: str) -> tuple[str, int, str]:
    """a6 before a22: the letters, then the number."""
    head = author.rstrip("0123456789")
    tail = author[len(head) :]
    return head, int(tail) if tail else -1, author


def choose(figures: dict[K, dict], tie: float = 0.001) -> K:
    """The dev F1 leader; among those within `tie` of it, the one flagging the fewest hard negatives, then the
    higher F1 (among exact equals, the first given). Also the conversation head's rule
    (fanzha.training.conversation)."""
    if not figures:
        raise ValueError("no candidates to choose from")
    top = max(f["f1"] for f in figures.values())
    close = {name: f for name, f in figures.items() if f["f1"] >= top - tie}
    return min(close, key=lambda name: (close[name]["hard_negatives_flagged"], -close[name]["f1"]))


def table(figures: dict[str, dict], chosen: str) -> str:
    lines = [
        "| model | review / block | dev F1 | precision | recall | hard negatives flagged / blocked |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, f in figures.items():
        mark = "**" if name == chosen else ""
        lines.append(
            f"| {mark}{name}{mark} | {f['review']:.2f} / {f['block']:.2f} | {f['f1']:.4f} | "
            f"{f['precision']:.4f} | {f['recall']:.4f} | "
            f"{100 * f['hard_negatives_flagged']:.2f} % / {100 * f['hard_negatives_blocked']:.2f} % |"
        )
    return "\n".join(lines)


def author_table(figures: dict[str, dict], chosen: str) -> str:
    """Errors per dev author at each candidate's review threshold: false positives / misses."""
    authors = list(next(iter(figures.values()))["errors_by_author"])
    lines = ["| model | all | " + " | ".join(authors) + " |", "|---|" + "---|" * (len(authors) + 1)]
    for name, f in figures.items():
        cells = [f["errors_by_author"][a] for a in authors]
        total = [sum(c[0] for c in cells), sum(c[1] for c in cells)]
        mark = "**" if name == chosen else ""
        row = " | ".join(f"{fp} / {fn}" for fp, fn in [total, *cells])
        lines.append(f"| {mark}{name}{mark} | {row} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dirs", nargs="+", help="exported candidate model directories")
    parser.add_argument(
        "--corpus", default=None, help="corpus dir (default: datasets/corpus); dev split only"
    )
    parser.add_argument("--tie", type=float, default=0.001, help="dev F1 gap treated as a tie")
    parser.add_argument("--json", default=None, help="also write the figures and the choice here")
    args = parser.parse_args(argv)
    missing = [d for d in args.model_dirs if not (Path(d) / "model.onnx").exists()]
    if missing:
        raise SystemExit(f"no model.onnx in: {', '.join(missing)}")
    dev = load_corpus(args.corpus, splits=["dev"])
    figures = {str(d): dev_figures(d, dev) for d in args.model_dirs}
    chosen = choose(figures, args.tie)
    print(table(figures, chosen))
    print(f"chosen on dev: {chosen}\n")
    print("Errors per dev author (false positives / misses):\n")
    print(author_table(figures, chosen))
    result = {"dev_size": len(dev), "figures": figures, "chosen": chosen}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
