"""`fanzha` command line.

    fanzha classify "恭喜你获得免费皮肤，先交10元激活费"        # one text → JSON on stdout
    fanzha classify --input in.jsonl --output out.jsonl        # {"id", "text"} per line → one result per line
    fanzha classify --conversations --input convs.jsonl -o out.jsonl   # {"id", "messages": [{sender, text}]} per line
    fanzha scan poster.png chat.jpg clip.mp4 --draw flagged/   # images and videos → one JSON line per file
    fanzha import-model                                        # the committed model → BentoML model store
    fanzha export-feedback -o feedback.jsonl                   # decided reports and review cases → training examples
    fanzha score posts.jsonl shots/ -o verdicts.parquet        # archives, resumable; --engine ray for Ray Data
                                                               # (rows with conversation_id: chats scored too)
    fanzha summarize verdicts.parquet --format html -o summary.html   # (`fanzha report`: the same, its old name)
    fanzha adapt --traffic sample.jsonl.gz --output models/adapted     # re-fit the head to a platform's own traffic

A bad input line (invalid JSON, invalid UTF-8, missing or empty text, too long) becomes an error record
with its line number in the output and a message on stderr; every other line is still scored.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from fanzha import __version__

BATCH = 64  # records scored together (the classifier batches windows inside)


def _usage(message: str) -> Exception:
    """A command line that cannot work: an InputError (exit 2). fanzha.models loads only once a command runs, so
    `--help` stays quick."""
    from fanzha.models.errors import InputError

    return InputError(message)


def _detector(args: argparse.Namespace):
    from fanzha.models import DecisionThresholds, Detector

    detector = Detector.load(
        args.model_dir, threads=args.threads, ocr_engine=getattr(args, "ocr_engine", None)
    )
    if args.review_threshold is not None or args.block_threshold is not None:
        current = detector.thresholds
        review = current.review if args.review_threshold is None else args.review_threshold
        block = current.block if args.block_threshold is None else args.block_threshold
        detector.thresholds = DecisionThresholds(review=review, block=block)
    return detector


def classify_file(detector, input_path: str, output_path: str, progress: bool = True) -> tuple[int, int]:
    """Score a JSONL file of {"id", "text"} records with the batch reader and scorer; returns (scored, failed).
    One result per non-blank line, in input order; a bad line is an error record and a message on stderr."""
    from tqdm.auto import tqdm

    from fanzha.batch.readers import TEXT_ONLY, iter_jsonl
    from fanzha.batch.scoring import score

    scored = failed = 0
    stream = sys.stdin.buffer if input_path == "-" else open(input_path, "rb")  # noqa: SIM115 (closed below)
    out = sys.stdout if output_path == "-" else open(output_path, "w", encoding="utf-8")  # noqa: SIM115

    def flush(records: list) -> None:
        nonlocal scored, failed
        for r, verdict in zip(records, score(detector, records), strict=True):
            if verdict is None:
                failed += 1
                print(f"{input_path}:{r.line}: {r.error}", file=sys.stderr)
                result = {"id": r.key, "line": r.line, "error": r.error}
            else:
                scored += 1
                result = {"id": r.key, **verdict.to_dict(timings=False)}
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
        records.clear()

    try:
        pending: list = []
        name = "stdin" if input_path == "-" else input_path
        for record in tqdm(
            iter_jsonl(stream, name, TEXT_ONLY),
            desc="classify",
            unit=" lines",
            disable=not progress,
            file=sys.stderr,
        ):
            pending.append(record)
            if len(pending) >= BATCH:
                flush(pending)
        flush(pending)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
        if out is not sys.stdout:
            out.close()
    return scored, failed


def classify_conversations_file(
    detector, input_path: str, output_path: str, progress: bool = True
) -> tuple[int, int]:
    """Score a JSONL file of {"id", "messages": [{"sender", "text", "id"?, "ts"?}]} conversations; returns (scored,
    failed). One verdict per non-blank line, in order; a bad line or a bad conversation is an error record."""
    from tqdm.auto import tqdm

    from fanzha.batch.readers import parse_line
    from fanzha.models import InputError
    from fanzha.models.conversation import conversation_from_dict

    scored = failed = 0
    stream = sys.stdin.buffer if input_path == "-" else open(input_path, "rb")  # noqa: SIM115 (closed below)
    out = sys.stdout if output_path == "-" else open(output_path, "w", encoding="utf-8")  # noqa: SIM115
    _ = detector.conversations  # a model without a conversation head is one error, not one per line
    try:
        for n, raw in enumerate(
            tqdm(stream, desc="conversations", unit=" lines", disable=not progress, file=sys.stderr), 1
        ):
            obj, error = parse_line(raw)
            key = obj.get("id") if obj else None
            if obj is not None:
                try:
                    key, messages = conversation_from_dict(obj)
                    verdict = detector.classify_conversation(messages)
                except InputError as e:
                    error = str(e)
            elif error is None:
                continue  # a blank line
            if error is not None:
                failed += 1
                print(f"{input_path}:{n}: {error}", file=sys.stderr)
                result = {"id": key, "line": n, "error": error}
            else:
                scored += 1
                result = {"id": key, **verdict.to_dict(timings=False)}
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
        if out is not sys.stdout:
            out.close()
    return scored, failed


def cmd_classify(args: argparse.Namespace) -> int:
    if (args.text is None) == (args.input is None):
        raise _usage("give either a TEXT argument or --input FILE")
    if args.conversations and args.input is None:
        raise _usage("--conversations reads a JSONL file: give --input FILE")
    if args.input is not None and args.input != "-" and not Path(args.input).is_file():
        raise _usage(f"input file not found: {args.input}")
    detector = _detector(args)
    if args.conversations:
        scored, failed = classify_conversations_file(
            detector, args.input, args.output, progress=not args.quiet
        )
        print(f"scored {scored} conversations, {failed} failed → {args.output}", file=sys.stderr)
        return 1 if failed and not scored else 0
    if args.text is not None:
        verdict = detector.classify_text(args.text)
        print(json.dumps({"id": None, **verdict.to_dict()}, ensure_ascii=False, indent=2))
        return 0
    scored, failed = classify_file(detector, args.input, args.output, progress=not args.quiet)
    print(f"scored {scored} records, {failed} failed → {args.output}", file=sys.stderr)
    return 1 if failed and not scored else 0


def cmd_scan(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from fanzha.models import InputError

    detector = _detector(args)
    _ = detector.ocr  # build the OCR engine now: a missing engine is one error, not one per file
    scanned = failed = 0
    drawn: set[str] = set()
    for path in tqdm(
        args.files, desc="scan", unit=" files", disable=args.quiet or len(args.files) < 2, file=sys.stderr
    ):
        try:
            verdict = detector.classify_file(path).to_dict()
        except InputError as e:
            failed += 1
            print(f"fanzha scan: {path}: {e}", file=sys.stderr)
            print(json.dumps({"path": path, "error": str(e)}, ensure_ascii=False), flush=True)
            continue
        scanned += 1
        if args.draw and verdict.get("media", {}).get("kind") == "image":
            verdict["drawing"] = _draw(path, verdict, Path(args.draw), drawn)
        print(json.dumps({"path": path, **verdict}, ensure_ascii=False), flush=True)
    return 1 if failed and not scanned else 0


def _draw(path: str, verdict: dict, out_dir: Path, taken: set[str]) -> str:
    import cv2

    from fanzha.models.image import decode_image
    from fanzha.models.render import draw_verdict

    out_dir.mkdir(parents=True, exist_ok=True)
    name, n = f"{Path(path).stem}.{verdict['decision']}.png", 1
    while name in taken:  # a/x.png and b/x.png in one run: keep both drawings
        n += 1
        name = f"{Path(path).stem}-{n}.{verdict['decision']}.png"
    taken.add(name)
    target = out_dir / name
    cv2.imwrite(str(target), draw_verdict(decode_image(Path(path).read_bytes()), verdict))
    return str(target)


def cmd_import_model(args: argparse.Namespace) -> int:
    from fanzha.serving.model_store import import_model

    print(import_model(args.model_dir, force=args.force))
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    import logging

    from fanzha.training import adapt
    from fanzha.training.adapt_args import arguments_from

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    out = adapt.main(arguments_from(args))
    print(json.dumps({"model_dir": str(out), "report": str(out / "ADAPT_REPORT.md")}, ensure_ascii=False))
    return 0


def cmd_export_feedback(args: argparse.Namespace) -> int:
    from datetime import datetime

    from fanzha.datasets.feedback import write_feedback
    from fanzha.models import DatabaseError
    from fanzha.platform import Platform
    from fanzha.platform.database import missing_sqlite_file

    missing = missing_sqlite_file(args.database_url)
    if missing is not None:
        raise DatabaseError(f"no database at {missing} (set --database-url or FANZHA_DATABASE_URL)")
    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since).timestamp()
        except ValueError:
            raise _usage(
                f"--since takes a date like 2026-11-01 or 2026-11-01T08:00, got {args.since!r}"
            ) from None
    platform = Platform(database=args.database_url)
    try:
        records, stats = platform.feedback(since=since)
    finally:
        platform.close()
    write_feedback(records, args.output)
    print(
        f"{len(records):,} examples → {args.output}: {stats.get('confirmed', 0):,} confirmed (fraud), "
        f"{stats.get('rejected', 0):,} rejected (hard negatives); left out: {stats.get('conflicting', 0):,} with conflicting "
        f"decisions, {stats.get('repeats', 0):,} repeats, {stats.get('no_text', 0):,} images without text",
        file=sys.stderr,
    )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from fanzha.batch.job import score_archive
    from fanzha.batch.readers import Columns

    tracker = None
    if args.track:
        from fanzha.platform import open_tracker

        tracker = open_tracker
    columns = Columns(
        text=args.text_column,
        id=args.id_column,
        image=args.image_column,
        video=args.video_column,
        conversation_id=args.conversation_column,
        sender=args.sender_column,
        ts=args.ts_column,
    )
    try:
        summary = score_archive(
            args.inputs,
            args.output,
            engine=args.engine,
            chunk_size=args.chunk_size,
            columns=columns,
            model_dir=args.model_dir,
            threads=args.threads,
            overwrite=args.overwrite,
            progress=not args.quiet,
            ray_address=args.ray_address,
            actors=args.actors,
            tracker=tracker,
        )
    except KeyboardInterrupt:
        print("fanzha score: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    s = summary.to_dict()
    rate = f", {s['records_per_s']:,.1f} records/s" if s["records_per_s"] else ""
    print(
        f"{s['rows']:,} rows → {args.output}: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(s["decisions"].items()))
        + f", errors {s['errors']:,}; labels: "
        + (", ".join(f"{k} {v:,}" for k, v in sorted(s["labels"].items())) or "none")
        + f"; scored {s['scored_this_run']:,} this run in {s['seconds']:.1f} s{rate}"
        + (f"; {s['alerts']:,} early-warning alerts raised" if args.track else ""),
        file=sys.stderr,
    )
    if conv := s["conversations"]:
        print(
            f"{conv['conversations']:,} conversations → {conv['path']}: flagged {conv['flagged']:,}, "
            f"errors {conv['errors']:,}",
            file=sys.stderr,
        )
    return 1 if s["errors"] == s["rows"] and s["rows"] else 0


def cmd_summarize(args: argparse.Namespace) -> int:
    from fanzha.batch.summary_report import render_summary

    path = Path(args.scored)
    if not path.is_file():
        raise _usage(f"no such file: {path}")
    text = render_summary(path, fmt=args.format, top=args.top)
    if args.output == "-":
        print(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"report → {args.output}", file=sys.stderr)
    return 0


def _common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model-dir",
        default=None,
        help="model directory (model.onnx + tokenizer.json); default: the committed model",
    )
    p.add_argument(
        "--review-threshold",
        type=float,
        default=None,
        help="fraud_score at which to send to review (default: the model's tuned threshold)",
    )
    p.add_argument(
        "--block-threshold", type=float, default=None, help="fraud_score at which to block (default 0.9)"
    )
    p.add_argument(
        "--threads", type=int, default=None, help="onnxruntime threads (default: FANZHA_THREADS or all cores)"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fanzha", description="反诈: detect fraud lures aimed at young users in Chinese content"
    )
    parser.add_argument("--version", action="version", version=f"fanzha {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser(
        "classify",
        help="classify one text or a JSONL file of {id, text} records",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("text", nargs="?", help="the text to classify")
    c.add_argument("--input", "-i", help='JSONL file with one {"id", "text"} object per line (\'-\' = stdin)')
    c.add_argument(
        "--conversations",
        action="store_true",
        help='--input holds conversations: {"id", "messages": [{"sender", "text", "id"?, "ts"?}]} per line; '
        "each is scored as a funnel (per-message stage and score, the message that tipped it)",
    )
    c.add_argument("--output", "-o", default="-", help="where to write JSONL results (default: stdout)")
    _common_options(c)
    c.set_defaults(func=cmd_classify)
    sc = sub.add_parser(
        "scan",
        help="classify image and video files (OCR + QR codes; videos get a timeline)",
        description="One JSON line per file: its path and its Verdict, with the OCR lines (boxes), QR payloads "
        'and, for a video, the caption timeline. A bad file gets an {"path", "error"} line; '
        "the others are still scanned.",
    )
    sc.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="images (JPEG, PNG, WebP, GIF, BMP, TIFF) or videos (MP4, MOV, WebM, MKV, FLV)",
    )
    sc.add_argument(
        "--draw",
        metavar="DIR",
        default=None,
        help="also write each image with its flagged boxes drawn into DIR",
    )
    sc.add_argument(
        "--ocr-engine",
        choices=["rapidocr", "paddleocr"],
        default=None,
        help="OCR engine (default: FANZHA_OCR_ENGINE or rapidocr; paddleocr needs the paddle extra)",
    )
    _common_options(sc)
    sc.set_defaults(func=cmd_scan)
    scp = sub.add_parser(
        "score",
        help="score archives: JSONL/CSV/Parquet files and folders or globs of images and videos",
        description="Streams the inputs in chunks through the Detector; one output row per input record "
        "(id, source, scores, labels, decision, evidence, model_version, error). Interrupted? "
        "Run the same command again: finished chunks are skipped, no record is lost or repeated.",
    )
    scp.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="files (.jsonl .csv .parquet), folders or globs of images/videos",
    )
    scp.add_argument("--output", "-o", required=True, help="output file: .parquet (default format) or .jsonl")
    scp.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local (this process) or ray (Ray Data actors; distributed extra)",
    )
    scp.add_argument("--chunk-size", type=int, default=2000, help="records per chunk (the unit of resuming)")
    scp.add_argument("--text-column", default="text")
    scp.add_argument("--id-column", default="id")
    scp.add_argument(
        "--image-column", default="image", help="column with image paths (relative to the table file)"
    )
    scp.add_argument(
        "--video-column", default="video", help="column with video paths (relative to the table file)"
    )
    scp.add_argument(
        "--conversation-column",
        default="conversation_id",
        help="rows sharing a value are also scored as one conversation, in row order → "
        "<output>.conversations.jsonl",
    )
    scp.add_argument("--sender-column", default="sender", help="who sent a conversation's message")
    scp.add_argument("--ts-column", default="ts", help="a message's time (seconds since the epoch)")
    scp.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a finished output, or drop an unfinished job with other options",
    )
    scp.add_argument(
        "--track",
        action="store_true",
        help="update account/group risk state and raise alerts (FANZHA_DATABASE_URL), as the service does",
    )
    scp.add_argument("--ray-address", default=None, help="an existing Ray cluster (default: local mode)")
    scp.add_argument(
        "--actors", type=int, default=None, help="Ray scoring actors (default: cores - 1, at least 1)"
    )
    _common_options(scp)
    scp.set_defaults(func=cmd_score)
    rp = sub.add_parser(
        "summarize",
        aliases=["report"],
        help="a Markdown or HTML summary of a scored output: histogram, counts, top flagged items ('report': the old name)",
    )
    rp.add_argument("scored", help="the output of fanzha score (.parquet or .jsonl)")
    rp.add_argument("--format", choices=["md", "html"], default="md")
    rp.add_argument("--top", type=int, default=20, help="how many of the highest-scoring items to list")
    rp.add_argument("--output", "-o", default="-", help="where to write (default: stdout)")
    rp.set_defaults(func=cmd_summarize)
    im = sub.add_parser(
        "import-model",
        help="put a model directory into the BentoML model store (the service serves it from there)",
    )
    im.add_argument("--model-dir", default=None, help="model directory (default: the committed model)")
    im.add_argument("--force", action="store_true", help="replace the stored copy of the same version")
    im.set_defaults(func=cmd_import_model)
    fb = sub.add_parser(
        "export-feedback",
        help="decided fraud reports and review cases → labelled examples in the corpus format (for training --feedback)",
        description="Confirmed text/image reports and review/audit cases become fraud examples (the moderator's "
        "labels, else the verdict's), rejected ones benign hard negatives; split `train`, provenance "
        "user_report:<id>, moderator_review:<case id> or moderator_audit:<case id>. Retrain with "
        "`python -m fanzha.training.train … --feedback FILE`.",
    )
    fb.add_argument("--output", "-o", required=True, help="JSONL file to write ('-' = stdout)")
    fb.add_argument(
        "--database-url",
        default=None,
        help="the service's database (default: FANZHA_DATABASE_URL, else the default SQLite file)",
    )
    fb.add_argument(
        "--since", default=None, help="only what was decided since this date (ISO 8601, local time)"
    )
    fb.set_defaults(func=cmd_export_feedback)
    ad = sub.add_parser(
        "adapt",
        help="adapt a model to a platform's own traffic (re-fits the head; no torch; needs the `adapt` extra)",
        description="Reads an unlabelled sample of the platform's messages (mostly benign, as real traffic is), the "
        "labelled corpus and optional moderator feedback; writes a model directory that the Detector, the "
        "CLI and the service load like the default (`fanzha import-model --model-dir DIR`), with "
        "ADAPT_REPORT.md beside it.",
    )
    from fanzha.training.adapt_args import add_arguments  # stdlib only: --help stays fast

    add_arguments(ad)
    ad.set_defaults(func=cmd_adapt)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The one boundary between fanzha's errors and exit codes: a FanzhaError (bad input, a missing model, an
    unreachable database, a missing extra) or an unusable command line is one line on stderr and exit 2; a
    closed stdout (`fanzha classify … | head`) ends the command quietly."""
    args = build_parser().parse_args(argv)
    from fanzha.models.errors import FanzhaError

    try:
        code = args.func(args)
        sys.stdout.flush()  # inside the boundary: a reader that went away is seen here, not at interpreter exit
        return code
    except FanzhaError as e:
        print(f"fanzha {args.command}: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away: stop writing, and keep the interpreter's final flush from complaining
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command its pipe closed


if __name__ == "__main__":
    sys.exit(main())
