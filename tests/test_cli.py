"""`fanzha classify` on one text and on JSONL files with every kind of bad line."""

import json

import pytest

from fanzha.cli import main

from .conftest import BENIGN, SCAM


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_single_text(capsys, tiny_model_dir) -> None:
    code, out, _ = run(capsys, "classify", SCAM, "--model-dir", str(tiny_model_dir))
    assert code == 0
    result = json.loads(out)
    assert set(result) >= {"fraud_score", "scores", "labels", "decision", "evidence", "model_version"}
    # the decision is the one the model's own thresholds give for this score
    from fanzha.models import Detector

    detector = Detector.load(tiny_model_dir)
    assert result["decision"] == detector.thresholds.decide(result["fraud_score"])
    named = [k for k, v in result["scores"].items() if v >= detector.classifier.thresholds[k]]
    assert result["labels"] == ([] if result["decision"] == "pass" else named)
    assert any(e["kind"] == "qq_group" and e["value"] == "83726154" for e in result["evidence"])


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_is_a_clear_error(capsys, tiny_model_dir, text) -> None:
    code, out, err = run(capsys, "classify", text, "--model-dir", str(tiny_model_dir))
    assert code == 2 and out == "" and "empty" in err


def test_very_long_text_is_scored_in_windows(capsys, tiny_model_dir) -> None:
    import numpy as np

    from fanzha.models import TextClassifier
    from fanzha.models.labels import LABELS
    from fanzha.models.normalize import normalize

    text = (BENIGN * 9000)[
        : 200_000 - len(SCAM)
    ] + SCAM  # the lure is the last thing in a 200,000-character post
    assert len(text) == 200_000
    code, out, _ = run(capsys, "classify", text, "--model-dir", str(tiny_model_dir))
    assert code == 0
    result = json.loads(out)
    # read to the end: the QQ group at the very end is evidence, at its place in the text as written
    (qq,) = [e for e in result["evidence"] if e["kind"] == "qq_group"]
    assert (
        qq["value"] == "83726154"
        and text[qq["start"] : qq["end"]] == qq["text"]
        and qq["start"] > 200_000 - len(SCAM)
    )
    # scored window by window, each output the max over the windows (computed here one distinct window at a time)
    clf = TextClassifier.load(tiny_model_dir, threads=1)
    windows = list(dict.fromkeys(map(tuple, clf.windows(normalize(text).text))))
    per_window = np.stack(
        [
            1 / (1 + np.exp(-clf.run_logits(np.array([w]), np.ones((1, len(w)), dtype=np.int64))[0]))
            for w in windows
        ]
    )
    expected = dict(zip(clf.outputs, per_window.max(axis=0), strict=True))
    assert result["scores"] == pytest.approx({label: expected[label] for label in LABELS}, abs=1e-4)
    assert result["fraud_score"] == pytest.approx(max(expected.values()), abs=1e-4)
    # and the tail was read: the last window is the text's last tokens, the lure's among them
    ids = clf.token_ids(normalize(text).text)
    body = list(windows[-1][len(clf._prefix) : len(windows[-1]) - len(clf._suffix)])
    assert body == ids[-len(body) :] and clf.token_ids(normalize(SCAM).text)[-3:] == body[-3:]


def test_too_long_text_is_refused(capsys, tiny_model_dir) -> None:
    code, _, err = run(capsys, "classify", "字" * 200_001, "--model-dir", str(tiny_model_dir))
    assert code == 2 and "limit is 200,000" in err


