import shutil

import numpy as np
import pytest

from fanzha.models import Detector, InputError, ModelError, TextClassifier
from fanzha.models.labels import DecisionThresholds


@pytest.fixture(scope="module")
def clf(tiny_model_dir) -> TextClassifier:
    return TextClassifier.load(tiny_model_dir, threads=1)


def test_windows_cover_long_text_with_overlap(clf) -> None:
    text = "免费领取签名照" * 60
    windows = clf.windows(text)
    assert len(windows) > 2
    assert all(len(w) <= clf.window <= clf.max_length for w in windows)
    assert all(w[0] == windows[0][0] and w[-1] == windows[0][-1] for w in windows)  # specials on every window
    body = clf.tokenizer.encode(text, add_special_tokens=False).ids
    size = clf.window - 2  # tokens of text per window
    half = size // 2
    bodies = [w[1:-1] for w in windows]
    assert all(len(b) == size for b in bodies[:-1])  # every window but the last is full
    assert bodies[0] == body[:size]
    # neighbouring windows share half a window: each starts half a window after the one before it
    for i, (a, b) in enumerate(zip(bodies, bodies[1:], strict=False)):
        assert b == body[(i + 1) * half : (i + 1) * half + size], i
        assert a[half:] == b[: len(a) - half] and len(a) - half >= size // 2, i
    assert (
        bodies[-1][-1] == body[-1] and len(bodies[-1]) > size - half
    )  # the last window reaches the end of the text
    # so every phrase up to half a window long lies whole inside some window
    for start in range(0, len(body) - half + 1):
        phrase = body[start : start + half]
        assert any(b[j : j + half] == phrase for b in bodies for j in range(len(b) - half + 1)), start


def test_long_text_scores_are_the_max_over_its_windows(tiny_model_dir) -> None:
    fp32 = TextClassifier(
        tiny_model_dir / "work" / "model.fp32.onnx", tiny_model_dir / "tokenizer.json", threads=1
    )
    text = "今天天气很好我们去公园散步" * 40 + "免费领取签名照加QQ群83726154"
    windows = fp32.windows(text)
    assert len(windows) > 2
    per_window = np.stack(
        [fp32.run_logits(np.array([w]), np.ones((1, len(w)), dtype=np.int64))[0] for w in windows]
    )
    expected = (1 / (1 + np.exp(-per_window))).max(axis=0)
    np.testing.assert_allclose(fp32.predict([text])[0], expected, atol=1e-5)


def test_batch_equals_one_by_one(clf, tiny_model_dir) -> None:
    texts = ["免费领取签名照", "明天考试", "刷单返利日结" * 30, "加微信"]
    fp32 = TextClassifier(
        tiny_model_dir / "work" / "model.fp32.onnx", tiny_model_dir / "tokenizer.json", threads=1
    )
    for model, atol in ((fp32, 1e-5), (clf, 0.02)):  # int8 quantises activations per batch: close, not equal
        batched = model.predict(texts)
        single = np.stack([model.predict([t])[0] for t in texts])
        np.testing.assert_allclose(batched, single, atol=atol)


def test_mismatched_tokenizer_is_refused(tiny_model_dir, tmp_path) -> None:
    shutil.copy(tiny_model_dir / "model.onnx", tmp_path / "model.onnx")
    (tmp_path / "tokenizer.json").write_text(
        (tiny_model_dir / "tokenizer.json").read_text().replace("<unk>", "<UNK>")
    )
    with pytest.raises(ModelError, match="SHA-256"):
        TextClassifier.load(tmp_path)


def test_missing_and_corrupt_model(tmp_path, tiny_model_dir) -> None:
    with pytest.raises(ModelError, match="not found"):
        TextClassifier.load(tmp_path)
    (tmp_path / "model.onnx").write_bytes(b"not an onnx file")
    shutil.copy(tiny_model_dir / "tokenizer.json", tmp_path / "tokenizer.json")
    with pytest.raises(ModelError, match="cannot load"):
        TextClassifier.load(tmp_path)


def test_detector_input_errors(clf) -> None:
    detector = Detector(clf, max_chars=1000)
    for bad, message in [
        ("", "empty"),
        ("   \n\t", "empty"),
        ("字" * 1001, "limit"),
        (None, "string"),
        ("\u200b\u200b", "readable"),
        ("🎁🎁🎁", "readable"),
    ]:
        with pytest.raises(InputError, match=message):
            detector.classify_text(bad)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="item 1"):
        detector.classify_texts(["好", ""])


def test_detector_decisions_follow_thresholds(clf) -> None:
    text = "免费领取签名照"
    score = Detector(clf).classify_text(text).fraud_score
    assert Detector(clf, DecisionThresholds(review=0.0, block=0.0)).classify_text(text).decision == "block"
    assert Detector(clf, DecisionThresholds(review=1.0, block=1.0)).classify_text(text).decision == (
        "block" if score >= 1.0 else "pass"
    )
    assert Detector(clf, DecisionThresholds(review=0.0, block=1.0)).classify_text(text).decision == (
        "block" if score >= 1.0 else "review"
    )


def test_a_score_between_review_and_block_gives_review(clf) -> None:
    t = DecisionThresholds(review=0.5, block=0.9)
    assert [t.decide(s) for s in (0.0, 0.4999, 0.5, 0.7, 0.8999, 0.9, 1.0)] == [
        "pass",
        "pass",
        "review",
        "review",
        "review",
        "block",
        "block",
    ]
    # through the Detector, with the thresholds either side of the real score
    text = "恭喜中奖，先交激活费"
    score = Detector(clf).classify_text(text).fraud_score
    assert 0.0 < score < 1.0
    verdict = Detector(clf, DecisionThresholds(review=score / 2, block=(score + 1) / 2)).classify_text(text)
    assert verdict.decision == "review" and verdict.fraud_score == score
    assert verdict.labels == [
        k for k, s in verdict.scores.items() if s >= clf.thresholds[k]
    ]  # a flagged verdict names its lures
    assert (
        Detector(clf, DecisionThresholds(review=score, block=score)).classify_text(text).decision == "block"
    )  # block wins the tie


def test_verdict_is_consistent(clf) -> None:
    v = Detector(clf).classify_text("恭喜中奖，先交激活费")
    assert v.fraud_score >= max(v.scores.values())
    assert set(v.labels) <= set(v.scores)
    passed = Detector(clf, DecisionThresholds(review=1.0, block=1.0)).classify_text("恭喜中奖，先交激活费")
    assert passed.decision == "pass" and passed.labels == []  # a passed message names no kind of lure
    flagged = Detector(clf, DecisionThresholds(review=0.0, block=1.0)).classify_text("恭喜中奖，先交激活费")
    assert flagged.labels == [k for k, s in flagged.scores.items() if s >= clf.thresholds[k]]
    assert set(v.timings) == {"normalize_ms", "classify_ms", "evidence_ms"}


def test_threshold_validation() -> None:
    with pytest.raises(ValueError):
        DecisionThresholds(review=0.9, block=0.5)


def test_thresholds_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("FANZHA_REVIEW_THRESHOLD", "0.95")
    monkeypatch.delenv("FANZHA_BLOCK_THRESHOLD", raising=False)
    t = DecisionThresholds.from_env(review=0.5)
    assert (t.review, t.block) == (0.95, 0.95)  # block follows a review threshold set above it
    monkeypatch.setenv("FANZHA_BLOCK_THRESHOLD", "0.99")
    assert DecisionThresholds.from_env(review=0.5).block == 0.99
