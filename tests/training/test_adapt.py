"""`fanzha adapt`: the head re-fit on ONNX sentence vectors, its refusals, and the model it writes."""

from __future__ import annotations

import gzip
import json
import random

import numpy as np
import onnx
import pytest

from fanzha.datasets.corpus import load_corpus
from fanzha.models import Detector, TextClassifier
from fanzha.models.text import FEATURES
from fanzha.training import adapt, graph
from fanzha.training.adapt_args import AdaptArguments


@pytest.fixture(scope="module")
def traffic(tmp_path_factory, tiny_corpus):
    """300 benign 'platform' messages made of the tiny corpus' benign texts, two at a time (a test-made sample)."""
    rng = random.Random(1)
    benign = [r["text"] for r in load_corpus(tiny_corpus) if not r["labels"]]
    rows = [
        {"text": "，".join(rng.sample(benign, 2)), "source": rng.choice(["sms", "post"])} for _ in range(300)
    ]
    path = tmp_path_factory.mktemp("traffic") / "sample.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return path


@pytest.fixture(scope="module")
def adapted(tmp_path_factory, tiny_model_dir, tiny_corpus, traffic):
    out = tmp_path_factory.mktemp("adapted") / "model"
    adapt.main(
        AdaptArguments(
            traffic=str(traffic),
            output=str(out),
            base_model=str(tiny_model_dir),
            corpus=str(tiny_corpus),
            threads=1,
            traffic_weights=[1.0, 8.0],  # two weights, two small heads and two author folds keep it quick
            heads=["8:1", "16:0.3"],
            check_folds=2,
        )
    )
    return out


def test_adapted_model_loads_like_the_default_and_records_its_provenance(
    adapted, tiny_model_dir, traffic
) -> None:
    detector = Detector.load(adapted, threads=1)
    verdict = detector.classify_text("免费领取签名照，加QQ群 83726154，先交29元激活费")
    meta = onnx.load(str(adapted / "model.onnx")).metadata_props
    meta = {p.key: p.value for p in meta}
    assert meta["fanzha.adapted_from"] == "tiny-test"
    assert meta["fanzha.traffic_size"] == "300"
    assert meta["fanzha.traffic_sha256"] == __import__("hashlib").sha256(traffic.read_bytes()).hexdigest()
    assert verdict.model_version == meta["fanzha.version"] and verdict.model_version.startswith(
        "tiny-test-adapted-"
    )
    report = json.loads((adapted / "adapt_report.json").read_text())
    assert set(report["held_out_traffic"]) == {"all", "post", "sms"}
    assert report["labelled"]["test"]["recall_before"] >= 0 and (adapted / "ADAPT_REPORT.md").is_file()
    assert (adapted / "pr_curves.png").stat().st_size > 1000
    assert (tiny_model_dir / "model.onnx").is_file()  # the base model is untouched


def test_the_report_matches_the_written_model_on_the_held_out_traffic(adapted, traffic) -> None:
    """The report's 'after' flag rate is what the written model itself flags on the held-out part."""
    from fanzha.models.normalize import normalize

    texts, _, _ = adapt.read_traffic(traffic)
    held = [normalize(t).text for t, h in zip(texts, adapt.held_out_mask(texts, 0.2, 13), strict=True) if h]
    report = json.loads((adapted / "adapt_report.json").read_text())
    assert report["held_out_traffic"]["all"]["after"]["n"] == len(held) > 20
    verdicts = Detector.load(adapted, threads=1).classify_texts(held)
    flagged = float(np.mean([v.decision != "pass" for v in verdicts]))
    assert abs(flagged - report["held_out_traffic"]["all"]["after"]["review_or_block"]) < 1e-3
    searched = [(r["hidden"], r["l2"], r["traffic_weight"]) for r in report["search"]]
    assert searched == [(8, 1.0, 1.0), (8, 1.0, 8.0), (16, 0.3, 1.0), (16, 0.3, 8.0)]
    fewest = min(r["validation_flag_rate"] for r in report["search"])
    chosen = next(
        r
        for r in report["search"]
        if (r["hidden"], r["l2"], r["traffic_weight"]) == tuple(report["head"].values())
    )
    assert chosen["validation_flag_rate"] == fewest
    assert json.loads(meta_of(adapted)["fanzha.adapt_head"]) == report["head"]
    defaults = AdaptArguments(traffic="t", output="o")
    assert (defaults.traffic_weights, defaults.heads) == ([2, 8], ["32:1", "128:0.3"])


