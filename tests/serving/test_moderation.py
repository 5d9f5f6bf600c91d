"""Disposal through the service (the session's in-process app): POST /dispose, /actions, /lift_action with the
published bodies and a clear 4xx for bad input; those paths are moderator paths and published in /docs.json.
(Capture of what the service decides `review` is the platform's: tests/platform/test_review_model.py.)"""

from __future__ import annotations

import uuid

import pytest

from fanzha.serving.platform_api import MODERATOR_PATHS


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_dispose_list_and_lift(client) -> None:
    account = uid("acct")
    r = client.post(
        "/dispose",
        json={
            "entity_kind": "account",
            "entity_id": account,
            "action": "suspend",
            "moderator_id": "mod-1",
            "reason": "多次发布虚假赠送",
            "duration_s": 3600,
            "evidence": [{"item_id": "m1", "span": [0, 3]}],
        },
    )
    assert r.status_code == 200, r.text
    action = r.json()
    assert (action["status"], action["action"], action["delivery"]) == ("active", "suspend", "not_configured")
    assert (
        action["evidence"] == [{"item_id": "m1", "span": [0, 3]}]
        and action["expires_at"] > action["created_at"]
    )
    listed = client.post("/actions", json={"account_id": account}).json()
    assert [a["action_id"] for a in listed] == [action["action_id"]]
    assert client.post("/actions", json={"after_id": action["action_id"], "account_id": account}).json() == []
    lifted = client.post(
        "/lift_action", json={"action_id": action["action_id"], "moderator_id": "mod-2", "reason": "申诉成功"}
    )
    assert lifted.status_code == 200 and lifted.json()["status"] == "lifted"
    again = client.post(
        "/lift_action", json={"action_id": action["action_id"], "moderator_id": "mod-2", "reason": "x"}
    )
    assert again.status_code == 409 and "lifted already" in again.json()["error"]


@pytest.mark.parametrize(
    "path,body,status,message",
    [
        (
            "/dispose",
            {
                "entity_kind": "account",
                "entity_id": "u",
                "action": "mute",
                "moderator_id": "m",
                "reason": "r",
            },
            400,
            "not 'mute'",
        ),
        (
            "/dispose",
            {
                "entity_kind": "group",
                "entity_id": "g",
                "action": "explode",
                "moderator_id": "m",
                "reason": "r",
            },
            400,
            "action",
        ),
        (
            "/dispose",
            {
                "entity_kind": "account",
                "entity_id": "u",
                "action": "warn",
                "moderator_id": "m",
                "reason": "r",
                "duration_s": 60,
            },
            400,
            "no duration",
        ),
        (
            "/dispose",
            {"entity_kind": "account", "entity_id": "u", "action": "ban", "moderator_id": "m", "reason": ""},
            400,
            "reason",
        ),
        (
            "/dispose",
            {
                "entity_kind": "account",
                "entity_id": "u",
                "action": "ban",
                "moderator_id": "m",
                "reason": "r",
                "case_id": "review:0",
            },
            404,
            "unknown case",
        ),
        ("/lift_action", {"action_id": 987654321, "moderator_id": "m", "reason": "r"}, 404, "unknown action"),
        ("/lift_action", {"action_id": 0, "moderator_id": "m", "reason": "r"}, 400, "action_id"),
        ("/actions", {"account_id": "a", "group_id": "g"}, 400, "not both"),
        ("/actions", {"limit": 0}, 400, "limit"),
    ],
)
def test_bad_disposal_requests(client, path, body, status, message) -> None:
    r = client.post(path, json=body)
    assert r.status_code == status and message in str(r.json()["error"]), r.text


def test_disposal_paths_are_moderator_paths() -> None:
    assert {"/actions", "/dispose", "/lift_action", "/reports", "/resolve_report"} <= set(MODERATOR_PATHS)


def test_disposal_endpoints_are_published(client) -> None:
    doc = client.get("/docs.json").json()
    for path in ("/actions", "/dispose", "/lift_action"):
        assert "post" in doc["paths"][path]
    action = doc["components"]["schemas"]["Action"]
    assert (
        set(action["required"]) == set(action["properties"])
        and action["properties"]["deliveries"]["type"] == "array"
    )
