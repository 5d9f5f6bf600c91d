"""POST /classify_conversation and /conversation_message on the committed model, bad input included."""

from __future__ import annotations

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


def test_a_long_stream_message_is_scored_off_the_event_loop(client, monkeypatch) -> None:
    """Chat lines are scored on the worker's event loop (cheaper than a thread hand-off); a long message goes to a
    thread, so it cannot stall the worker's other requests. Both answer the same way."""
    import anyio.to_thread

    from fanzha.serving import service

    handed_off = []
    run_sync = anyio.to_thread.run_sync

    async def spy(func, *args, **kwargs):
        if getattr(getattr(func, "func", None), "__name__", "") == "conversation_message":
            handed_off.append(func.args[1].text)
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", spy)
    short = "周末去图书馆吗"
    long = "我们班周五下午在图书馆三楼自习室复习，带好练习册和错题本。" * 20
    assert len(short) <= service.INLINE_MESSAGE_CHARS < len(long)
    for i, text in enumerate((short, long)):
        m = {"sender": "班长", "text": text, "id": f"len-{i}"}
        r = client.post("/conversation_message", json={"conversation_id": "live-length", "message": m})
        assert r.status_code == 200 and r.json()["message"]["index"] == i
    assert handed_off == [long]
