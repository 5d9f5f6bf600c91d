"""`fanzha score` / `fanzha report`: formats, bad records, chunking, resuming after SIGKILL."""

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fanzha.batch.formats import ArchiveError
from fanzha.batch.job import score_archive
from fanzha.batch.plan import plan
from fanzha.batch.readers import Columns, read_chunk
from fanzha.batch.summary_report import render_summary
from fanzha.cli import main
from fanzha.models import Detector
from fanzha.models.labels import LABELS

from ..conftest import BENIGN, MEDIA, SCAM


def write_jsonl(path: Path, rows: list, extra_lines: list[bytes] = ()) -> Path:
    with open(path, "wb") as f:
        for row in rows:
            f.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
        for line in extra_lines:
            f.write(line)
    return path


def read_rows(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return pq.read_table(path).to_pylist()
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def mixed_inputs(tmp_path) -> list[str]:
    jsonl = write_jsonl(
        tmp_path / "posts.jsonl",
        [
            {"id": "s1", "text": SCAM, "account_id": "u1", "group_id": "g1"},
            {"id": "b1", "text": BENIGN},
            {"id": "poster", "image": str(MEDIA / "poster.png")},
            {"id": "empty", "text": ""},
            {"id": "num", "text": 42},
            {"id": "gone", "image": "missing.png"},
        ],
        [b"{not json\n", b"\xff\xfe bad bytes\n", b"[1, 2]\n"],
    )
    table = tmp_path / "comments.csv"
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "text", "account_id"])
        writer.writerow(["c1", "第一行\n" + SCAM, "u2"])  # a newline inside a quoted field
        writer.writerow(["c2", BENIGN, ""])
    parquet = tmp_path / "old.parquet"
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": [SCAM, BENIGN]}), parquet, row_group_size=1)
    return [str(jsonl), str(table), str(parquet), str(MEDIA / "static.mp4")]


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_every_record_gets_one_row_and_bad_ones_an_error(
    tmp_path, mixed_inputs, tiny_model_dir, suffix
) -> None:
    out = tmp_path / f"scored{suffix}"
    summary = score_archive(mixed_inputs, out, chunk_size=2, model_dir=str(tiny_model_dir), progress=False)
    rows = read_rows(out)
    assert len(rows) == summary.rows == 9 + 2 + 2 + 1 and not (tmp_path / f"scored{suffix}.parts").exists()
    by_id = {r["id"]: r for r in rows}
    assert (
        by_id["s1"]["account_id"] == "u1" and by_id["s1"]["group_id"] == "g1" and by_id["s1"]["error"] is None
    )
    assert by_id["poster"]["kind"] == "image" and by_id["poster"]["error"] is None
    thresholds = Detector.load(tiny_model_dir).thresholds
    for (
        r
    ) in rows:  # every scored row's decision is the one its score gives, and only a flagged one names labels
        if r["error"] is None:
            assert r["decision"] == thresholds.decide(r["fraud_score"]) and (
                r["decision"] != "pass" or not r["labels"]
            ), r
    assert by_id["c1"]["account_id"] == "u2" and by_id["c1"]["source"] == "comments.csv:record 1"
    assert (
        by_id["p2"]["source"] == "old.parquet:row 2" and by_id[str(MEDIA / "static.mp4")]["kind"] == "video"
    )
    errors = {r["source"]: r["error"] for r in rows if r["error"]}
    assert errors == {
        "posts.jsonl:line 4": "field 'text' is empty",
        "posts.jsonl:line 5": "field 'text' must be a string, got int",
        "posts.jsonl:line 6": f"no such file: {Path(mixed_inputs[0]).parent / 'missing.png'}",
        "posts.jsonl:line 7": "invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        "posts.jsonl:line 8": "invalid UTF-8 at byte 0",
        "posts.jsonl:line 9": "expected a JSON object, got list",
    }
    assert summary.errors == 6 and sum(summary.decisions.values()) == len(rows) - 6
    ok = by_id["s1"]
    assert set(ok) >= {
        "fraud_score",
        "score_fake_giveaway",
        "labels",
        "decision",
        "evidence",
        "model_version",
    }
    evidence = json.loads(ok["evidence"]) if isinstance(ok["evidence"], str) else ok["evidence"]
    assert any(e["kind"] == "qq_group" for e in evidence)


def test_chunks_cover_every_record_once(tmp_path) -> None:
    lines = [{"id": str(i), "text": f"第{i}条"} for i in range(25)]
    path = write_jsonl(tmp_path / "a.jsonl", lines)
    chunks = plan([str(path)], 4)
    assert [c.count for c in chunks] == [4] * 6 + [1]
    ids = [r.id for c in chunks for r in read_chunk(c, Columns())]
    assert ids == [str(i) for i in range(25)]


