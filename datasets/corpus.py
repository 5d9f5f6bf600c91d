"""The authored corpus: JSONL records, their schema, and split access.

Each line: {"id", "text", "labels" (subset of LABELS, [] = benign), "source" (register), "script"
(zh-Hans / zh-Hant), "split" (train / dev / test), "hard_negative" (bool), "provenance"}.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from fanzha.models.errors import InputError
from fanzha.models.labels import LABELS

CORPUS_DIR = Path(__file__).with_name("corpus")
SOURCES = (
    "qq_group",
    "private_message",
    "comment",
    "video_caption",
    "poster",
    "danmaku",
    "sms",
    "post",  # 微博/论坛/小红书 posts and news items
    "game_chat",  # 游戏内聊天: world, team, guild channels
)
SCRIPTS = ("zh-Hans", "zh-Hant")
SPLITS = ("train", "dev", "test")
FIELDS = ("id", "text", "labels", "source", "script", "split", "hard_negative", "provenance")


class CorpusError(InputError):
    """A corpus line that does not follow the schema; the message names file and line."""


def validate(record: dict, where: str = "") -> dict:
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise CorpusError(f"{where}: missing fields {missing}")
    if not isinstance(record["text"], str) or not record["text"].strip():
        raise CorpusError(f"{where}: empty text")
    bad = [label for label in record["labels"] if label not in LABELS]
    if bad or not isinstance(record["labels"], list):
        raise CorpusError(f"{where}: unknown labels {bad}")
    if record["source"] not in SOURCES:
        raise CorpusError(f"{where}: unknown source {record['source']!r}")
    if record["script"] not in SCRIPTS:
        raise CorpusError(f"{where}: unknown script {record['script']!r}")
    if record["split"] not in SPLITS:
        raise CorpusError(f"{where}: unknown split {record['split']!r}")
    if record["hard_negative"] and record["labels"]:
        raise CorpusError(f"{where}: a hard negative cannot carry fraud labels")
    return record


def read_jsonl(path: Path, check: Callable[[dict, str], dict] = validate) -> list[dict]:
    """Every record of a JSONL file, each passed through `check` (default: the message schema)."""
    records = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise CorpusError(f"{path.name}:{n}: invalid JSON ({e.msg})") from None
            records.append(check(record, f"{path.name}:{n}"))
    return records


def load_corpus(
    path: str | Path | None = None,
    splits: Iterable[str] | None = None,
    check: Callable[[dict, str], dict] = validate,
) -> list[dict]:
    """All records from a corpus directory (every *.jsonl; default: the message corpus) or one file, each passed
    through `check` (default: the message schema), ids unique, optionally only some splits."""
    path = Path(path) if path else CORPUS_DIR
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no *.jsonl corpus files in {path}")
    records = [r for f in files for r in read_jsonl(f, check)]
    ids = [r["id"] for r in records]
    if len(ids) != len(set(ids)):
        dupes = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise CorpusError(f"duplicate ids, e.g. {dupes}")
    if splits is not None:
        wanted = set(splits)
        records = [r for r in records if r["split"] in wanted]
    return records


def is_fraud(record: dict) -> bool:
    return bool(record["labels"])


def author_of(record: dict) -> str:
    """The author a record's provenance names ("authored:a70" → "a70", "authored:c5" → "c5"); the whole
    provenance otherwise (user_report:…, moderator_review:…); "unknown" for a record without one."""
    return (record.get("provenance") or "").removeprefix("authored:") or "unknown"
