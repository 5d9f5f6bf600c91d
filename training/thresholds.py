"""Tune an exported model's decision thresholds (review, block) on its own dev scores, in the Detector's terms.

    python -m fanzha.training.thresholds --model_dir models/default

Export does this for the int8 model it has just written; run it alone to re-tune a model exported earlier
(for example after the dev split grew). Only `fraud` (review) and `block` change; label thresholds stay as
training tuned them. The model's other metadata and its graph are untouched.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fanzha.datasets.corpus import load_corpus
from fanzha.models.normalize import normalize
from fanzha.models.text import DEFAULT_MODEL_DIR, TextClassifier, WindowReader

from .graph import load_onnx, set_metadata
from .metrics import decision_thresholds, targets


def tune(classifier: WindowReader, corpus: str | None = None) -> dict[str, float]:
    """Review and block thresholds from the classifier's scores on the dev split (never test): an exported
    model's, or a torch checkpoint's read through the same windows (torch_reader)."""
    dev = load_corpus(corpus, splits=["dev"])
    probs = classifier.predict([normalize(r["text"]).text for r in dev])
    return decision_thresholds(probs, targets(dev))


def retune(model_dir: str | Path, corpus: str | None = None) -> dict[str, float]:
    """Write the tuned review and block thresholds into `model_dir/model.onnx`; returns all its thresholds."""
    path = Path(model_dir) / "model.onnx"
    tuned = tune(TextClassifier(path, Path(model_dir) / "tokenizer.json"), corpus)
    metadata = {p.key: p.value for p in load_onnx().load(str(path)).metadata_props}
    thresholds = {**json.loads(metadata["fanzha.thresholds"]), **tuned}
    set_metadata(path, {**metadata, "fanzha.thresholds": json.dumps(thresholds)})
    parity = Path(model_dir) / "parity.json"  # the export's record of what it shipped follows the model
    if parity.exists():
        record = json.loads(parity.read_text())
        record.update(block_threshold=tuned["block"], review_threshold=tuned["fraud"])
        parity.write_text(json.dumps(record, indent=2))
    return thresholds


def main(argv: list[str] | None = None) -> dict[str, float]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model_dir", default=str(DEFAULT_MODEL_DIR), help="exported model dir (model.onnx)")
    p.add_argument("--corpus", default=None, help="corpus dir or JSONL (default: datasets/corpus)")
    args = p.parse_args(argv)
    thresholds = retune(args.model_dir, args.corpus)
    print(json.dumps(thresholds))
    return thresholds


if __name__ == "__main__":
    main()
