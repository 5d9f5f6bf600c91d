"""Fine-tune the fraud classifier on the authored corpus.

    python -m fanzha.training.train --base_model runs/base --output_dir runs/model

Steps: load the corpus splits → normalise text exactly as the runtime does → build the classifier on the
base encoder → train with class-weighted BCE, fresh evasion augmentation every epoch, linear warm-up/decay
→ evaluate on dev after each epoch, keep the best, stop early → tune per-output thresholds on dev → save.
"""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import HfArgumentParser, get_linear_schedule_with_warmup

from fanzha.datasets.augment import augment
from fanzha.datasets.corpus import load_corpus
from fanzha.datasets.feedback import join_feedback, load_feedback
from fanzha.models.labels import OUTPUTS
from fanzha.models.normalize import normalize

from .metrics import dev_metrics, sigmoid, targets, tune_thresholds
from .model import FraudClassifier, encode_batch, load_tokenizer, predict_logits

log = logging.getLogger("fanzha.train")


@dataclass
class TrainArguments:
    base_model: str = field(
        default="runs/base",
        metadata={"help": "HF encoder checkpoint dir (build one with fanzha.training.build_base)"},
    )
    output_dir: str = field(default="runs/model", metadata={"help": "where the best checkpoint is written"})
    corpus: str | None = field(
        default=None, metadata={"help": "corpus dir or JSONL file (default: datasets/corpus)"}
    )
    max_length: int = field(
        default=128,
        metadata={
            "help": "tokens per training example (head-truncated); the runtime reads long texts in 64-token windows"
        },
    )
    epochs: int = field(default=4, metadata={"help": "maximum epochs"})
    batch_size: int = field(default=16, metadata={"help": "examples per step"})
    learning_rate: float = field(default=6e-5, metadata={"help": "peak learning rate of the encoder"})
    head_learning_rate: float = field(default=1e-3, metadata={"help": "learning rate of the new linear head"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_ratio: float = field(default=0.06, metadata={"help": "fraction of steps spent warming up"})
    augment_prob: float = field(
        default=0.5,
        metadata={"help": "chance that a training example gets an evasion-augmented twin each epoch"},
    )
    context_prob: float = field(
        default=0.15,
        metadata={
            "help": "chance that a training example also appears inside benign context (a lure in a long post)"
        },
    )
    patience: int = field(default=2, metadata={"help": "epochs without dev improvement before stopping"})
    max_pos_weight: float = field(
        default=4.0, metadata={"help": "cap of the per-output positive class weight"}
    )
    seed: int = field(default=13, metadata={"help": "random seed (data order, augmentation, init)"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = all cores)"})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "truncate the train split (quick runs, tests)"}
    )
    resume: bool = field(
        default=True,
        metadata={
            "help": "continue from output_dir/checkpoint-last when it exists (saved after every epoch)"
        },
    )
    feedback: list[str] | None = field(
        default=None,
        metadata={
            "help": "JSONL files from `fanzha export-feedback` (moderated user reports): "
            "added to the train split only, never to dev/test"
        },
    )


def in_context(text: str, benign: list[str], rng: random.Random) -> str:
    """The message with one or two benign training messages around it; its labels do not change."""
    parts = [text, *rng.sample(benign, k=rng.randint(1, 2))]
    rng.shuffle(parts)
    return rng.choice(["\n", " ", "。", ""]).join(parts)


CHECKPOINT = "checkpoint-last"


def save_checkpoint(
    path: Path, model: FraudClassifier, optimizer, scheduler, rng: random.Random, state: dict
) -> None:
    """Everything needed to continue after a kill: weights, optimiser, schedule, RNGs, history (written atomically)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng.getstate(),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": np.random.get_state(),
        },
        tmp / "state.pt",
    )
    (tmp / "progress.json").write_text(json.dumps(state, indent=2))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def load_checkpoint(path: Path, model: FraudClassifier, optimizer, scheduler, rng: random.Random) -> dict:
    saved = torch.load(path / "state.pt", weights_only=False)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    rng.setstate(saved["rng"])
    torch.set_rng_state(saved["torch_rng"])
    np.random.set_state(saved["numpy_rng"])
    return json.loads((path / "progress.json").read_text())


def main(argv: list[str] | None = None) -> Path:
    (args,) = HfArgumentParser(TrainArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.time()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)

    # 1. data
    train = load_corpus(args.corpus, splits=["train"])
    dev = load_corpus(args.corpus, splits=["dev"])
    if args.max_train_samples:
        train = random.Random(args.seed).sample(train, min(args.max_train_samples, len(train)))
    feedback_stats = None
    if args.feedback:  # after truncation: a quick run still learns from every moderated report
        train, feedback_stats = join_feedback(
            train, load_corpus(args.corpus, splits=["dev", "test"]), load_feedback(args.feedback)
        )
        log.info("feedback from %s: %s", ", ".join(args.feedback), feedback_stats)
    if not train or not dev:
        raise SystemExit(f"need train and dev records, got {len(train)} train / {len(dev)} dev")
    y_train, y_dev = targets(train), targets(dev)
    benign = [r["text"] for r in train if not r["labels"]]
    dev_texts = [normalize(r["text"]).text for r in dev]
    log.info(
        "train %d, dev %d; positives per output (train): %s",
        len(train),
        len(dev),
        dict(zip(OUTPUTS, y_train.sum(0).astype(int).tolist(), strict=True)),
    )

    # 2. model
    tokenizer = load_tokenizer(args.base_model)
    model = FraudClassifier.from_base(args.base_model)
    pos = y_train.sum(0)
    pos_weight = torch.tensor(
        np.clip((len(y_train) - pos) / np.maximum(pos, 1), 1.0, args.max_pos_weight), dtype=torch.float32
    )
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    head_params = list(model.head.parameters())
    head_ids = {id(p) for p in head_params}
    encoder_params = [p for p in model.parameters() if id(p) not in head_ids]
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder_params, "lr": args.learning_rate},
            {"params": head_params, "lr": args.head_learning_rate},
        ],
        weight_decay=args.weight_decay,
    )
    steps_per_epoch = math.ceil(len(train) * (1 + args.augment_prob + args.context_prob) / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total_steps), total_steps)

    # 3. train with early stopping on dev
    rng = random.Random(args.seed)
    best_score, best_epoch, history = -1.0, -1, []
    out = Path(args.output_dir)
    state = {"epoch": 0}
    if args.resume and (out / CHECKPOINT).is_dir():
        state = load_checkpoint(out / CHECKPOINT, model, optimizer, scheduler, rng)
        best_score, best_epoch, history = state["best_score"], state["best_epoch"], state["history"]
        started -= history[-1]["elapsed_s"] if history else 0.0  # wall time counts the earlier run too
        log.info(
            "resumed from %s after epoch %d (best epoch %d)", out / CHECKPOINT, state["epoch"], best_epoch
        )
    for epoch in range(state["epoch"] + 1, args.epochs + 1):
        if best_epoch > 0 and epoch - 1 - best_epoch >= args.patience:
            break  # a resumed run that had already stopped early
        model.train()
        examples = [(r["text"], y_train[i]) for i, r in enumerate(train)]
        examples += [
            (augment(r["text"], rng), y_train[i])
            for i, r in enumerate(train)
            if rng.random() < args.augment_prob
        ]
        examples += [
            (in_context(r["text"], benign, rng), y_train[i])
            for i, r in enumerate(train)
            if rng.random() < args.context_prob
        ]
        rng.shuffle(examples)
        texts = [normalize(t).text for t, _ in examples]
        labels = np.stack([y for _, y in examples])
        losses = []
        bar = tqdm(range(0, len(texts), args.batch_size), desc=f"epoch {epoch}/{args.epochs}", mininterval=10)
        for i in bar:
            batch = encode_batch(tokenizer, texts[i : i + args.batch_size], args.max_length)
            logits = model(**batch)
            loss = loss_fn(logits, torch.from_numpy(labels[i : i + args.batch_size]))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        probs = sigmoid(predict_logits(model, tokenizer, dev_texts, args.max_length))
        metrics = dev_metrics(probs, y_dev)
        history.append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)),
                **metrics,
                "elapsed_s": round(time.time() - started, 1),
            }
        )
        log.info("epoch %d: loss %.4f dev %s", epoch, np.mean(losses), metrics)
        if metrics["score"] > best_score:
            best_score, best_epoch = metrics["score"], epoch
            thresholds = tune_thresholds(probs, y_dev)
            tuned = dev_metrics(probs, y_dev, thresholds)
            model.save(
                out,
                tokenizer,
                extra={
                    "max_length": args.max_length,
                    "thresholds": {o: round(float(t), 2) for o, t in zip(OUTPUTS, thresholds, strict=True)},
                    "dev_metrics_at_0.5": metrics,
                    "dev_metrics_tuned": tuned,
                    "epoch": epoch,
                    "base_model": str(args.base_model),
                },
            )
        save_checkpoint(
            out / CHECKPOINT,
            model,
            optimizer,
            scheduler,
            rng,
            {"epoch": epoch, "best_score": best_score, "best_epoch": best_epoch, "history": history},
        )
        if epoch - best_epoch >= args.patience:
            log.info("no dev improvement for %d epochs: stopping", args.patience)
            break

    wall = time.time() - started
    summary = {
        "args": asdict(args),
        "best_epoch": best_epoch,
        "best_dev_score": best_score,
        "history": history,
        "wall_time_s": round(wall, 1),
        "train_size": len(train),
        "num_layers": getattr(model.encoder.config, "num_hidden_layers", None),
        "dev_size": len(dev),
        "pos_weight": pos_weight.tolist(),
    }
    summary["feedback"] = feedback_stats
    (out / "training_summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    log.info(
        "best epoch %d (dev score %.4f); wall time %.1f min; saved to %s",
        best_epoch,
        best_score,
        wall / 60,
        out,
    )
    return out


if __name__ == "__main__":
    main()
