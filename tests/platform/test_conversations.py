"""Streamed conversations in the platform store (SQLite and PostgreSQL): bounded state, duplicate ids, expiry,
concurrent writers, and a tipping message feeding risk and the review queue."""

from __future__ import annotations

import threading

import pytest

from fanzha.models import Busy, ConversationState, DecisionThresholds, Detector, InputError, Message
from fanzha.platform import ItemRef, Platform
from fanzha.platform.conversations import DuplicateMessage

from .db_fixtures import db_url  # noqa: F401 (fixture)


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def detector(tiny_conversation_model) -> Detector:
    return Detector.load(tiny_conversation_model, threads=1)  # one per test: a test may move its thresholds


@pytest.fixture
def platform(detector, db_url, tmp_path):  # noqa: F811
    clock = Clock()
    p = Platform(detector, db_url, clock=clock, review_dir=tmp_path / "review", audit_sample=1.0)
    p.test_clock = clock
    yield p
    p.close()


def chat(n: int) -> list[Message]:
    lines = [
        "恭喜你成为幸运粉丝",
        "哥哥签名照免费送",
        "真的假的",
        "加管理员扣扣 2863 11907 登记地址",
        "登记先转29元认证费",
    ]
    return [Message(f"user{i % 3}", lines[i % len(lines)], id=f"m{i}", ts=100.0 + i) for i in range(n)]


def test_a_streamed_conversation_ends_where_the_whole_one_does(platform, detector) -> None:
    messages = chat(5)
    for m in messages:
        last = platform.conversation_message("c1", m, account_id="u1", group_id="g1")
    whole = detector.classify_conversation(messages)
    assert last.verdict.fraud_score == whole.fraud_score
    assert last.verdict.trigger_index == whole.trigger_index
    assert last.verdict.message_count == 5 and last.message.index == 4
    assert [m.to_dict() for m in last.verdict.messages] == [m.to_dict() for m in whole.messages]


def test_only_the_tipping_message_carries_the_alert(platform) -> None:
    # a review threshold the tiny head's scores cross on the third message, whatever they are
    scorer = platform.detector.conversations
    state = ConversationState()
    for m in chat(3):
        state, _ = scorer.step(state, m)
    scorer.decide = DecisionThresholds(review=round(state.score, 4), block=1.0).decide
    answers = [platform.conversation_message("c2", m, account_id="u2", group_id="g2") for m in chat(10)]
    tipped = [a for a in answers if a.tipped]
    assert len(tipped) == 1 and tipped[0].message.index <= 2 and answers[-1].verdict.flagged
    alert = tipped[0].to_dict()["alert"]
    assert alert["message_index"] == tipped[0].verdict.trigger_index and alert["conversation_id"] == "c2"
    assert all("alert" not in a.to_dict() for a in answers if not a.tipped)
    # the flagged conversation counts for its account and group, once
    assert platform.entity_risk("account", "u2")["flagged"] == 1
    assert platform.entity_risk("group", "g2")["flagged"] == 1
    # and it is a case for moderators, with the chat and each message's stage
    case = platform.case(alert["case_id"])
    assert case["kind"] == "conversation"
    assert [m["index"] for m in case["conversation"]["messages"]][-1] == alert["message_index"]
    assert all("stage" in m for m in case["conversation"]["messages"])
    # evidence spans point into the kept transcript, at their message's place
    assert case["evidence"] and all(
        case["text"][e["start"] : e["end"]] == e["text"] for e in case["evidence"]
    )


def test_a_repeated_message_id_is_refused_and_not_scored_again(platform) -> None:
    m = chat(2)
    platform.conversation_message("c3", m[0])
    first = platform.conversation_message("c3", m[1])
    with pytest.raises(DuplicateMessage, match="already received in conversation 'c3' \\(as message 1\\)"):
        platform.conversation_message("c3", Message("x", "别的内容", id="m1"))
    again = platform.conversation_message("c3", Message("x", "下一条", id="m9"))
    assert again.message.index == 2 and first.message.index == 1  # the refused one took no place


def test_an_idle_conversation_starts_afresh(platform) -> None:
    for m in chat(3):
        platform.conversation_message("c4", m)
    platform.test_clock.t += platform.conversations.idle_s + 1
    answer = platform.conversation_message("c4", Message("a", "在吗", id="m0"))  # m0 is a new id again
    assert answer.restarted and answer.message.index == 0 and answer.verdict.message_count == 1
    platform.test_clock.t += platform.conversations.idle_s + 1
    assert platform.conversations.purge() == 0  # idle once: its row stays, so a late message says "restarted"
    platform.test_clock.t += platform.conversations.idle_s
    assert platform.conversations.purge() == 1  # idle twice as long: gone


def test_out_of_order_timestamps_are_kept_and_named(platform) -> None:
    platform.conversation_message("c5", Message("a", "周末去图书馆吗", id="a", ts=300))
    answer = platform.conversation_message("c5", Message("b", "好啊", id="b", ts=100))
    assert answer.message.index == 1
    assert any("message 1" in w and "arrival order" in w for w in answer.verdict.warnings)


def test_the_stored_state_does_not_grow_with_the_conversation(platform) -> None:
    sizes = []
    for m in chat(60):
        platform.conversation_message("c6", m)
        with platform.database.read() as conn:
            sizes.append(
                len(conn.execute(platform.conversations.conversations.select()).first().state)  # one row
            )
    assert max(sizes[30:]) <= 1.1 * max(sizes[15:30])