def test_a_finished_or_different_job_is_not_clobbered(tmp_path, tiny_model_dir) -> None:
    src = write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": BENIGN}])
    out = tmp_path / "o.parquet"
    score_archive([str(src)], out, model_dir=str(tiny_model_dir), progress=False)
    with pytest.raises(ArchiveError, match="exists"):
        score_archive([str(src)], out, model_dir=str(tiny_model_dir), progress=False)
    assert (
        score_archive([str(src)], out, model_dir=str(tiny_model_dir), progress=False, overwrite=True).rows
        == 1
    )
    with pytest.raises(ArchiveError, match="no such file"):
        score_archive(
            [str(tmp_path / "nope.jsonl")],
            tmp_path / "x.parquet",
            model_dir=str(tiny_model_dir),
            progress=False,
        )
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ArchiveError, match="unknown format"):
        score_archive(
            [str(tmp_path / "notes.txt")],
            tmp_path / "x.parquet",
            model_dir=str(tiny_model_dir),
            progress=False,
        )


def test_sigkill_mid_run_then_resume_loses_and_repeats_nothing(tmp_path, tiny_model_dir) -> None:
    n = 3000
    src = write_jsonl(
        tmp_path / "big.jsonl",
        [{"id": f"r{i}", "text": (SCAM if i % 3 else BENIGN) + f" #{i}"} for i in range(n)],
    )
    out = tmp_path / "big.parquet"
    cmd = [
        sys.executable,
        "-m",
        "fanzha.cli",
        "score",
        str(src),
        "-o",
        str(out),
        "--chunk-size",
        "100",
        "-q",
        "--model-dir",
        str(tiny_model_dir),
        "--threads",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    parts = tmp_path / "big.parquet.parts"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("part-*.parquet"))) < 5:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(parts.glob("part-*.parquet")))
    assert 5 <= done_before < 30 and not out.exists(), "the job must be killed mid-run"
    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    ids = pq.read_table(out, columns=["id"]).column("id").to_pylist()
    assert len(ids) == n and len(set(ids)) == n and set(ids) == {f"r{i}" for i in range(n)}
    assert f"scored {n - done_before * 100:,} this run" in resumed.stderr


def test_report_markdown_and_html(tmp_path, mixed_inputs, tiny_model_dir, capsys) -> None:
    out = tmp_path / "s.parquet"
    score_archive(mixed_inputs, out, model_dir=str(tiny_model_dir), progress=False)
    assert main(["report", str(out), "--top", "3"]) == 0
    md = capsys.readouterr().out
    assert "| rows | 14 |" in md and "## fraud_score histogram" in md and "invalid JSON" in md
    html_path = tmp_path / "r.html"
    assert main(["report", str(out), "--format", "html", "-o", str(html_path)]) == 0
    page = html_path.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>") and "<title>fanzha report: s.parquet</title>" in page
    # the HTML says what the rows say: read its tables back and recount from the parquet file
    rows = pq.read_table(out).to_pylist()
    scored = [r for r in rows if r["error"] is None]
    flagged = sorted((r for r in scored if r["decision"] != "pass"), key=lambda r: -r["fraud_score"])
    summary, histogram, errors, top = html_tables(page)
    facts = dict(summary)
    assert facts["rows"] == str(len(rows)) == "14" and facts["scored"] == str(len(scored))
    assert facts["errors"] == str(len(rows) - len(scored))
    for d in ("block", "review", "pass"):
        n = sum(r["decision"] == d for r in scored)
        assert facts[f"decision {d}"] == f"{n:,} ({n / len(scored):.1%})"
    for label in LABELS:
        assert facts[f"label {label}"] == str(sum(label in (r["labels"] or []) for r in scored))
    assert [int(n) for _, n, _ in histogram] == [
        sum(min(9, int(r["fraud_score"] * 10)) == b for r in scored) for b in range(10)
    ]
    assert sum(int(n) for _, n in errors) == len(rows) - len(scored) and any(
        "invalid JSON" in k for k, _ in errors
    )
    assert top[0] == ["score", "decision", "labels", "id", "source", "evidence"]
    assert (
        len(top) - 1 == min(20, len(flagged)) > 1
    )  # every flagged row (the default top 20), highest score first
    assert [(float(x[0]), x[1], x[3]) for x in top[1:]] == [
        (pytest.approx(r["fraud_score"], abs=1e-4), r["decision"], r["id"]) for r in flagged[:20]
    ]


