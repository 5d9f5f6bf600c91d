"""Conversation scoring: validation, the fold (whole = streamed), bounded state, context from kept readings."""

from __future__ import annotations

import numpy as np
import pytest

from fanzha.models import (
    ConversationState,
    DecisionThresholds,
    Detector,
    InputError,
    LimitExceeded,
    Message,
    TextClassifier,
)
from fanzha.models.conversation import (
    CONTEXT_MESSAGES,
    MAX_MESSAGES,
    STAGES,
    STREAM_WINDOW,
    ContextReader,
    MessageReading,
    conversation_from_dict,
)

CHAT = [
    Message("星光应援站", "恭喜你成为本月幸运粉丝🎉", id="m1", ts=100),
    Message("星光应援站", "哥哥亲签照免费寄，名额就10个", id="m2", ts=160),
    Message("小鹿", "真的假的 我也要", id="m3", ts=200),
    Message("管理-阿豪", "加管理员扣扣 2863 11907 登记地址", id="m4", ts=260),
    Message("管理-阿豪", "登记先转29元认证费，寄出后原路退", id="m5", ts=300),
]


@pytest.fixture
def detector(tiny_conversation_model) -> Detector:
    return Detector.load(tiny_conversation_model, threads=1)


def test_a_conversation_gets_a_verdict_per_message(detector) -> None:
    detector.conversations.decide = DecisionThresholds(
        review=0.0, block=1.0
    ).decide  # flagged: evidence shows
    v = detector.classify_conversation(CHAT)
    assert len(v.messages) == len(CHAT) and v.message_count == len(CHAT)
    assert [m.index for m in v.messages] == list(range(len(CHAT)))
    assert [m.id for m in v.messages] == ["m1", "m2", "m3", "m4", "m5"]
    assert all(m.stage in STAGES and 0 <= m.fraud_score <= 1 for m in v.messages)
    # the conversation's score is the running maximum of its score after each message
    after = [m.conversation_score for m in v.messages]
    assert after == sorted(after) and v.fraud_score == after[-1]
    assert v.decision == "review" and v.trigger_index == 0
    d = v.to_dict()
    assert set(d) >= {"fraud_score", "scores", "labels", "decision", "evidence", "trigger_index", "messages"}
    assert d["evidence"] and all(
        CHAT[e["message_index"]].text[e["start"] : e["end"]] == e["text"] for e in d["evidence"]
    )


def test_streaming_message_by_message_gives_the_whole_conversations_verdict(detector) -> None:
    scorer = detector.conversations
    whole = detector.classify_conversation(CHAT)
    state = ConversationState()
    for m in CHAT:
        state = ConversationState.from_json(
            state.to_json()
        )  # as the platform's store keeps it between messages
        state, _ = scorer.step(state, m)
    streamed = scorer.verdict(state)
    assert streamed.fraud_score == whole.fraud_score
    assert streamed.trigger_index == whole.trigger_index
    assert [m.to_dict() for m in streamed.messages] == [m.to_dict() for m in whole.messages]


def test_a_stream_longer_than_its_window_still_ends_where_the_whole_chat_does(detector) -> None:
    chat = [
        Message(f"u{i % 3}", f"{CHAT[i % len(CHAT)].text} ({i})", id=f"x{i}")
        for i in range(3 * STREAM_WINDOW)
    ]
    scorer = detector.conversations
    whole = detector.classify_conversation(chat)
    state = ConversationState()
    for m in chat:
        state, _ = scorer.step(ConversationState.from_json(state.to_json()), m)
    streamed = scorer.verdict(state)
    assert (streamed.fraud_score, streamed.trigger_index, streamed.scores) == (
        whole.fraud_score,
        whole.trigger_index,
        whole.scores,
    )
    # the stream answers with its recent window, which is the whole chat's tail
    assert [m.to_dict() for m in streamed.messages] == [m.to_dict() for m in whole.messages[-STREAM_WINDOW:]]
    assert streamed.message_count == len(chat)


