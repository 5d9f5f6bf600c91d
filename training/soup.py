"""Average the weights of fine-tuned classifiers that share one base encoder: a "model soup", chosen on dev.

    python -m fanzha.training.soup --model_dirs runs/a runs/b --output_dir runs/soup

Why: runs fine-tuned from the same pretrained encoder can lie in one basin of the loss, and then the mean of
their weights is itself a good model, of the size and speed of one of them (an ensemble costs one encoder
run per member), whose errors on text unlike the training data can be fewer than the best member's
(Wortsman et al., 2022, "Model soups"): the runs agree on what a lure is and disagree on the accidents of
their own run. It is not guaranteed: runs of another `--seed` also start their heads from other weights (two such runs
of the round-10 recipe averaged to a dev score below both), while runs that differ only in `--data_seed` start
from the same weights. So greedy, the default, keeps a run only when the averaged model does at least as
well on dev.

Steps (`main`):
1. load every run and refuse a set that is not one base, one tokenizer, one architecture and one label set;
2. score each on dev (the trainer's own dev score: fraud F1 and label macro-F1 at 0.5);
3. greedy: start from the best run and add each next-best one if the averaged model's dev score does not
   fall; uniform: average them all;
4. tune thresholds on dev and save the soup as the trainer saves a run (`export` reads it the same way), with
   a `training_summary.json` that lists the runs, how their settings differ and their dev scores.
"""

from __future__ import annotations

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
from fanzha.models.text import tokenizer_sha256

from .metrics import dev_metrics, sigmoid, targets, tune_thresholds
from .model import FraudClassifier, predict_logits

log = logging.getLogger("fanzha.soup")
# each recipe in words: the --recipe help and the model card's soup note
RECIPES = {
    "greedy": "greedy: the best run on dev first, each next one kept only if the averaged model's dev score does not fall",
    "uniform": "uniform: every run listed, weighted alike",
}
# what a run's settings may differ in without being a run of another recipe (reported, never refused)
NOT_SETTINGS = {"output_dir", "threads", "resume", "device"}


@dataclass
class SoupArguments:
    model_dirs: list[str] = field(
        metadata={"help": "fine-tuned runs (fanzha.training.train outputs) of one base encoder"}
    )
    output_dir: str = field(
        default="runs/soup", metadata={"help": "where the averaged run goes (a train-style run dir)"}
    )
    recipe: str = field(
        default="greedy",
        metadata={"help": "; ".join(RECIPES.values())},
    )
    corpus: str | None = field(
        default=None, metadata={"help": "corpus whose dev split scores the soup (default: datasets/corpus)"}
    )


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


def check_compatible(runs: list[str], states: list[dict], configs: list[dict], tokenizers: list[str]) -> None:
    """SystemExit naming the first run that is not of the first run's base, tokenizer, labels or architecture."""
    shapes = [{k: tuple(v.shape) for k, v in s.items()} for s in states]
    for i in range(1, len(runs)):
        if tokenizers[i] != tokenizers[0]:
            raise SystemExit(f"{runs[i]} has another tokenizer than {runs[0]}: runs of one base only")
        for key in ("base_model", "outputs", "max_length"):
            if configs[i].get(key) != configs[0].get(key):
                raise SystemExit(
                    f"{runs[i]} has {key} {configs[i].get(key)!r}, {runs[0]} {configs[0].get(key)!r}: runs of one base only"
                )
        if shapes[i] != shapes[0]:
            differ = sorted(set(shapes[i].items()) ^ set(shapes[0].items()))[:3]
            raise SystemExit(f"{runs[i]} does not have {runs[0]}'s architecture (e.g. {differ})")


def setting_differences(summaries: list[dict]) -> list[dict]:
    """Per run, the training options whose values differ from the first run's (what makes it another run)."""
    first = summaries[0]["args"]
    return [
        {k: v for k, v in s["args"].items() if k not in NOT_SETTINGS and v != first.get(k)} for s in summaries
    ]


