from fanzha.models.evidence import extract


def kinds(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in extract(text):
        out.setdefault(e.kind, []).append(e.value)
    return out


def test_handles_amounts_and_terms_with_original_spans() -> None:
    text = (
        "恭喜你成为幸运粉丝！免費領取簽名照，加扣扣 1 2 3 4 5 6 7 8 或進粉絲群 87654321，只需支付激活費¥29.9"
    )
    found = extract(text)
    by_kind = {e.kind: e for e in found}
    assert by_kind["qq"].value == "12345678"
    assert by_kind["qq"].text == "1 2 3 4 5 6 7 8"
    assert by_kind["qq_group"].value == "87654321"
    assert by_kind["fee_term"].text == "激活費"
    assert by_kind["amount"].value == "¥29.9"
    for e in found:
        assert text[e.start : e.end] == e.text


def test_wechat_phone_url() -> None:
    k = kinds("加薇❤信ａｂｃ_１２３４，或打13812345678，网址 https://wzry-vip.cn/get?id=1 详情 t.cn/A6x9Kz")
    assert k["wechat"] == ["abc_1234"]
    assert k["phone"] == ["13812345678"]
    assert k["url"] == ["https://wzry-vip.cn/get?id=1", "t.cn/a6x9kz"]


def test_amount_forms() -> None:
    found = [e for e in extract("先交50块钱，押金200元，再付￥18") if e.kind == "amount"]
    assert [e.value for e in found] == ["50块钱", "200元", "¥18"]  # canonical (NFKC) value …
    assert found[-1].text == "￥18"  # … and the text as written


def test_task_terms() -> None:
    assert set(kinds("点赞一单返佣3元，日结")["task_term"]) == {"点赞", "返佣", "日结"}


def test_benign_text_has_no_handles() -> None:
    k = kinds("明天下午三点数学考试，大家记得带好文具")
    assert not {"qq", "qq_group", "wechat", "phone", "url"} & set(k)


def test_digits_inside_a_url_are_not_a_phone_number() -> None:
    k = kinds("打开 https://x-vip.cn/13812345678")
    assert "phone" not in k


def test_group_numbers_need_a_group_handle_context() -> None:
    assert "qq_group" not in kinds("群里有100000人在看直播")
    assert kinds("进群 735122860 领")["qq_group"] == ["735122860"]


def test_no_evidence_across_a_clause_boundary() -> None:
    assert "giveaway_term" not in kinds("他说免费，领导不同意")
