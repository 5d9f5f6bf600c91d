"""The audit log, its CSV export and the moderation dashboard (fanzha.platform.audit), on SQLite and PostgreSQL:
every decision, action and lift, newest first and filterable; the model's precision measured by the moderators'
decisions."""

from __future__ import annotations

import csv
import io
import json

import pytest

from fanzha.models import InputError

from .moderation_fixtures import LURE, SCAM, T0, Clock, ref


def decide(platform, case_id: str, moderator: str, decision: str, reason: str = "理由", labels=None) -> dict:
    platform.claim(case_id, moderator)
    return platform.decide(case_id, moderator, decision, reason, labels)


@pytest.fixture
def worked(make_platform):
    """Three days of moderation: review and audit decisions by two moderators, an action and its lift."""
    clock = Clock()
    platform = make_platform(clock, audit_sample=1.0)
    platform.classify_texts(
        [LURE + "1", LURE + "2", LURE + "3", SCAM, SCAM + "!"],
        [ref(1), ref(2), ref(3), ref(4, "u2"), ref(5, "u3")],
    )
    review = [c["case_id"] for c in platform.queue("review")]
    audit = [c["case_id"] for c in platform.queue("audit")]
    decide(platform, review[0], "mod-a", "confirm", labels=["fake_giveaway", "fee_demand"])
    decide(platform, review[1], "mod-a", "reject", "正常推广")
    clock.t += 86400
    decide(platform, review[2], "mod-b", "escalate")
    decide(platform, audit[0], "mod-b", "confirm")
    decide(platform, audit[1], "mod-b", "confirm")
    clock.t += 86400
    action = platform.dispose("account", "u1", "ban", "mod-a", '=HYPERLINK("x")', case_id=review[0])
    clock.t += 10
    platform.lift(action["action_id"], "mod-c", "申诉成功")
    return platform, clock


def test_audit_log_has_every_decision_action_and_lift(worked) -> None:
    platform, clock = worked
    log = platform.audit_log()
    assert [(r["kind"], r["what"]) for r in log] == [
        ("lift", "ban"),
        ("action", "ban"),
        ("decision", "confirm"),
        ("decision", "confirm"),
        ("decision", "escalate"),
        ("decision", "reject"),
        ("decision", "confirm"),
    ]
    assert [r["ts"] for r in log] == sorted((r["ts"] for r in log), reverse=True)
    assert log[0]["moderator_id"] == "mod-c" and log[0]["reason"] == "申诉成功"
    assert (
        log[-1]["labels"] == ["fake_giveaway", "fee_demand"]
        and log[-1]["detail"]["model_decision"] == "review"
    )
    assert {r["moderator_id"] for r in platform.audit_log(moderator_id="mod-b")} == {"mod-b"}
    assert len(platform.audit_log(moderator_id="mod-a")) == 3  # two decisions and the ban
    assert [r["kind"] for r in platform.audit_log(kind="lift")] == ["lift"]
    assert len(platform.audit_log(since=T0 + 86400, until=T0 + 2 * 86400)) == 3
    assert platform.audit_log(limit=2, offset=1) == log[1:3]
    for bad in ({"kind": "login"}, {"limit": 0}, {"offset": -1}):
        with pytest.raises(InputError):
            platform.audit_log(**bad)


def test_audit_csv_is_the_log_and_safe_in_a_spreadsheet(worked) -> None:
    platform, _ = worked
    rows = list(csv.DictReader(io.StringIO(platform.audit_csv())))
    assert len(rows) == 7 and rows[0]["kind"] == "lift" and rows[0]["time_utc"].endswith("Z")
    ban = rows[1]
    assert ban["reason"] == '\'=HYPERLINK("x")'  # not a formula when opened
    assert json.loads(rows[-1]["labels"]) == ["fake_giveaway", "fee_demand"]
    assert len(list(csv.DictReader(io.StringIO(platform.audit_csv(kind="decision"))))) == 5


def test_dashboard(worked) -> None:
    platform, clock = worked
    board = platform.dashboard(days=3)
    assert [d["count"] for d in board["decisions_per_day"]] == [2, 3, 0]
    assert board["throughput"] == [
        {"moderator_id": "mod-b", "decisions": 3},
        {"moderator_id": "mod-a", "decisions": 2},
    ]
    assert board["agreement"]["block"] == {"precision": 1.0, "n": 2, "confirmed": 2, "rejected": 0}
    assert board["agreement"]["review"] == {"precision": 0.5, "n": 2, "confirmed": 1, "rejected": 1}
    assert board["label_mix"] == {"fake_giveaway": 3, "fee_demand": 3}
    assert board["queue_depths"] == {"reports": 0, "review": 1, "audit": 0, "alerts": 0}  # the escalated one
    assert isinstance(board["top_clusters"], list)
    assert [d["count"] for d in platform.dashboard(days=1)["decisions_per_day"]] == [0]
    empty = platform.dashboard(days=1)["agreement"]["block"]
    assert empty == {"precision": None, "n": 0, "confirmed": 0, "rejected": 0}
    with pytest.raises(InputError):
        platform.dashboard(days=0)
