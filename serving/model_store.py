"""The BentoML model store entry for the text model: `fanzha import-model` puts the committed default there.

The service reads its model from the store (`bentoml.models.BentoModel`), so `bentoml build` packs the
exact files into the Bento and a deployment can roll models by tag: `fanzha-text:<model version>`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

MODEL_NAME = "fanzha-text"
MODEL_FILES = (
    "model.onnx",
    "tokenizer.json",
    "MODEL_CARD.md",
    "parity.json",
    "training_summary.json",
    "conversation.onnx",  # the conversation model (fanzha.models.conversation), when the model has one
    "CONVERSATION_MODEL_CARD.md",
)


def _version_tag(version: str) -> str:
    """The ONNX metadata's version as a store version (letters, digits, '_', '.', '-')."""
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in version.lower())[:60] or "unversioned"


def import_model(model_dir: str | Path | None = None, name: str = MODEL_NAME, force: bool = False) -> str:
    """Copy a model directory into the BentoML store as `name:<model version>`; returns the tag.

    Importing the same files again is a no-op (unless `force`), so `make run` can call it every time; the same
    text model version with other files (a new conversation model beside it) replaces the stored entry.
    """
    import bentoml

    from fanzha.models.text import DEFAULT_MODEL_DIR, TextClassifier

    model_dir = Path(model_dir or DEFAULT_MODEL_DIR)
    classifier = TextClassifier.load(model_dir, threads=1)  # validates the files belong together
    tag = f"{name}:{_version_tag(classifier.version.removeprefix(name + '-'))}"
    try:
        existing = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        existing = None
    if existing is not None:
        if not force and _same_files(model_dir, Path(existing.path)):
            return str(existing.tag)
        bentoml.models.delete(
            tag
        )  # forced, or the same text model with other files (a new conversation model)
    metadata = {
        "model_version": classifier.version,
        "outputs": list(classifier.outputs),
        "thresholds": json.dumps(classifier.thresholds),
    }
    with bentoml.models.create(
        tag, labels={"task": "fraud-lure-detection", "language": "zh"}, metadata=metadata
    ) as model:
        for file in MODEL_FILES:
            if (model_dir / file).is_file():
                shutil.copy2(model_dir / file, model.path_of(file))
    return str(model.tag)


def _same_files(model_dir: Path, stored: Path) -> bool:
    """Whether the store entry holds exactly the model directory's files (compared by SHA-256)."""
    import hashlib

    def digest(path: Path) -> str | None:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None

    return all(digest(model_dir / f) == digest(stored / f) for f in MODEL_FILES)
