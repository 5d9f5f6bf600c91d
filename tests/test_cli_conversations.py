"""`fanzha classify --conversations`: one verdict per conversation line, error records for bad ones."""

from __future__ import annotations

import json

from fanzha.cli import main

CHAT = [
    {"sender": "星光应援站", "text": "恭喜你成为本月幸运粉丝", "id": "m1", "ts": 10},
    {"sender": "管理-阿豪", "text": "加管理员扣扣 2863 11907 登记地址", "id": "m2", "ts": 20},
    {"sender": "管理-阿豪", "text": "登记先转29元认证费，寄出后原路退", "id": "m3", "ts": 30},
]


def test_conversations_file_with_bad_lines(capsys, tiny_conversation_model, tmp_path) -> None:
    src = tmp_path / "convs.jsonl"
    lines = [
        json.dumps({"id": "good", "messages": CHAT}, ensure_ascii=False),
        json.dumps({"id": "empty", "messages": []}),
        json.dumps({"id": "notext", "messages": [{"sender": "a"}]}),
        json.dumps({"id": "dupe", "messages": [CHAT[0], CHAT[0]]}, ensure_ascii=False),
        "{not json",
        "",
        json.dumps({"id": "late", "messages": [CHAT[2], CHAT[0]]}, ensure_ascii=False),
    ]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    code = main(
        [
            "classify",
            "--conversations",
            "--input",
            str(src),
            "--output",
            str(out),
            "--model-dir",
            str(tiny_conversation_model),
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["good", "empty", "notext", "dupe", None, "late"]
    good = rows[0]
    assert set(good) >= {
        "fraud_score",
        "scores",
        "labels",
        "decision",
        "evidence",
        "trigger_index",
        "messages",
    }
    assert [m["index"] for m in good["messages"]] == [0, 1, 2] and all("stage" in m for m in good["messages"])
    assert "no messages" in rows[1]["error"] and rows[1]["line"] == 2
    assert "message 0: has no text" in rows[2]["error"]
    assert "repeats message 0" in rows[3]["error"]
    assert "invalid JSON" in rows[4]["error"] and rows[4]["line"] == 5
    assert "arrival order" in rows[5]["warnings"][0]
    assert "scored 2 conversations, 4 failed" in err


def test_conversations_need_an_input_file(capsys, tiny_conversation_model) -> None:
    code = main(["classify", "你好", "--conversations", "--model-dir", str(tiny_conversation_model)])
    assert code == 2 and "--input" in capsys.readouterr().err