def test_concurrent_messages_of_one_conversation_all_count(platform) -> None:
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            platform.conversation_message("c7", Message(f"u{i}", f"第{i}条 大家好", id=f"t{i}"))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    last = platform.conversation_message("c7", Message("z", "最后一条", id="last"))
    assert last.message.index == 6  # six before it, none lost, none twice


def test_a_whole_conversation_through_the_platform(platform) -> None:
    scored = platform.classify_conversation(chat(5), ItemRef(id="w1", account_id="u8"))
    d = scored.to_dict()
    assert d["id"] == "w1" and d["account_id"] == "u8" and len(d["messages"]) == 5
    assert "alert" not in d  # a whole conversation has no stream to tip


def test_long_and_anonymous_conversations_still_feed_risk_once_each(platform) -> None:
    from fanzha.platform.facade import conversation_item_id

    assert conversation_item_id(None, "m3") is None  # never taken for another anonymous chat's replay
    long_id = conversation_item_id("c" * 256, "m" * 256)
    assert len(long_id) <= 256 and long_id == conversation_item_id("c" * 256, "m" * 256)
    scorer = platform.detector.conversations
    scorer.decide = DecisionThresholds(review=0.0, block=1.0).decide  # every chat flags at its first message
    for _ in range(2):  # two anonymous chats whose tipping messages share an id: two flagged items
        platform.classify_conversation(chat(2), ItemRef(account_id="anon-u"))
    assert platform.entity_risk("account", "anon-u")["flagged"] == 2
    platform.conversation_message("x" * 256, Message("a", "你好", id="y" * 256), account_id="long-u")
    assert platform.entity_risk("account", "long-u")["flagged"] == 1


def test_control_characters_in_ids_are_refused(platform) -> None:
    with pytest.raises(InputError, match="conversation_id must not contain control characters"):
        platform.conversation_message("a\x00b", Message("a", "你好", id="1"))
    with pytest.raises(InputError, match="message id must not contain control characters"):
        platform.conversation_message("ok", Message("a", "你好", id="1\x00"))


def test_a_conversation_that_keeps_losing_the_race_is_refused_as_busy(platform, monkeypatch) -> None:
    """Every write finds that another message got in first: after ATTEMPTS tries, Busy (503), nothing stored."""
    book = platform.conversations
    scorer = platform.detector.conversations
    real_step = scorer.step
    rival = iter(range(1, 100))

    def step_while_another_writes(state, message, **kw):
        result = real_step(state, message, **kw)
        book.forget("busy")  # another worker writes the conversation meanwhile, every time
        t = platform.test_clock.t + next(rival)
        book._store("busy", None, False, 0, ConversationState(count=1), Message("z", "抢先"), None, None, t)
        return result

    monkeypatch.setattr(scorer, "step", step_while_another_writes)
    monkeypatch.setattr("fanzha.platform.conversations.time.sleep", lambda s: None)
    with pytest.raises(Busy, match="send it again"):
        platform.conversation_message("busy", Message("a", "第一条", id="first"))
    with platform.database.read() as conn:  # the refused message left no trace
        assert not conn.execute(book.ids.select().where(book.ids.c.message_id == "first")).all()


def test_old_message_ids_are_forgotten_so_the_table_stays_bounded(platform, monkeypatch) -> None:
    monkeypatch.setattr("fanzha.platform.conversations.SEEN_IDS", 100)
    for i in range(260):
        platform.conversation_message("long", Message(f"u{i % 4}", f"第{i}条 在吗", id=f"id{i}"))
    with platform.database.read() as conn:
        ids = conn.execute(platform.conversations.ids.select()).all()
    assert len(ids) <= 200 and min(r.idx for r in ids) >= 100
    with pytest.raises(DuplicateMessage):
        platform.conversation_message("long", Message("u", "重发", id="id259"))


def test_a_state_in_another_layout_starts_the_conversation_afresh(platform) -> None:
    platform.conversation_message("old", Message("a", "你好", id="1"))
    with platform.database.write() as conn:
        conn.execute(
            platform.conversations.conversations.update().values(state='{"count": 7, "window": [[1, 2]]}')
        )
    answer = platform.conversation_message("old", Message("a", "还在吗", id="1"))  # the old ids went too
    assert answer.restarted and answer.message.index == 0


def test_a_conversation_keeps_its_account_group_and_start_until_it_restarts(platform) -> None:
    table = platform.conversations.conversations
    clock = platform.test_clock
    messages = chat(5)

    def stored() -> tuple:
        with platform.database.read() as conn:
            row = conn.execute(table.select().where(table.c.conversation_id == "c-ids")).first()
        return row.account_id, row.group_id, row.message_count, row.created_at

    started = clock.t
    platform.conversation_message("c-ids", messages[0], account_id="u1", group_id="g1")
    clock.t += 10
    platform.conversation_message("c-ids", messages[1])  # names neither: the stored ones stay
    assert stored() == ("u1", "g1", 2, started)  # created_at is the first message's, not the latest's
    clock.t += 10
    platform.conversation_message("c-ids", messages[2], account_id="u9")
    assert stored() == ("u9", "g1", 3, started)
    clock.t += platform.conversations.idle_s + 1  # idle: the next message starts the chat afresh
    assert platform.conversation_message("c-ids", messages[3]).restarted
    assert stored() == ("u9", "g1", 1, clock.t)