def test_jsonl_with_bad_lines(capsys, tiny_model_dir, tmp_path) -> None:
    src = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"id": "a", "text": SCAM}, ensure_ascii=False).encode(),
        b"{not json",
        json.dumps({"id": "b", "text": BENIGN}, ensure_ascii=False).encode(),
        b'{"id": "c", "text": "\xff\xfe broken"}',
        b"",
        json.dumps({"id": "d"}).encode(),
        json.dumps({"id": "e", "text": "   "}).encode(),
        json.dumps(["not", "an", "object"]).encode(),
        json.dumps({"id": "f", "text": 12}).encode(),
        json.dumps({"text": "没有id的消息也能打分"}, ensure_ascii=False).encode(),
    ]
    src.write_bytes(b"\n".join(lines) + b"\n")
    dst = tmp_path / "out.jsonl"
    code, _, err = run(
        capsys,
        "classify",
        "--input",
        str(src),
        "--output",
        str(dst),
        "--model-dir",
        str(tiny_model_dir),
        "-q",
    )
    assert code == 0
    results = [json.loads(line) for line in dst.read_text(encoding="utf-8").splitlines()]
    assert len(results) == 9  # the blank line is skipped, every other line answers, in input order
    scored = [r for r in results if "error" not in r]
    errors = {r["line"]: r["error"] for r in results if "error" in r}
    assert [r["id"] for r in scored] == ["a", "b", 10]  # missing id → line number
    assert "invalid JSON" in errors[2]
    assert "invalid UTF-8" in errors[4]
    assert "missing field 'text'" in errors[6]
    assert "empty" in errors[7]
    assert "JSON object" in errors[8]
    assert "must be a string" in errors[9]
    assert f"{src}:2:" in err and "scored 3 records, 6 failed" in err


def test_missing_input_file(capsys, tiny_model_dir, tmp_path) -> None:
    code, _, err = run(
        capsys, "classify", "--input", str(tmp_path / "nope.jsonl"), "--model-dir", str(tiny_model_dir)
    )
    assert code == 2 and "not found" in err


def test_text_and_input_are_exclusive(capsys) -> None:
    code, _, err = run(capsys, "classify")
    assert code == 2 and "either" in err


def test_bad_model_dir(capsys, tmp_path) -> None:
    code, _, err = run(capsys, "classify", "你好", "--model-dir", str(tmp_path))
    assert code == 2 and "not found" in err


def test_threshold_flags(capsys, tiny_model_dir) -> None:
    code, out, _ = run(
        capsys,
        "classify",
        BENIGN,
        "--model-dir",
        str(tiny_model_dir),
        "--review-threshold",
        "0",
        "--block-threshold",
        "0",
    )
    assert code == 0 and json.loads(out)["decision"] == "block"


def test_scan_images_and_videos_one_line_per_file(capsys, tmp_path) -> None:
    from .conftest import MEDIA

    bad = tmp_path / "broken.png"
    bad.write_bytes((MEDIA / "poster.png").read_bytes()[:3000])
    files = [
        MEDIA / "poster.png",
        bad,
        MEDIA / "photo.jpg",
        MEDIA / "flash_scam.mp4",
        tmp_path / "missing.jpg",
    ]
    code, out, err = run(capsys, "scan", *map(str, files), "--draw", str(tmp_path / "drawn"), "-q")
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["path"] for line in lines] == list(map(str, files))
    poster, broken, photo, video, missing = lines
    assert poster["decision"] == "block" and poster["ocr"] and poster["media"]["kind"] == "image"
    assert (tmp_path / "drawn" / "poster.block.png").is_file() and poster["drawing"].endswith(
        "poster.block.png"
    )
    assert "corrupt or truncated" in broken["error"] and "no such file" in missing["error"]
    assert photo["decision"] == "pass" and photo["ocr"] == []
    assert video["media"]["kind"] == "video" and any(entry["triggered"] for entry in video["timeline"])
    assert "broken.png" in err and "missing.jpg" in err


def test_scan_rejects_files_that_are_not_media(capsys, tmp_path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("这不是图片也不是视频", encoding="utf-8")
    code, out, _ = run(capsys, "scan", str(text), "-q")
    assert code == 1 and "unsupported media" in json.loads(out)["error"]


def test_a_closed_pipe_ends_classify_quietly(tiny_model_dir, tmp_path) -> None:
    """`fanzha classify --input big.jsonl | head -1`: the reader goes away, fanzha stops without a traceback."""
    import subprocess
    import sys

    src = tmp_path / "many.jsonl"
    src.write_text(
        "".join(
            json.dumps({"id": f"m{i}", "text": SCAM if i % 2 else BENIGN}, ensure_ascii=False) + "\n"
            for i in range(3000)
        ),
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fanzha.cli",
            "classify",
            "--input",
            str(src),
            "-q",
            "--threads",
            "1",
            "--model-dir",
            str(tiny_model_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    first = proc.stdout.readline()
    proc.stdout.close()  # what `head -1` does after its line
    err = proc.stderr.read().decode()
    code = proc.wait(timeout=120)
    assert json.loads(first)["id"] == "m0"
    assert "Traceback" not in err and "BrokenPipeError" not in err and code == 141, err[-2000:]
