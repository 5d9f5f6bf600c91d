"""Average the weights of fine-tuned classifiers that share one base encoder: a "model soup", chosen on dev.

    python -m fanzha.training.soup --model_dirs runs/a runs/b runs/c --output_dir runs/soup

Why: runs fine-tuned from the same pretrained encoder lie in one basin of the loss, so the mean of their
weights is itself a good model, of the same size and speed as one of them (an ensemble would cost one encoder
run per member). Its errors on text unlike the training data are usually fewer than the best member's
(Wortsman et al., 2022, "Model soups"): the fine-tunes agree on what a lure is and disagree on the accidents
of their own run, and averaging keeps the first.

Steps (`main`):
1. load every ingredient and refuse a set that does not share one architecture and one tokenizer;
2. score each on dev (the trainer's own dev score: fraud F1 and label macro-F1 at 0.5);
3. greedy (the default): start from the best ingredient and add each next-best one if the averaged model's
   dev score does not fall; uniform: average them all;
4. tune thresholds on dev and save the soup as the trainer saves a run (`export` reads it the same way), with
   a `training_summary.json` that names the ingredients and their dev scores.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import HfArgumentParser

from fanzha.datasets.corpus import load_corpus
from fanzha.models.labels import OUTPUTS
from fanzha.models.normalize import normalize

from .metrics import dev_metrics, sigmoid, targets, tune_thresholds
from .model import FraudClassifier, predict_logits

log = logging.getLogger("fanzha.soup")
RECIPES = ("greedy", "uniform")


@dataclass
class SoupArguments:
    model_dirs: list[str] = field(
        metadata={"help": "fine-tuned runs (fanzha.training.train outputs) of one base encoder"}
    )
    output_dir: str = field(
        default="runs/soup", metadata={"help": "where the averaged checkpoint goes (a train-style run dir)"}
    )
    recipe: str = field(
        default="greedy",
        metadata={
            "help": "greedy: add runs best-first while the dev score does not fall; uniform: average them all"
        },
    )
    corpus: str | None = field(
        default=None, metadata={"help": "corpus whose dev split scores the soup (default: datasets/corpus)"}
    )


class SoupError(ValueError):
    """The runs cannot be averaged into one model."""


def state_of(model: FraudClassifier) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def average(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of state dicts with the same keys and shapes (integer buffers: the first's)."""
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            out[key] = torch.stack([s[key].float() for s in states]).mean(dim=0).to(first.dtype)
        else:  # e.g. position ids: identical in every run
            out[key] = first.clone()
    return out


def check_compatible(names: list[str], states: list[dict[str, torch.Tensor]], tokenizers: list[str]) -> None:
    """SoupError naming the first run whose tokenizer, parameters or shapes differ from the first run's."""
    reference = {k: tuple(v.shape) for k, v in states[0].items()}
    for name, state, tok in zip(names[1:], states[1:], tokenizers[1:], strict=True):
        if tok != tokenizers[0]:
            raise SoupError(f"{name} has another tokenizer than {names[0]}: runs of one base only")
        shapes = {k: tuple(v.shape) for k, v in state.items()}
        if shapes != reference:
            differ = sorted(set(shapes.items()) ^ set(reference.items()))[:3]
            raise SoupError(f"{name} does not have {names[0]}'s architecture (e.g. {differ})")