def test_the_state_stays_bounded_however_long_the_chat(detector) -> None:
    scorer = detector.conversations
    state = ConversationState()
    sizes = []
    for i in range(90):
        state, _ = scorer.step(
            state, Message(f"user{i % 7}", f"第{i}条消息：今天的作业写完了吗，明天交到学习委员那里")
        )
        sizes.append(len(state.to_json()))
    assert state.count == 90
    assert max(sizes[40:]) <= 1.1 * max(sizes[20:40])  # no growth once the window is full


@pytest.mark.parametrize(
    "messages, error, match",
    [
        ([], InputError, "no messages"),
        ([Message("a", "你好")] * (MAX_MESSAGES + 1), LimitExceeded, "limit is 200"),
        ([Message("a", "你好"), Message("b", "   ")], InputError, "message 1: text is empty"),
        ([Message("a", "你好", id="x"), Message("b", "在吗", id="x")], InputError, "repeats message 0"),
    ],
)
def test_bad_conversations_are_refused_clearly(detector, messages, error, match) -> None:
    with pytest.raises(error, match=match):
        detector.classify_conversation(messages)


def test_a_message_of_emoji_alone_is_read_in_its_chat(detector) -> None:
    # 👍 has nothing to score as a text of its own (validate_text refuses it), but in a chat it is a message
    with pytest.raises(InputError, match="no readable characters"):
        detector.classify_text("👍")
    verdict = detector.classify_conversation([Message("a", "周六去图书馆吗"), Message("b", "👍")])
    assert verdict.message_count == 2 and [m.index for m in verdict.messages] == [0, 1]


def test_out_of_order_timestamps_are_kept_in_arrival_order_and_named(detector) -> None:
    chat = [
        Message("a", "周末去图书馆吗", ts=300),
        Message("b", "好啊 几点", ts=100),
        Message("a", "下午两点", ts=400),
    ]
    v = detector.classify_conversation(chat)
    assert [m.index for m in v.messages] == [0, 1, 2]
    assert len(v.warnings) == 1 and "message 1" in v.warnings[0] and "arrival order" in v.warnings[0]


@pytest.mark.parametrize(
    "obj, match",
    [
        ({"id": 1}, "no `messages`"),
        ({"messages": "hi"}, "must be a list"),
        ({"messages": [{"sender": "a"}]}, "message 0: has no text"),
        ({"messages": [{"text": "hi"}]}, "message 0: sender"),
        ({"messages": [{"sender": "a", "text": "hi", "ts": "noon"}]}, "ts must be a number"),
    ],
)
def test_input_objects_name_what_is_wrong(obj, match) -> None:
    with pytest.raises(InputError, match=match):
        conversation_from_dict(obj)


def test_the_state_keeps_the_last_readings_as_the_next_message_reads_them(tiny_model_dir) -> None:
    reader = ContextReader(TextClassifier.load(tiny_model_dir, threads=1))
    texts = [
        "恭喜你成为幸运粉丝",
        "签名照免费送",
        "加管理员扣扣",
        "登记先转29元",
        "好的",
        "谢谢",
        "在吗",
        "收到",
    ]
    encoded = reader.read(texts)
    assert [len(e.vector) for e in encoded] == [encoded[0].vector.shape[0]] * len(texts)
    state, rows = ConversationState(), []
    for i, e in enumerate(encoded):
        rows.append(reader.next_row(state, f"s{i % 3}", e))
    assert len(state.context) == CONTEXT_MESSAGES - 1  # bounded: only the last readings are kept
    assert [sender for sender, *_ in state.context] == [f"s{i % 3}" for i in range(3, 8)]
    sender, kept = MessageReading.from_json(state.context[-1])
    np.testing.assert_array_equal(kept.vector, encoded[-1].vector)  # float16-exact: stored without loss
    # a message's row: the mean vector of the messages before it, then its own vector
    dim = encoded[0].vector.shape[0]
    np.testing.assert_allclose(rows[2][:dim], (encoded[0].vector + encoded[1].vector) / 2, atol=1e-6)
    np.testing.assert_array_equal(rows[2][dim : 2 * dim], encoded[2].vector)
    assert not rows[0][:dim].any()  # the first message has no context
