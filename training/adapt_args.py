"""The arguments of `fanzha adapt` (stdlib only, so that building the CLI imports no model code)."""

from __future__ import annotations

import argparse
import dataclasses
import math
from dataclasses import dataclass, field


@dataclass
class AdaptArguments:
    traffic: str = field(
        metadata={
            "help": "unlabelled sample of the platform's messages: .jsonl, .jsonl.gz or .parquet with a text column"
        }
    )
    output: str = field(
        metadata={
            "help": "directory for the adapted model (must not exist or be empty; never the base model)"
        }
    )
    base_model: str = field(
        default="",
        metadata={
            "help": "model directory to adapt (model.onnx + tokenizer.json); default: the committed model"
        },
    )
    corpus: str | None = field(
        default=None, metadata={"help": "labelled corpus dir or JSONL (default: datasets/corpus)"}
    )
    feedback: list[str] = field(
        default_factory=list,
        metadata={"help": "JSONL files from `fanzha export-feedback` (moderated reports)"},
    )
    text_field: str = field(default="text", metadata={"help": "column holding the message text"})
    group_field: str = field(
        default="source",
        metadata={"help": "optional column to break the report down by (e.g. genre); ignored when absent"},
    )
    traffic_weight: float = field(
        default=1.0,
        metadata={
            "help": "total weight of the traffic, as a multiple of the corpus' benign weight (when no search)"
        },
    )
    traffic_weights: list[float] = field(
        default_factory=lambda: [2.0, 8.0],
        metadata={
            "help": "candidate traffic weights, tried with each of --heads: each candidate is fitted without a validation "
            "slice of the traffic, and the one whose validation flag rate is lowest (at the recall-keeping threshold) is "
            "refitted on all of it"
        },
    )
    feedback_weight: float = field(
        default=3.0, metadata={"help": "weight of one moderated feedback record (a corpus record weighs 1)"}
    )
    heads: list[str] = field(
        default_factory=lambda: ["32:1", "128:0.3"],
        metadata={
            "help": "candidate heads, each WIDTH:L2 — the units of the ReLU layer added to the re-fitted linear head "
            "(0: the linear head alone) and its pull towards the base head (per 1,000 weighted examples); searched "
            "with the traffic weights, on the same validation slice"
        },
    )
    max_recall_drop: float = field(
        default=0.005, metadata={"help": "largest drop in dev fraud recall the review threshold may cost"}
    )
    per_author: bool = field(
        default=True,
        metadata={
            "help": "hold recall for every author of the labelled check set (dev and train), not only overall (each may lose "
            "the allowed drop or one lure, whichever is more)"
        },
    )
    check_folds: int = field(
        default=5,
        metadata={
            "help": "folds of train authors for the recall check: each fold is read by a head fitted without it"
        },
    )
    max_traffic: int = field(default=200_000, metadata={"help": "read at most this many traffic messages"})
    held_out: float = field(
        default=0.2,
        metadata={"help": "fraction of the traffic held out of the fit, for the before/after flag rates"},
    )
    threads: int = field(default=0, metadata={"help": "onnxruntime threads (0 = all cores)"})
    seed: int = field(default=13, metadata={"help": "seed of the held-out split"})


def parse_args(argv: list[str] | None = None) -> AdaptArguments:
    parser = argparse.ArgumentParser(
        prog="fanzha adapt",
        description="Adapt a model to a platform's own traffic (re-fits the head on ONNX sentence vectors).",
    )
    add_arguments(parser)
    return arguments_from(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """AdaptArguments as command-line flags (used by `fanzha adapt` and `python -m fanzha.training.adapt`)."""
    for f in dataclasses.fields(AdaptArguments):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        kwargs: dict = {"help": f.metadata.get("help", "")}
        if f.type in ("list[str]", "list[float]"):
            kwargs.update(nargs="*", default=f.default_factory(), type=float if "float" in f.type else str)
        elif isinstance(f.default, bool):
            kwargs.update(type=flag, default=f.default, metavar="true|false")
        elif not required:
            kwargs.update(type=str if f.default is None else type(f.default), default=f.default)
        parser.add_argument(f"--{f.name}", required=required, **kwargs)


def flag(value: str) -> bool:
    """A true/false option's value (`--per_author false`): argparse's own bool() reads any non-empty word as True."""
    words = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
    if value.lower() not in words:
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return words[value.lower()]


def arguments_from(ns: argparse.Namespace) -> AdaptArguments:
    return AdaptArguments(**{f.name: getattr(ns, f.name) for f in dataclasses.fields(AdaptArguments)})


def head_settings(heads: list[str]) -> list[tuple[int, float]]:
    """`--heads` as (ReLU units, L2) pairs, in the order given; ValueError naming the entry that is not WIDTH:L2."""
    out = []
    for entry in heads:
        width, sep, l2 = entry.partition(":")
        try:
            setting = (int(width), float(l2))
        except ValueError:
            setting = None
        if not sep or setting is None or not 0 <= setting[0] <= 4096 or not 0 < setting[1] < math.inf:
            raise ValueError(
                f"--heads entry {entry!r} is not WIDTH:L2 (0–4096 ReLU units, a finite L2 > 0), e.g. 32:1 or 0:1 for "
                "the linear head"
            )
        out.append(setting)
    if not out:
        raise ValueError("--heads needs at least one WIDTH:L2 entry")
    return list(dict.fromkeys(out))