def html_tables(page: str) -> list[list[list[str]]]:
    """Every <table> of a page as rows of cell texts."""
    from html.parser import HTMLParser

    class Tables(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tables: list[list[list[str]]] = []
            self.cell: list[str] | None = None

        def handle_starttag(self, tag, attrs) -> None:
            if tag == "table":
                self.tables.append([])
            elif tag == "tr":
                self.tables[-1].append([])
            elif tag in ("td", "th"):
                self.cell = []

        def handle_endtag(self, tag) -> None:
            if tag in ("td", "th"):
                self.tables[-1][-1].append("".join(self.cell).strip())
                self.cell = None

        def handle_data(self, data) -> None:
            if self.cell is not None:
                self.cell.append(data)

    parser = Tables()
    parser.feed(page)
    return parser.tables


def test_html_report_escapes_what_it_shows(tmp_path) -> None:
    out = tmp_path / "hostile.parquet"
    evidence = json.dumps(
        [{"kind": "url", "value": "x", "text": "<script>alert(1)</script>", "start": 0, "end": 1}]
    )
    pq.write_table(
        pa.table(
            {
                "id": ["<img src=x onerror=alert(1)>"],
                "source": ["a&b"],
                "kind": ["text"],
                "fraud_score": [0.97],
                "labels": [["fake_giveaway"]],
                "decision": ["block"],
                "evidence": [evidence],
                "error": pa.array([None], pa.string()),
                "model_version": ["m"],
            }
        ),
        out,
    )
    page = render_summary(out, "html")
    assert "<script>" not in page and "<img" not in page and "&lt;script&gt;" in page and "a&amp;b" in page
    top = html_tables(page)[-1]
    assert top[1][3] == "<img src=x onerror=alert(1)>" and top[1][5] == "url=<script>alert(1)</script>"


def test_score_command_summary_and_errors(tmp_path, tiny_model_dir, capsys) -> None:
    src = write_jsonl(tmp_path / "a.jsonl", [{"id": "1", "text": SCAM}, {"id": "2", "text": BENIGN}])
    code = main(
        [
            "score",
            str(src),
            "-o",
            str(tmp_path / "a.jsonl.out.jsonl"),
            "--model-dir",
            str(tiny_model_dir),
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0 and "2 rows →" in err and "errors 0" in err
    assert main(["score", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "x.parquet"), "-q"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_folders_and_globs_of_media(tmp_path, tiny_model_dir) -> None:
    out = tmp_path / "media.jsonl"
    score_archive([str(MEDIA), str(MEDIA / "*.mp4")], out, model_dir=str(tiny_model_dir), progress=False)
    rows = read_rows(out)
    images = [r for r in rows if r["kind"] == "image"]
    videos = [r for r in rows if r["kind"] == "video"]
    assert len(images) == 11 and len(videos) == 8 and all(r["error"] is None for r in rows)
    assert {r["id"] for r in images} >= {"poster.png", "qr.png"}


@pytest.mark.ray
def test_ray_local_mode_writes_the_same_rows_as_the_local_engine(
    tmp_path, mixed_inputs, tiny_model_dir
) -> None:
    pytest.importorskip("ray", reason="the distributed extra is not installed")
    inputs = mixed_inputs[:3] + [str(MEDIA / "poster.png")]
    local, distributed = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    score_archive(inputs, local, chunk_size=3, model_dir=str(tiny_model_dir), progress=False)
    summary = score_archive(
        inputs, distributed, engine="ray", chunk_size=3, model_dir=str(tiny_model_dir), progress=False
    )
    assert summary.scored_this_run == 14
    assert read_rows(distributed) == read_rows(local)


def test_track_feeds_the_risk_store_like_the_service(tmp_path, monkeypatch) -> None:
    from fanzha.platform import RiskState, open_tracker

    monkeypatch.setenv("FANZHA_DATABASE_URL", f"sqlite:///{tmp_path / 'risk.db'}")
    monkeypatch.setenv("FANZHA_ALERT_FLAGGED", "3")
    # 4 lures from one account pushing one QQ group, one benign message from another
    rows = [{"id": f"s{i}", "text": SCAM, "account_id": "scammer", "group_id": "g1"} for i in range(4)]
    src = write_jsonl(tmp_path / "a.jsonl", [*rows, {"id": "b", "text": BENIGN, "account_id": "kid"}])
    summary = score_archive(
        [str(src)], tmp_path / "o.parquet", progress=False, tracker=open_tracker
    )  # the committed model
    store = RiskState.from_settings()
    scammer, kid = store.entity("account", "scammer"), store.entity("account", "kid")
    assert (scammer["items"], scammer["flagged"], kid["items"], kid["flagged"]) == (4, 4, 1, 0)
    alerts = store.alerts()
    assert (
        summary.alerts == len(alerts) >= 1 and alerts[0]["item_id"] == "s2"
    )  # the third flagged item crosses 3


def test_csv_quotes_follow_the_csv_rules_and_a_bom_is_not_content(tmp_path, tiny_model_dir) -> None:
    table = tmp_path / "t.csv"
    table.write_bytes(
        b'id,text\n1,he said 5" screen\n2,hello\n3,"quoted, with ""escaped"" quotes\nand a newline"\n4,bye\n'
    )
    jsonl = tmp_path / "b.jsonl"
    jsonl.write_bytes(b"\xef\xbb\xbf" + json.dumps({"id": "bom", "text": BENIGN}).encode() + b"\n")
    out = tmp_path / "o.jsonl"
    score_archive([str(table), str(jsonl)], out, model_dir=str(tiny_model_dir), progress=False)
    rows = read_rows(out)
    assert [r["id"] for r in rows] == ["1", "2", "3", "4", "bom"] and all(r["error"] is None for r in rows)


def test_a_changed_media_folder_is_a_different_job(tmp_path, tiny_model_dir) -> None:
    import shutil

    folder = tmp_path / "shots"
    folder.mkdir()
    shutil.copy(MEDIA / "photo.jpg", folder / "a.jpg")
    out = tmp_path / "o.parquet"
    from fanzha.batch.parts import JobSpec, identity, prepare

    spec = JobSpec([str(folder)], 10, {}, "v", "parquet", identity([str(folder)]))
    prepare(spec, out, overwrite=False)
    (folder / "a.jpg").rename(folder / "b.jpg")  # same count, other files
    changed = JobSpec([str(folder)], 10, {}, "v", "parquet", identity([str(folder)]))
    with pytest.raises(ArchiveError, match="unfinished job with other inputs"):
        prepare(changed, out, overwrite=False)


def test_unreadable_inputs_are_clear_errors(tmp_path, tiny_model_dir) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(ArchiveError, match="not a readable Parquet file"):
        plan([str(bad)], 10)
    with pytest.raises(ArchiveError, match="chunk size must be at least 1"):
        plan([str(bad)], 0)


def test_rows_with_a_conversation_id_are_scored_as_conversations_too(
    tmp_path, tiny_conversation_model
) -> None:
    rows = [
        {
            "id": "a1",
            "conversation_id": "chat-a",
            "sender": "星光应援站",
            "ts": 10,
            "text": "恭喜你成为本月幸运粉丝",
        },
        {"id": "x1", "text": "明天考试记得带文具"},  # not part of a conversation
        {"id": "b1", "conversation_id": "chat-b", "sender": "妈妈", "ts": 5, "text": "周末回家吃饭吗"},
        {
            "id": "a2",
            "conversation_id": "chat-a",
            "sender": "管理-阿豪",
            "ts": 30,
            "text": "加管理员扣扣登记地址",
        },
        {
            "id": "a3",
            "conversation_id": "chat-a",
            "ts": 20,
            "text": "登记先转29元认证费",
        },  # no sender, ts out of order
        {"id": "a4", "conversation_id": "chat-a", "sender": "小鹿", "text": ""},  # unreadable: named, skipped
        {
            "id": "a5",
            "conversation_id": "chat-a",
            "sender": "小鹿",
            "text": "👍",
        },  # a chat message, not a text
        {"id": "c1", "conversation_id": "chat-c", "sender": "x", "text": ""},  # nothing readable at all
        {
            "id": "a2",
            "conversation_id": "chat-a",
            "sender": "管理-阿豪",
            "text": "加管理员扣扣登记地址",
        },  # repeated id
    ]
    src = write_jsonl(tmp_path / "chats.jsonl", rows)
    out = tmp_path / "verdicts.jsonl"
    summary = score_archive(
        [str(src)], out, chunk_size=2, model_dir=str(tiny_conversation_model), progress=False
    )
    message_rows = read_rows(out)
    assert [r["conversation_id"] for r in message_rows] == [r.get("conversation_id") for r in rows]
    convs = {r["conversation_id"]: r for r in read_rows(tmp_path / "verdicts.conversations.jsonl")}
    assert list(convs) == ["chat-a", "chat-b", "chat-c"]
    a = convs["chat-a"]
    assert [m["id"] for m in a["messages"]] == ["a1", "a2", "a3", "a5"]  # arrival (row) order, across chunks
    assert "no readable characters" in message_rows[6]["error"]  # 👍 as a message row: nothing to score
    warnings = " | ".join(a["warnings"])
    assert "no sender" in warnings and "is empty (not read)" in warnings and "arrival order" in warnings
    assert "id 'a2' repeats" in warnings  # named, read once
    assert convs["chat-c"]["error"] == "no readable message"
    assert summary.conversations.conversations == 3 and summary.conversations.errors == 1
