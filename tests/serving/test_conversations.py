"""POST /classify_conversation and /conversation_message on the committed model, bad input included."""

from __future__ import annotations

import functools

import pytest

SEED_CHAT = [
    {"sender": "星光应援站", "text": "恭喜你成为本月幸运粉丝🎉", "id": "m1", "ts": 100},
    {"sender": "星光应援站", "text": "哥哥亲签照免费送，名额就10个", "id": "m2", "ts": 160},
    {"sender": "管理-阿豪", "text": "加管理员QQ 286311907 登记地址", "id": "m3", "ts": 260},
    {"sender": "管理-阿豪", "text": "登记先转29元认证费，寄出后原路退", "id": "m4", "ts": 300},
]


def test_classify_conversation_answers_with_stages_and_trigger(client) -> None:
    r = client.post(
        "/classify_conversation", json={"messages": SEED_CHAT, "id": "chat-1", "account_id": "acc-9"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == "chat-1" and body["decision"] in ("review", "block")
    assert body["trigger_index"] is not None and body["trigger_index"] <= 3
    assert [m["index"] for m in body["messages"]] == [0, 1, 2, 3]
    assert body["messages"][0]["stage"] == "bait" and body["messages"][3]["stage"] == "payment_demand"
    assert any(e["message_index"] == 2 and e["kind"] == "qq" for e in body["evidence"])
    assert body["model_tag"].startswith("fanzha")


def test_streamed_messages_tip_once_and_carry_the_alert(client) -> None:
    answers = []
    for m in SEED_CHAT:
        r = client.post(
            "/conversation_message",
            json={
                "conversation_id": "live-1",
                "message": m,
                "account_id": "acc-live",
                "group_id": "grp-live",
            },
        )
        assert r.status_code == 200, r.text
        answers.append(r.json())
    tipped = [a for a in answers if a["alert"] is not None]
    assert len(tipped) == 1
    alert = tipped[0]["alert"]
    assert alert["kind"] == "conversation_flagged" and alert["message_id"] == tipped[0]["message"]["id"]
    assert answers[-1]["message_count"] == 4 and answers[-1]["trigger_index"] == alert["message_index"]


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"messages": []}, 400, "at least 1"),
        ({"messages": [{"sender": "a", "text": "你好"}] * 201}, 400, "at most 200"),
        ({"messages": [{"sender": "a"}]}, 400, "text"),
        ({"messages": [{"sender": "a", "text": "   "}]}, 400, "empty"),
        ({"messages": [{"sender": "  ", "text": "你好"}]}, 400, "sender is empty"),
        (
            {
                "messages": [
                    {"sender": "a", "text": "你好", "id": "x"},
                    {"sender": "b", "text": "在吗", "id": "x"},
                ]
            },
            400,
            "repeats",
        ),
    ],
)
def test_bad_conversations_get_a_clear_4xx(client, body, status, words) -> None:
    r = client.post("/classify_conversation", json=body)
    assert r.status_code == status and words in r.text


def test_a_message_of_emoji_alone_is_part_of_the_chat(client) -> None:
    r = client.post("/classify_text", json={"items": [{"text": "👍"}]})
    assert r.status_code == 400 and "no readable characters" in r.text
    m = {"sender": "b", "text": "👍👍", "id": "e-1"}
    r = client.post("/conversation_message", json={"conversation_id": "live-emoji", "message": m})
    assert r.status_code == 200 and r.json()["message_count"] == 1


def test_a_repeated_stream_message_id_is_a_409(client) -> None:
    m = {"sender": "a", "text": "周末一起去图书馆吗", "id": "dup-1"}
    assert (
        client.post("/conversation_message", json={"conversation_id": "live-dup", "message": m}).status_code
        == 200
    )
    r = client.post("/conversation_message", json={"conversation_id": "live-dup", "message": m})
    assert r.status_code == 409 and "already received" in r.text


def test_a_stream_message_needs_an_id_and_text(client) -> None:
    r = client.post(
        "/conversation_message", json={"conversation_id": "c", "message": {"sender": "a", "text": "hi"}}
    )
    assert r.status_code == 400 and "id" in r.text
    r = client.post(
        "/conversation_message", json={"conversation_id": "c", "message": {"sender": "a", "id": "1"}}
    )
    assert r.status_code == 400 and "text" in r.text


def test_out_of_order_times_are_kept_and_said(client) -> None:
    for m, expect in (
        ({"sender": "a", "text": "几点到", "id": "1", "ts": 500}, 0),
        ({"sender": "b", "text": "三点", "id": "2", "ts": 400}, 1),
    ):
        r = client.post("/conversation_message", json={"conversation_id": "live-ooo", "message": m})
        assert r.status_code == 200 and r.json()["message"]["index"] == expect
    assert "arrival order" in r.json()["warnings"][0]