def test_the_written_graph_computes_the_head_with_every_relu_unit_in_play(tiny_model_dir, tmp_path) -> None:
    """A random Head whose hidden units are active on real pooled vectors: the graph's logits equal Head.logits."""
    from fanzha.training.graph import Head, with_features_output, with_new_head

    base = onnx.load(str(tiny_model_dir / "model.onnx"))
    probe = tmp_path / "probe.onnx"
    onnx.save(with_features_output(base), str(probe))
    texts = ["免费领取签名照，加QQ群", "今晚开黑有人吗", "【某某银行】您的账单已出，回T退订"]
    clf = TextClassifier(probe, tiny_model_dir / "tokenizer.json", threads=1, batch_size=1)
    owner, out = clf.window_outputs(texts, FEATURES)
    pooled = out[:, len(clf.outputs) :]
    rng = np.random.default_rng(0)
    d, k, h = pooled.shape[1], len(clf.outputs), 8
    a = rng.normal(size=(d, h)).astype(np.float32)
    head = Head(
        rng.normal(size=(d, k)).astype(np.float32),
        rng.normal(size=k).astype(np.float32),
        a,
        1.0 - (pooled @ a).min(axis=0),  # every unit active on every window
        rng.normal(size=(h, k)).astype(np.float32),
    )
    assert (pooled @ head.a + head.c > 0).all()
    written = tmp_path / "head.onnx"
    metadata = {p.key: p.value for p in base.metadata_props}
    onnx.save(with_new_head(base, head, metadata), str(written))
    got = TextClassifier(written, tiny_model_dir / "tokenizer.json", threads=1, batch_size=1)
    _, logits = got.window_outputs(texts, FEATURES)
    assert np.abs(logits[:, :k] - head.logits(pooled)).max() < 1e-3


def test_an_adapted_model_is_not_adapted_again(adapted, traffic, tmp_path) -> None:
    with pytest.raises(adapt.AdaptError, match="already adapted"):
        adapt.main(
            AdaptArguments(traffic=str(traffic), output=str(tmp_path / "again"), base_model=str(adapted))
        )


def meta_of(model_dir) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(model_dir / "model.onnx")).metadata_props}


def relu_count(model_dir) -> int:
    return sum(n.op_type == "Relu" for n in onnx.load(str(model_dir / "model.onnx")).graph.node)


def test_the_default_head_has_a_relu_layer(adapted, tiny_model_dir) -> None:
    """(The written graph was checked against the numpy head before it was kept: `_check_written`.)"""
    assert relu_count(adapted) == relu_count(tiny_model_dir) + 1


def test_residual_head_fits_a_rule_no_linear_head_can() -> None:
    """Lures at both ends of one axis, benign traffic in the middle (an XOR-like band): the linear head cannot
    separate them, the ReLU layer on top of it can."""
    from fanzha.training.graph import Head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3000, 4)).astype(np.float32)
    y = (np.abs(x[:, :1]) > 1.0).astype(np.float64)
    w = np.ones_like(y)
    anchor = Head(np.zeros((4, 1), np.float32), np.zeros(1, np.float32))
    linear = Head(*adapt.fit_head(x, y, w, anchor.weight, anchor.bias, l2=0.01))
    residual = adapt.fit_residual_head(x, y, w, anchor, l2=0.01, hidden=16, max_iter=300)
    accuracy = {
        h: ((head.logits(x) > 0) == (y > 0.5)).mean() for h, head in (("lin", linear), ("res", residual))
    }
    assert accuracy["lin"] < 0.75 < 0.95 < accuracy["res"]


def test_traffic_as_weighted_negatives_moves_the_boundary_off_the_traffic() -> None:
    """PU fit on synthetic vectors: lures at +2, the corpus' benign at -2, the platform's benign traffic at +1
    (it looks like lures to the base head). Weighted negatives pull the traffic down and keep the lures up."""
    rng = np.random.default_rng(0)
    lures = rng.normal([2.0, 0.0], 0.3, size=(300, 2))
    benign = rng.normal([-2.0, 0.0], 0.3, size=(300, 2))
    traffic = rng.normal([1.0, 1.5], 0.3, size=(3000, 2))  # same direction on x, off on y
    x = np.vstack([lures, benign, traffic]).astype(np.float32)
    y = np.concatenate([np.ones(300), np.zeros(3300)])[:, None].astype(np.float32)
    w = np.concatenate([np.ones(600), np.full(3000, 300 / 3000)])[:, None]
    w0, b0 = np.array([[1.0], [0.0]], np.float32), np.array([0.0], np.float32)  # base head: "x > 0 is a lure"
    assert (traffic @ w0 + b0 > 0).mean() > 0.99
    wt, bt = adapt.fit_head(x, y, w, w0, b0, l2=0.1)
    assert (traffic @ wt + bt > 0).mean() < 0.05
    assert (lures @ wt + bt > 0).mean() > 0.97


