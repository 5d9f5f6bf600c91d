"""Re-tuning an exported model's review and block thresholds on its own dev scores."""

import json
import shutil

import numpy as np

from fanzha.datasets.corpus import load_corpus
from fanzha.models import Detector
from fanzha.models.normalize import normalize
from fanzha.training import thresholds
from fanzha.training.metrics import decision_thresholds, targets


def test_retune_writes_the_detector_score_thresholds_and_keeps_the_rest(
    tiny_model_dir, tiny_corpus, tmp_path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    before = Detector.load(model).classifier
    labels_before = {k: v for k, v in before.thresholds.items() if k not in ("fraud", "block")}
    written = thresholds.main(["--model_dir", str(model), "--corpus", str(tiny_corpus)])

    after = Detector.load(model)
    dev = load_corpus(tiny_corpus, splits=["dev"])
    expected = decision_thresholds(
        after.classifier.predict([normalize(r["text"]).text for r in dev]), targets(dev)
    )
    assert after.thresholds.review == expected["fraud"] and after.thresholds.block == expected["block"]
    assert {
        k: v for k, v in after.classifier.thresholds.items() if k not in ("fraud", "block")
    } == labels_before
    assert written == after.classifier.thresholds and after.model_version == before.version
    parity = json.loads((model / "parity.json").read_text())
    assert parity["block_threshold"] == expected["block"] and parity["review_threshold"] == expected["fraud"]
    # the graph is the same: only the metadata changed
    texts = [normalize(r["text"]).text for r in dev]
    assert np.array_equal(before.predict(texts), after.classifier.predict(texts))