@pytest.fixture
def hand_offs(client, monkeypatch):
    """The serving instance, and the names of what its stream handler hands to a thread (the store's and the
    review queue's purges are held off, so that only the messages decide)."""
    import anyio.to_thread
    import bentoml

    instance = bentoml.get_current_service()
    monkeypatch.setattr(instance.platform.conversations, "purge_due", lambda: False)
    monkeypatch.setattr(instance.platform.review, "purge_due", lambda: False)
    names, run_sync = [], anyio.to_thread.run_sync

    async def spy(func, *args, **kwargs):
        inner = func
        while isinstance(inner, functools.partial):
            inner = inner.func
        names.append(inner.__name__)
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", spy)
    return instance, names


def stream(client, conversation_id: str, messages: list[dict], **ids) -> list[dict]:
    answers = []
    for m in messages:
        r = client.post(
            "/conversation_message", json={"conversation_id": conversation_id, "message": m, **ids}
        )
        assert r.status_code == 200, r.text
        answers.append(r.json())
    return answers


def test_chat_lines_are_scored_on_the_event_loop_and_the_rest_in_a_thread(client, hand_offs) -> None:
    """A line up to inline_chars (normalised) is read on the worker's event loop; a longer one, or one that grows
    past it when normalised (U+FDFA is 18 characters in NFKC), is read and followed up in a thread."""
    instance, names = hand_offs
    n = instance.inline_chars
    assert n == 128  # the default on a SQLite file
    texts = ["周末去图书馆吗", "图" * n, "书" * (n + 1), "\ufdfa" * 8]
    stream(
        client, "live-length", [{"sender": "班长", "text": t, "id": f"len-{i}"} for i, t in enumerate(texts)]
    )
    assert names == ["conversation_message"] * 2  # the n + 1 line and the one that grew


def test_a_tip_follows_up_inline_only_when_nothing_can_wait(client, hand_offs, monkeypatch) -> None:
    instance, names = hand_offs
    # every tip is kept for moderators, whether the model decides it `review` or `block` (kept by the audit
    # sample): the case must be written whatever the decision
    monkeypatch.setattr(instance.platform, "audit_sample", 1.0)
    answers = stream(
        client, "live-tip", SEED_CHAT
    )  # a tip naming nobody: its case, a write to the local file
    (tip,) = [a for a in answers if a["alert"] is not None]
    assert names == [] and tip["alert"]["case_id"] is not None  # the case was written, on the loop
    answers = stream(client, "live-tip-tracked", SEED_CHAT, account_id="acc-tip")  # risk state: may wait
    assert names == ["after_conversation_message"] and sum(a["alert"] is not None for a in answers) == 1
    names.clear()
    monkeypatch.setattr(
        instance.platform.conversations, "purge_due", lambda: True
    )  # the store's purge is due
    stream(client, "live-purge", SEED_CHAT[:1])
    assert names == ["after_conversation_message"]


def test_both_paths_answer_alike(client, hand_offs, monkeypatch) -> None:
    instance, names = hand_offs
    inline = stream(client, "live-inline", SEED_CHAT)
    monkeypatch.setattr(
        instance, "inline_chars", 0
    )  # FANZHA_STREAM_INLINE_CHARS=0: every message in a thread
    threaded = stream(client, "live-threaded", SEED_CHAT)
    assert names == ["conversation_message"] * len(SEED_CHAT)
    verdict = (
        "fraud_score",
        "scores",
        "labels",
        "decision",
        "trigger_index",
        "evidence",
        "messages",
        "message",
    )
    assert [{k: a[k] for k in verdict} for a in inline] == [{k: a[k] for k in verdict} for a in threaded]
    assert [a["alert"] is None for a in inline] == [a["alert"] is None for a in threaded]
    assert [(a["alert"] or {}).get("case_id") is None for a in inline] == [
        (a["alert"] or {}).get("case_id") is None for a in threaded
    ]


def test_a_write_that_would_wait_goes_to_the_thread_with_its_reading(client, hand_offs, monkeypatch) -> None:
    """Another thread of the worker holds the write lock: the loop's try does not wait for it, and the thread's
    retry reuses the message's encoder reading."""
    import threading

    instance, names = hand_offs
    reader = instance.detector.conversations.reader
    reads, real_read = [], reader.read
    monkeypatch.setattr(reader, "read", lambda texts: reads.append(texts) or real_read(texts))
    lock = instance.platform.database._write_lock
    lock.acquire()
    threading.Timer(0.3, lock.release).start()  # a writer that finishes a little later
    (answer,) = stream(client, "live-locked", [{"sender": "a", "text": "几点集合", "id": "w-1"}])
    assert answer["message_count"] == 1 and names == ["conversation_message"] and len(reads) == 1
