"""The committed corpus itself: schema, quotas from the issue, and no near-duplicates across splits."""

import json

import pytest

from fanzha.datasets.check import cross_split_duplicates, quota_problems, shingles, stats
from fanzha.datasets.corpus import SOURCES, CorpusError, author_of, load_corpus


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    return load_corpus()


def test_quotas(corpus) -> None:
    assert quota_problems(corpus) == []
    s = stats(corpus)
    assert set(s["split"]) == {"train", "dev", "test"}
    assert set(s["source"]) == set(
        SOURCES
    )  # every register the schema names is written (round 4 added post, game_chat)


def test_no_near_duplicates_across_splits(corpus) -> None:
    assert cross_split_duplicates(corpus) == []


def test_held_out_splits_come_from_their_own_authors(corpus) -> None:
    authors = {
        split: {r["provenance"] for r in corpus if r["split"] == split} for split in ("train", "dev", "test")
    }
    assert not authors["dev"] & authors["train"]
    assert not authors["test"] & authors["train"]
    assert not authors["dev"] & authors["test"]


def test_the_check_catches_a_planted_duplicate(corpus) -> None:
    train = next(r for r in corpus if r["split"] == "train" and len(r["text"]) > 30)
    planted = dict(train, id="planted", split="test", text=train["text"] + "。")
    found = cross_split_duplicates([train, planted])
    assert len(found) == 1 and found[0].jaccard > 0.5


def test_shingles_ignore_evasion_and_whitespace() -> None:
    assert shingles("加薇信 领 皮肤啊啊") == shingles("加微信领皮肤啊啊")


def test_bad_lines_name_file_and_line(tmp_path) -> None:
    good = {
        "id": "x1",
        "text": "你好",
        "labels": [],
        "source": "comment",
        "script": "zh-Hans",
        "split": "train",
        "hard_negative": False,
        "provenance": "test",
    }
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(good, ensure_ascii=False) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="c.jsonl:2"):
        load_corpus(path)
    path.write_text(json.dumps(dict(good, labels=["spam"])) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="unknown labels"):
        load_corpus(path)
    path.write_text(
        json.dumps(dict(good, labels=["fee_demand"], hard_negative=True)) + "\n", encoding="utf-8"
    )
    with pytest.raises(CorpusError, match="hard negative"):
        load_corpus(path)


def test_author_of_reads_the_provenance() -> None:
    assert author_of({"provenance": "authored:a70"}) == "a70"
    assert author_of({"provenance": "authored:c5"}) == "c5"
    assert author_of({"provenance": "user_report:42"}) == "user_report:42"
    assert (
        author_of({})
        == author_of({"provenance": None})
        == author_of({"provenance": "authored:"})
        == "unknown"
    )