def main(argv: list[str] | None = None) -> Path:
    (args,) = HfArgumentParser(SoupArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.time()
    if args.recipe not in RECIPES:
        raise SystemExit(f"--recipe must be one of {RECIPES}, got {args.recipe!r}")
    if len(args.model_dirs) < 2:
        raise SystemExit("a soup needs at least two runs")
    out = Path(args.output_dir)
    if out.resolve() in {Path(d).resolve() for d in args.model_dirs}:
        raise SystemExit(f"--output_dir {out} is one of the ingredients; it would be overwritten")

    # 1. ingredients: their weights (every run's tokenizer is the same: checked below)
    configs, tokenizer_hashes, states = [], [], []
    for i, d in enumerate(args.model_dirs):
        model, run_tokenizer, config = FraudClassifier.load(d)
        if i == 0:  # the first run's model and tokenizer: the trial averages are loaded into it
            soup, tokenizer = model, run_tokenizer
        configs.append(config)
        tokenizer_hashes.append(hashlib.sha256((Path(d) / "tokenizer.json").read_bytes()).hexdigest())
        states.append(state_of(model))
    try:
        check_compatible(args.model_dirs, states, tokenizer_hashes)
    except SoupError as e:
        raise SystemExit(str(e)) from None
    max_length = int(configs[0].get("max_length", 128))

    # 2. each ingredient on dev
    dev = load_corpus(args.corpus, splits=["dev"])
    if not dev:
        raise SystemExit("the corpus has no dev split to choose on")
    texts, y = [normalize(r["text"]).text for r in dev], targets(dev)

    def dev_score(state: dict[str, torch.Tensor]) -> tuple[float, np.ndarray]:
        soup.load_state_dict(state)
        probs = sigmoid(predict_logits(soup, tokenizer, texts, max_length))
        return dev_metrics(probs, y)["score"], probs

    scores = {d: dev_score(s)[0] for d, s in zip(args.model_dirs, states, strict=True)}
    log.info("ingredients on dev: %s", {d: round(s, 4) for d, s in scores.items()})

    # 3. the soup
    ranked = sorted(args.model_dirs, key=lambda d: -scores[d])
    by_dir = dict(zip(args.model_dirs, states, strict=True))
    if args.recipe == "uniform":
        chosen = ranked
        best, probs = dev_score(average([by_dir[d] for d in chosen]))
    else:
        chosen = [ranked[0]]
        best, probs = dev_score(by_dir[ranked[0]])
        for d in ranked[1:]:
            score, trial_probs = dev_score(average([by_dir[c] for c in [*chosen, d]]))
            log.info("with %s: dev %.4f (soup so far %.4f)", d, score, best)
            if score >= best:
                chosen, best, probs = [*chosen, d], score, trial_probs
    soup.load_state_dict(average([by_dir[d] for d in chosen]))

    # 4. thresholds and the run directory
    thresholds = tune_thresholds(probs, y)
    soup.save(
        out,
        tokenizer,
        extra={
            "max_length": max_length,
            "thresholds": {o: round(float(t), 2) for o, t in zip(OUTPUTS, thresholds, strict=True)},
            "dev_metrics_at_0.5": dev_metrics(probs, y),
            "dev_metrics_tuned": dev_metrics(probs, y, thresholds),
            "base_model": configs[0].get("base_model", ""),
            "soup": chosen,
        },
    )
    summary = soup_summary(args, chosen, scores, best, time.time() - started)
    (out / "training_summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    log.info("soup of %d runs (%s): dev %.4f; saved to %s", len(chosen), ", ".join(chosen), best, out)
    return out


def soup_summary(
    args: SoupArguments, chosen: list[str], scores: dict[str, float], best: float, wall_s: float
) -> dict:
    """The first chosen run's training summary (what the model card reads), plus what the soup is made of."""
    first = json.loads((Path(chosen[0]) / "training_summary.json").read_text())
    ingredients = []
    for d in args.model_dirs:
        s = json.loads((Path(d) / "training_summary.json").read_text())
        ingredients.append(
            {
                "run": d,
                "seed": s["args"].get("seed"),
                "dev_score": round(scores[d], 4),
                "in_soup": d in chosen,
                "wall_time_s": s.get("wall_time_s"),
            }
        )
    return {
        **first,
        "best_dev_score": best,
        # the soup's cost is its runs' training plus its own few minutes
        "wall_time_s": round(sum(i["wall_time_s"] or 0 for i in ingredients if i["in_soup"]) + wall_s, 1),
        "soup": {"recipe": args.recipe, "ingredients": ingredients, "soup_wall_time_s": round(wall_s, 1)},
    }


if __name__ == "__main__":
    main()
