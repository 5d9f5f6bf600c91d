"""Fine-tune the fraud classifier on the authored corpus.

    python -m fanzha.training.train --base_model runs/base --output_dir runs/model

Steps: load the corpus splits → normalise text exactly as the runtime does → build the classifier on the
base encoder → train with class-weighted BCE, fresh evasion augmentation every epoch, linear warm-up/decay
→ evaluate on dev after each epoch, keep the best, stop early → tune per-output thresholds on dev → save.

With `--behaviour_weight` > 0 the encoder also learns what each message DOES: the conversation corpus's
per-message stages (bait, channel_move, payment_demand, credential_request, …, warning, none) are predicted
by a second, training-only head from the same pooled vector. The aim is an encoder that tells "asks for a
move, money or a code" from "talks about it", which the fraud head then reads. The exported graph is the
same shape either way (the behaviour head is not exported).
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
from fanzha.datasets.conversation_corpus import load_conversations
from fanzha.datasets.corpus import load_corpus
from fanzha.datasets.feedback import join_feedback, load_feedback
from fanzha.models.conversation import STAGES
from fanzha.models.labels import OUTPUTS
from fanzha.models.normalize import normalize

from .metrics import dev_metrics, sigmoid, targets, tune_thresholds
from .model import CONFIG_NAME, FraudClassifier, encode_batch, load_tokenizer, predict_logits
from .torch_reader import pick_device

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
    group_by_length: bool = field(
        default=True,
        metadata={
            "help": "batch examples of similar length together (sorted within shuffled groups of 64 batches, the "
            "batches then shuffled): a random batch pads to its longest example, which cost 3.6x the tokens here"
        },
    )
    patience: int = field(default=2, metadata={"help": "epochs without dev improvement before stopping"})
    max_pos_weight: float = field(
        default=4.0, metadata={"help": "cap of the per-output positive class weight"}
    )
    seed: int = field(
        default=13,
        metadata={
            "help": "random seed (the new heads' first weights; data order, augmentation and dropout too, unless --data_seed)"
        },
    )
    data_seed: int | None = field(
        default=None,
        metadata={
            "help": "seed of the data order, the augmentation and dropout alone (default: --seed): runs that differ only in "
            "it start from the same weights, so the mean of their weights is a model too (fanzha.training.soup)"
        },
    )
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
    device: str = field(
        default="auto", metadata={"help": "torch device: auto (a GPU when present), cpu, cuda"}
    )
    exclude_authors: str = field(
        default="",
        metadata={
            "help": "comma-separated authors (a17,a18) whose TRAIN messages are left out: what a round adds; "
            "dev and test stay whole"
        },
    )
    behaviour_weight: float = field(
        default=0.0,
        metadata={
            "help": "weight of the auxiliary behaviour loss (per-message stages of the conversation corpus); "
            "0 = off"
        },
    )
    conversations: str | None = field(
        default=None,
        metadata={"help": "conversation corpus for the behaviour loss (default: datasets/conversations)"},
    )
    feedback: list[str] | None = field(
        default=None,
        metadata={
            "help": "JSONL files from `fanzha export-feedback` (moderated user reports): "
            "added to the train split only, never to dev/test"
        },
    )
    warm_start: bool = field(
        default=False,
        metadata={
            "help": "--base_model is a fanzha checkpoint (a train or soup output): start from its head as well as its "
            "encoder and continue fine-tuning (e.g. on a new authoring round); default: a fresh head on an encoder"
        },
    )


def batch_order(
    lengths: list[int], batch_size: int, rng: random.Random, group_by_length: bool, group: int = 64
) -> list[list[int]]:
    """The epoch's batches as index lists, every index once. Grouped by length: each run of `group` batches (in
    the already-shuffled order) is sorted by length before it is cut, so a batch pads little, and the batches are
    then shuffled, so no epoch walks from short to long."""
    idx = list(range(len(lengths)))
    if not group_by_length:
        return [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)]
    batches = []
    for start in range(0, len(idx), batch_size * group):
        chunk = sorted(idx[start : start + batch_size * group], key=lengths.__getitem__)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


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
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "numpy_rng": np.random.get_state(),
        },
        tmp / "state.pt",
    )
    (tmp / "progress.json").write_text(json.dumps(state, indent=2))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def load_checkpoint(path: Path, model: FraudClassifier, optimizer, scheduler, rng: random.Random) -> dict:
    # on the CPU first: a run saved on a GPU resumes anywhere (load_state_dict moves tensors to the model)
    saved = torch.load(path / "state.pt", weights_only=False, map_location="cpu")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    rng.setstate(saved["rng"])
    torch.set_rng_state(saved["torch_rng"])
    np.random.set_state(saved["numpy_rng"])
    if saved.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda_rng"])
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
    excluded = {
        "authored:" + a.strip().removeprefix("authored:")
        for a in args.exclude_authors.split(",")
        if a.strip()
    }
    unknown = excluded - {r.get("provenance") for r in train}
    if unknown:  # a typo would silently train on everything
        raise SystemExit(f"--exclude_authors names authors with no train messages: {sorted(unknown)}")
    train = [r for r in train if r.get("provenance") not in excluded]
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
    behaviour = behaviour_examples(args) if args.behaviour_weight > 0 else []
    log.info(
        "train %d (+%d behaviour-only messages), dev %d; positives per output (train): %s",
        len(train),
        len(behaviour),
        len(dev),
        dict(zip(OUTPUTS, y_train.sum(0).astype(int).tolist(), strict=True)),
    )

    # 2. model
    device = pick_device(args.device)
    tokenizer = load_tokenizer(args.base_model)
    model = (
        warm_start_model(args.base_model) if args.warm_start else FraudClassifier.from_base(args.base_model)
    )
    # training-only: what a message does (its conversation stage), read from the same pooled vector
    behaviour_head = torch.nn.Linear(model.head.in_features, len(STAGES)) if behaviour else None
    if behaviour_head is not None:
        model.add_module("behaviour_head", behaviour_head)
    model.to(device)
    if args.data_seed is not None:  # the heads are drawn: from here on, torch's draws are dropout's
        torch.manual_seed(args.data_seed)
    pos = y_train.sum(0)
    pos_weight = torch.tensor(
        np.clip((len(y_train) - pos) / np.maximum(pos, 1), 1.0, args.max_pos_weight), dtype=torch.float32
    )
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight.to(device), reduction="none")
    head_params = list(model.head.parameters()) + (
        list(behaviour_head.parameters()) if behaviour_head is not None else []
    )
    head_ids = {id(p) for p in head_params}
    encoder_params = [p for p in model.parameters() if id(p) not in head_ids]
    optimizer = torch.optim.AdamW(
        [
            {"params": encoder_params, "lr": args.learning_rate},
            {"params": head_params, "lr": args.head_learning_rate},
        ],
        weight_decay=args.weight_decay,
    )
    per_epoch = len(train) * (1 + args.augment_prob + args.context_prob) + len(behaviour)
    steps_per_epoch = math.ceil(per_epoch / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(args.warmup_ratio * total_steps), total_steps)

    # 3. train with early stopping on dev
    rng = random.Random(args.seed if args.data_seed is None else args.data_seed)  # data order, augmentation
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
        no_stage = -100  # cross-entropy's ignore index: a corpus message has no stage label
        examples = [(r["text"], y_train[i], no_stage) for i, r in enumerate(train)]
        examples += [
            (augment(r["text"], rng), y_train[i], no_stage)
            for i, r in enumerate(train)
            if rng.random() < args.augment_prob
        ]
        examples += [
            (in_context(r["text"], benign, rng), y_train[i], no_stage)
            for i, r in enumerate(train)
            if rng.random() < args.context_prob
        ]
        # a chat line alone has no fraud label (its conversation has): it teaches the behaviour head only
        examples += [(text, None, stage) for text, stage in behaviour]
        rng.shuffle(examples)
        texts = [normalize(t).text for t, _, _ in examples]
        has_label = np.array([y is not None for _, y, _ in examples], dtype=np.float32)
        labels = np.stack(
            [y if y is not None else np.zeros(len(OUTPUTS), np.float32) for _, y, _ in examples]
        )
        stages = np.array([s for _, _, s in examples], dtype=np.int64)
        losses = []
        batches = batch_order([len(t) for t in texts], args.batch_size, rng, args.group_by_length)
        bar = tqdm(batches, desc=f"epoch {epoch}/{args.epochs}", mininterval=10)
        for rows in bar:
            batch_texts = [texts[i] for i in rows]
            batch = {
                k: v.to(device) for k, v in encode_batch(tokenizer, batch_texts, args.max_length).items()
            }
            pooled = model.dropout(model.pool(**batch))
            weight = torch.from_numpy(has_label[rows]).to(device)
            per_row = loss_fn(model.head(pooled), torch.from_numpy(labels[rows]).to(device)).mean(dim=1)
            loss = (per_row * weight).sum() / weight.sum().clamp(min=1.0)
            if behaviour_head is not None and (stages[rows] != no_stage).any():
                loss = loss + args.behaviour_weight * torch.nn.functional.cross_entropy(
                    behaviour_head(pooled), torch.from_numpy(stages[rows]).to(device), ignore_index=no_stage
                )
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
        "train_authors": sorted({r.get("provenance", "") for r in train}),
        "num_layers": getattr(model.encoder.config, "num_hidden_layers", None),
        "dev_size": len(dev),
        "pos_weight": pos_weight.tolist(),
    }
    summary["feedback"] = feedback_stats
    summary["behaviour_messages"] = len(behaviour)
    base_record = (
        Path(args.base_model) / "fanzha_base.json"
    )  # written by build_base: a fresh run, not a warm start
    summary["base"] = json.loads(base_record.read_text()) if base_record.exists() else None
    if args.warm_start:  # the checkpoint this run continued: its own lineage is in its summary
        started_from = Path(args.base_model) / "training_summary.json"
        summary["warm_start"] = {
            "from": args.base_model,
            "summary": json.loads(started_from.read_text()) if started_from.exists() else None,
        }
    summary["device"] = device.type
    (out / "training_summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    log.info(
        "best epoch %d (dev score %.4f); wall time %.1f min; saved to %s",
        best_epoch,
        best_score,
        wall / 60,
        out,
    )
    return out


def warm_start_model(checkpoint: str) -> FraudClassifier:
    """The classifier saved in `checkpoint` (encoder and head), ready to train on; SystemExit when it is not one."""
    path = Path(checkpoint)
    missing = [name for name in (CONFIG_NAME, "head.safetensors") if not (path / name).exists()]
    if missing:
        raise SystemExit(
            f"--warm_start needs a fanzha checkpoint (a train or soup output) as --base_model; {path} has no "
            f"{', '.join(missing)}"
        )
    model, _, config = FraudClassifier.load(path)
    if list(config["outputs"]) != list(OUTPUTS):
        raise SystemExit(f"{path} predicts {config['outputs']}, this trainer {list(OUTPUTS)}")
    log.info("warm start: encoder and head from %s", path)
    return model.train()


def behaviour_examples(args: TrainArguments) -> list[tuple[str, int]]:
    """(message text, stage index) for every message of the TRAIN conversations: read alone, with its stage."""
    conversations = load_conversations(args.conversations, splits=["train"])
    return [(m["text"], STAGES.index(m["stage"])) for c in conversations for m in c["messages"]]


if __name__ == "__main__":
    main()