def test_fit_head_recovers_a_known_linear_rule() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 8)).astype(np.float32)
    true_w = rng.normal(size=(8, 2)).astype(np.float32)
    y = (x @ true_w > 0).astype(np.float32)
    w, b = adapt.fit_head(
        x,
        y,
        np.ones_like(y, dtype=np.float64),
        np.zeros((8, 2), np.float32),
        np.zeros(2, np.float32),
        l2=0.01,
    )
    accuracy = ((x @ w + b > 0) == (y > 0.5)).mean()
    assert accuracy > 0.97


def test_exports_carry_the_features_output_once(tiny_model_dir, tmp_path) -> None:
    model = onnx.load(str(tiny_model_dir / "model.onnx"))
    names = [o.name for o in model.graph.output]
    assert names == ["logits", FEATURES]
    again = graph.with_features_output(model)  # adding it to a graph that has it changes nothing
    assert [o.name for o in again.graph.output] == names and len(again.graph.node) == len(model.graph.node)


def test_base_head_is_recovered_from_the_graph(tiny_model_dir, tiny_corpus) -> None:
    clf = TextClassifier(tiny_model_dir / "model.onnx", tiny_model_dir / "tokenizer.json", threads=1)
    f = adapt.embed(clf, [r["text"] for r in load_corpus(tiny_corpus)], "t")
    w, b = adapt.base_head(f)
    assert np.abs(f.pooled @ w + b - f.logits).max() < 0.05  # int8 head: small quantisation residual


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "no non-empty"),
        (b'{"text": "\xff\xfe bad"}\n', "not UTF-8"),
        (b'{"body": "hello"}\n', "no 'text' field"),
        (b'{"text": "ok"}\nnot json\n', ":2: not a JSON object"),
    ],
)
def test_bad_traffic_is_refused_with_the_line(tmp_path, content, message) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(content)
    with pytest.raises(adapt.AdaptError, match=message):
        adapt.read_traffic(path)


@pytest.mark.parametrize(
    "heads", [["32"], ["x:1"], ["32:0"], ["-1:1"], ["32:inf"], ["32:nan"], ["99999:1"], []]
)
def test_a_head_that_is_not_width_and_l2_is_refused_before_any_work(heads, traffic, tmp_path) -> None:
    with pytest.raises(adapt.AdaptError, match="WIDTH:L2"):
        adapt.main(AdaptArguments(traffic=str(traffic), output=str(tmp_path / "m"), heads=heads))
    assert not (tmp_path / "m").exists()


def test_never_overwrites_the_base_model_or_a_full_directory(tiny_model_dir, traffic, tmp_path) -> None:
    with pytest.raises(adapt.AdaptError, match="overwrite the base model"):
        adapt.main(
            AdaptArguments(traffic=str(traffic), output=str(tiny_model_dir), base_model=str(tiny_model_dir))
        )
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("keep")
    with pytest.raises(adapt.AdaptError, match="not empty"):
        adapt.main(AdaptArguments(traffic=str(traffic), output=str(full), base_model=str(tiny_model_dir)))
    assert (full / "x").read_text() == "keep"


def test_cli_adapt_writes_a_model_and_refuses_an_empty_sample(
    tiny_model_dir, tiny_corpus, traffic, tmp_path, capsys
) -> None:
    from fanzha.cli import main

    out = tmp_path / "via-cli"
    code = main(
        [
            "adapt",
            "--traffic",
            str(traffic),
            "--output",
            str(out),
            "--base_model",
            str(tiny_model_dir),
            "--corpus",
            str(tiny_corpus),
            "--threads",
            "1",
            "--traffic_weights",
            "1",
            "4",
            "--check_folds",
            "2",
            "--heads",
            "0:1",
        ]
    )
    assert code == 0 and json.loads(capsys.readouterr().out)["model_dir"] == str(out)
    # --heads 0:1: the linear head alone, no ReLU added to the base graph's
    assert relu_count(out) == relu_count(tiny_model_dir)
    assert TextClassifier.load(out, threads=1).version.startswith("tiny-test-adapted-")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert (
        main(
            [
                "adapt",
                "--traffic",
                str(empty),
                "--output",
                str(tmp_path / "x"),
                "--base_model",
                str(tiny_model_dir),
            ]
        )
        == 2
    )
    assert "no non-empty 'text' values" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_review_threshold_holds_recall_for_every_author_not_only_overall() -> None:
    """Author b's 40 lures all score lower after re-fitting; pooled with a's 400 they barely move the overall
    recall, so only the per-author constraint keeps b's lures flagged."""
    from fanzha.training.adapt import choose_review_threshold, recall

    y = np.array([1.0] * 440 + [0.0] * 100)
    groups = np.array(["a"] * 400 + ["b"] * 40 + ["a"] * 100)
    base = np.where(y > 0.5, 0.9, 0.1)
    new = base.copy()
    new[400:440] = np.linspace(0.30, 0.69, 40)  # b's lures: still above 0.3, but spread out
    pooled = choose_review_threshold(base, new, y, 0.5, max_drop=0.05)
    per_author = choose_review_threshold(base, new, y, 0.5, max_drop=0.05, groups=groups)
    b = groups == "b"
    assert recall(new[b], y[b], pooled) < 0.9  # the pooled constraint gives up most of b
    assert per_author < pooled and recall(new[b], y[b], per_author) >= 0.95 - 1e-9
    assert recall(new, y, per_author) >= recall(new, y, pooled)