def main(argv: list[str] | None = None) -> Path:
    """The averaged run's directory; when greedy keeps a single run, that run's (nothing is written)."""
    (args,) = HfArgumentParser(SoupArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.time()
    if args.recipe not in RECIPES:
        raise SystemExit(f"--recipe must be one of {tuple(RECIPES)}, got {args.recipe!r}")
    resolved = [Path(d).resolve() for d in args.model_dirs]
    if len(set(resolved)) < 2:
        raise SystemExit("a soup needs at least two different runs")
    if len(set(resolved)) < len(resolved):
        raise SystemExit("a run is given twice: it would weigh double")
    out = Path(args.output_dir)
    if out.resolve() in resolved:
        raise SystemExit(f"--output_dir {out} is one of the runs; it would be overwritten")

    # 1. the runs: their weights, settings and summaries (read before anything is written)
    configs, tokenizers, states, summaries = [], [], [], []
    for i, d in enumerate(args.model_dirs):
        summary_path = Path(d) / "training_summary.json"
        if not summary_path.is_file():
            raise SystemExit(f"{d} has no training_summary.json: not a fanzha.training.train run")
        summaries.append(json.loads(summary_path.read_text()))
        model, run_tokenizer, config = FraudClassifier.load(d)
        if i == 0:  # the first run's model and tokenizer: the trial averages are loaded into it
            soup, tokenizer = model, run_tokenizer
        configs.append(config)
        tokenizers.append(tokenizer_sha256(Path(d) / "tokenizer.json"))
        states.append(state_of(model))
    del model
    check_compatible(args.model_dirs, states, configs, tokenizers)
    max_length = int(configs[0].get("max_length", 128))

    # 2. each run on dev
    dev = load_corpus(args.corpus, splits=["dev"])
    if not dev:
        raise SystemExit("the corpus has no dev split to choose on")
    texts, y = [normalize(r["text"]).text for r in dev], targets(dev)

    def on_dev(state: dict[str, torch.Tensor]) -> tuple[float, np.ndarray]:
        soup.load_state_dict(state)
        probs = sigmoid(predict_logits(soup, tokenizer, texts, max_length))
        return dev_metrics(probs, y)["score"], probs

    alone = dict(zip(args.model_dirs, map(on_dev, states), strict=True))
    scores = {d: score for d, (score, _) in alone.items()}
    log.info("runs on dev: %s", {d: round(s, 4) for d, s in scores.items()})

    # 3. the soup
    ranked = sorted(args.model_dirs, key=lambda d: -scores[d])
    by_run = dict(zip(args.model_dirs, states, strict=True))
    if args.recipe == "uniform":
        chosen = ranked
        best, probs = on_dev(average([by_run[d] for d in chosen]))
    else:
        chosen, (best, probs) = [ranked[0]], alone[ranked[0]]
        for d in ranked[1:]:
            score, trial = on_dev(average([by_run[c] for c in [*chosen, d]]))
            log.info("with %s: dev %.4f (soup so far %.4f)", d, score, best)
            if score >= best:
                chosen, best, probs = [*chosen, d], score, trial
        if len(chosen) == 1:
            log.warning(
                "every average scored below %s alone on dev: nothing averaged, use it as it is", chosen[0]
            )
            return Path(chosen[0])
    soup.load_state_dict(average([by_run[d] for d in chosen]))

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
    ingredients = [
        {
            "run": d,
            "differs_in": diff,
            "dev_score": round(scores[d], 4),
            "in_soup": d in chosen,
            "wall_time_s": s.get("wall_time_s"),
        }
        for d, s, diff in zip(args.model_dirs, summaries, setting_differences(summaries), strict=True)
    ]
    wall = time.time() - started
    summary = {
        **summaries[0],  # the first run's settings and history: what the model card reads
        "best_dev_score": best,
        # the soup's cost: its runs' training and its own few minutes
        "wall_time_s": round(sum(i["wall_time_s"] or 0 for i in ingredients if i["in_soup"]) + wall, 1),
        "soup": {"recipe": args.recipe, "ingredients": ingredients, "soup_wall_time_s": round(wall, 1)},
    }
    (out / "training_summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    log.info("soup of %d runs (%s): dev %.4f; saved to %s", len(chosen), ", ".join(chosen), best, out)
    return out


if __name__ == "__main__":
    main()
