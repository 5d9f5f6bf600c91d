"""`fanzha adapt` measured on real traffic nobody here wrote: the shared external corpora stand in for a platform.

    python bench/adapt_external.py [--corpora_dir ../shared/corpora] [--json reports/bench_adapt.json]

Two runs, each adapting the committed default model and measuring on the half of the traffic it never saw:
1. traffic = telecom label00 (operator and merchant SMS) + msgpass (personal SMS), half held out;
2. the same with msgspam (SMS adverts) mixed in, to show what adverts in the traffic do.
The traffic files are written to a temporary directory and the adapted models are deleted afterwards:
these corpora may not be committed or shipped (their licences), so neither may a model fitted on them.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from fanzha.datasets.external import corpora_dir, load_msglog, load_telecom
from fanzha.training import adapt
from fanzha.training.adapt_args import AdaptArguments, flag


def write_traffic(path: Path, parts: dict[str, list[str]]) -> int:
    with path.open("w", encoding="utf-8") as f:
        for genre, texts in parts.items():
            for t in texts:
                f.write(json.dumps({"text": t, "source": genre}, ensure_ascii=False) + "\n")
    return sum(len(v) for v in parts.values())


def fraud_recall(
    telecom: dict[str, list[str]], base_model: str, adapted: Path
) -> dict[str, dict[str, float]]:
    """Review+block rate on the telecom fraud sets (never in the traffic) for the base and the adapted model,
    on the score the Detector flags on (the max over the heads)."""
    from fanzha.models import Detector
    from fanzha.models.normalize import normalize
    from fanzha.training.metrics import detector_score

    out = {}
    for name, model_dir in (("before", base_model or None), ("after", adapted)):
        detector = Detector.load(model_dir)
        for cls, texts in telecom.items():
            if cls == "normal":
                continue
            probs = detector_score(detector.classifier.predict([normalize(t).text for t in texts]))
            out.setdefault(cls, {})[name] = round(float((probs >= detector.thresholds.review).mean()), 4)
    return out


def tables(results: dict) -> str:
    """The three tables of a run (or of runs merged: one result per traffic mix), as Markdown."""
    out: list[str] = []
    out.append("")
    out.append("| traffic | group | held-out n | review+block before | after | block before | after |")
    out.append("|---|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        for g, v in r["held_out_traffic"].items():
            b, a = v["before"], v["after"]
            out.append(
                f"| {name} | {g} | {b['n']:,} | {adapt._pct(b['review_or_block'])} | {adapt._pct(a['review_or_block'])} "
                f"| {adapt._pct(b['block'])} | {adapt._pct(a['block'])} |"
            )
    out.append("")
    out.append(
        "| traffic | split | fraud recall before | after | benign flag rate before | after | wall time |"
    )
    out.append("|---|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        for split, v in r["labelled"].items():
            out.append(
                f"| {name} | {split} | {adapt._pct(v['recall_before'])} | {adapt._pct(v['recall_after'])} "
                f"| {adapt._pct(v['benign_flag_rate_before'])} | {adapt._pct(v['benign_flag_rate_after'])} | {r['wall_time_s']:.0f} s |"
            )
    out.append("")
    out.append("| traffic | telecom fraud set (never in the traffic) | recall before | after |")
    out.append("|---|---|---:|---:|")
    for name, r in results.items():
        for cls, v in r["external_fraud_recall"].items():
            out.append(f"| {name} | {cls} | {adapt._pct(v['before'])} | {adapt._pct(v['after'])} |")
    out += [
        "",
        "| traffic | head chosen | candidates (width:L2 × traffic weight → validation flag rate) |",
        "|---|---|---|",
    ]
    for name, r in results.items():
        if "search" not in r:  # a report written before the head search
            continue
        tried = ", ".join(
            f"{c['hidden']}:{c['l2']:g} × {c['traffic_weight']:g} → {adapt._pct(c['validation_flag_rate'])}"
            for c in r["search"]
        )
        out.append(f"| {name} | {adapt._head_words(r['head'])} | {tried} |")
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--corpora_dir", default=None)
    p.add_argument("--base_model", default="")
    p.add_argument("--json", default=None)
    p.add_argument(
        "--per_author",
        type=flag,
        default=True,
        metavar="true|false",
        help="adapt's recall constraint per author of the check set (true, the default) or pooled (false)",
    )
    p.add_argument(
        "--max_recall_drop",
        type=float,
        default=AdaptArguments.max_recall_drop,
        help="adapt's allowed drop in labelled fraud recall (per author and overall)",
    )
    p.add_argument("--only", default="", help="run only this traffic mix (e.g. label00+msgpass)")
    args = p.parse_args()
    root = corpora_dir(args.corpora_dir)
    if root is None:
        print("external corpora not found (set --corpora_dir or FANZHA_CORPORA)", file=sys.stderr)
        return 2
    telecom, msglog = load_telecom(root), load_msglog(root)
    runs = {
        "label00+msgpass": {"telecom_label00": telecom["normal"], "msgpass": msglog["pass"]},
        "label00+msgpass+msgspam": {
            "telecom_label00": telecom["normal"],
            "msgpass": msglog["pass"],
            "msgspam": msglog["spam"],
        },
    }
    results = {}
    with tempfile.TemporaryDirectory(prefix="fanzha-adapt-bench-") as tmp:
        for name, parts in runs.items():
            if args.only and name != args.only:
                continue
            traffic = Path(tmp) / f"{name}.jsonl"
            n = write_traffic(traffic, parts)
            out = Path(tmp) / f"model-{name}"
            print(f"== {name}: {n:,} messages", flush=True)
            adapt.main(
                AdaptArguments(
                    traffic=str(traffic),
                    output=str(out),
                    base_model=args.base_model,
                    held_out=0.5,
                    per_author=args.per_author,
                    max_recall_drop=args.max_recall_drop,
                )
            )
            results[name] = json.loads((out / "adapt_report.json").read_text())
            results[name]["external_fraud_recall"] = fraud_recall(telecom, args.base_model, out)
    print(tables(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
