import pytest

from fanzha.models.normalize import normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("加薇信领皮肤", "加微信领皮肤"),
        ("加V信 ａｂｃ１２３", "加微信 abc123"),
        ("vx：fan888", "微信:fan888"),
        ("扣扣 1 2 3 4 5 6 7 8", "qq 12345678"),
        ("🐧群 ①②③④⑤⑥", "qq群 123456"),
        ("❶❷❸❹❺❻", "123456"),
        ("1\ufe0f\u20e32\ufe0f\u20e33\ufe0f\u20e3", "123"),
        ("激\u200b活\u200d费", "激活费"),
        ("加-微-信", "加微信"),
        ("jie冻费", "解冻费"),
        ("shua单返li", "刷单返利"),
        ("免費領取簽名照", "免费领取签名照"),
        ("🎁免费🎁领🔥", "免费领"),
        ("加裙领取", "加群领取"),
        ("交bao证金500元", "交保证金500元"),
        ("加🅅🅇 abc12345", "加微信 abc12345"),
        ("138-1234-5678", "13812345678"),
    ],
)
def test_evasions_are_undone(raw: str, expected: str) -> None:
    assert normalize(raw).text == expected


def test_ordinary_text_survives() -> None:
    text = "今天考试考了98分，开心！明天3.5元买奶茶 2 杯"
    out = normalize(text).text
    assert "3.5元" in out and "98分" in out and "2 杯" in out


def test_offsets_point_back_to_the_original() -> None:
    raw = "恭喜🎉！加薇❤信：ａｂｃ１２３"
    norm = normalize(raw)
    start = norm.text.index("微信")
    a, b = norm.to_original(start, start + 2)
    assert raw[a:b] == "薇❤信"
    start = norm.text.index("abc123")
    a, b = norm.to_original(start, start + 6)
    assert raw[a:b] == "ａｂｃ１２３"
    assert len(norm.starts) == len(norm.text) == len(norm.ends)


def test_rejects_non_strings() -> None:
    with pytest.raises(TypeError):
        normalize(b"bytes")  # type: ignore[arg-type]


def test_empty_and_long_text() -> None:
    assert normalize("").text == ""
    long = "免费领取皮肤加薇信 " * 20_000
    out = normalize(long)
    assert out.text.count("微信") == 20_000


@pytest.mark.parametrize(
    "text",
    ["你好,明天见:周一", "老师很有威信", "比分1 2 3", "先交① ⓪元"],
)
def test_ordinary_punctuation_words_and_short_numbers_are_kept(text: str) -> None:
    out = normalize(text).text
    assert "微信" not in out
    assert out.count(",") == text.count(",") and out.count(":") == text.count(":")
    assert not any(len(run) >= 5 for run in __import__("re").findall(r"\d+", out))


def test_full_width_punctuation_survives_between_chinese() -> None:
    assert normalize("你好，明天见：周一").text == "你好,明天见:周一"