def test_an_author_may_lose_one_lure_when_a_point_is_below_what_its_lures_can_measure() -> None:
    from fanzha.training.adapt import choose_review_threshold

    y = np.array([1.0] * 440 + [0.0] * 100)
    groups = np.array(["a"] * 400 + ["b"] * 40 + ["a"] * 100)
    base = np.where(y > 0.5, 0.9, 0.1)
    new = base.copy()
    new[400], new[401] = 0.2, 0.3  # two of b's 40 lures lose score after re-fitting
    # one point of b is 0.4 lures: b may lose one (2.5 points), never two
    assert choose_review_threshold(base, new, y, 0.5, max_drop=0.01, groups=groups) == 0.3
    assert choose_review_threshold(base, new, y, 0.5, max_drop=0.01) == 0.9  # pooled: 4.4 lures may go


def test_per_author_flag_reads_true_and_false() -> None:
    from fanzha.training.adapt_args import parse_args

    assert parse_args(["--traffic", "t.jsonl", "--output", "o", "--per_author", "false"]).per_author is False
    assert parse_args(["--traffic", "t.jsonl", "--output", "o"]).per_author is True
    with pytest.raises(SystemExit):
        parse_args(["--traffic", "t.jsonl", "--output", "o", "--per_author", "maybe"])


def test_author_folds_keep_each_author_whole_and_deal_every_fold() -> None:
    from fanzha.training.adapt import author_folds

    records = [{"text": f"t{i}", "provenance": f"authored:a{i % 12}"} for i in range(240)]
    folds = author_folds(records, 5, seed=3)
    by_author: dict[str, set[int]] = {}
    for r, f in zip(records, folds, strict=True):
        by_author.setdefault(r["provenance"], set()).add(int(f))
    # an author's lures are never fitted and checked at once
    assert all(len(f) == 1 for f in by_author.values())
    assert sorted(set(folds.tolist())) == [0, 1, 2, 3, 4]
    assert max(np.bincount(folds)) <= 3 * 20  # 12 authors dealt round-robin: 2 or 3 authors per fold
    assert (author_folds(records, 5, seed=3) == folds).all()  # deterministic
    # without authors (a user's corpus with one provenance), messages are dealt instead
    anonymous = [{"text": f"t{i}"} for i in range(50)]
    assert len(set(author_folds(anonymous, 5, seed=3).tolist())) == 5


def test_no_head_warm_starts_from_a_fit_that_saw_rows_it_leaves_out(
    tiny_model_dir, tiny_corpus, traffic, tmp_path, monkeypatch
) -> None:
    """The out-of-author check reads each fold by a head that never saw its authors: not even through the head
    its search started from (a start fitted on the left-out authors would read them as easy). A head starts
    only from a head of its own setting (width and L2)."""
    fitted: dict[int, tuple[frozenset, int, float]] = {}  # id of a head → (rows it was fitted on, width, L2)
    heads = []  # every head stays alive, so that no id is reused
    starts: list[tuple[tuple, tuple]] = []  # (the start's fit, this fit)
    real_fit = adapt.fit_residual_head

    def spy(x, y, w, anchor, l2, hidden, start=None, **kwargs):
        this = (frozenset(row.tobytes() for row in x), hidden, l2)
        head = real_fit(x, y, w, anchor, l2, hidden, start, **kwargs)
        if start is not None:
            starts.append((fitted[id(start)], this))
        fitted[id(head)] = this
        heads.append(head)
        return head

    monkeypatch.setattr(adapt, "fit_residual_head", spy)
    adapt.main(
        AdaptArguments(
            traffic=str(traffic),
            output=str(tmp_path / "model"),
            base_model=str(tiny_model_dir),
            corpus=str(tiny_corpus),
            threads=1,
            traffic_weights=[1.0, 8.0],
            heads=["4:1", "8:0.3"],
            check_folds=2,
        )
    )
    # 2 settings × 2 weights and the final fit, each 1 head on all authors + 2 fold heads; the first weight of
    # each setting starts afresh, the rest warm-start
    assert len(fitted) == 15 and len(starts) == 9
    assert all(before[0] <= now[0] and before[1:] == now[1:] for before, now in starts)
