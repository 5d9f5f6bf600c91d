"""Train and evaluate several candidate models, then write one comparison table.

    python -m fanzha.training.sweep --plan training/sweeps/issue13.json --output_dir runs/sweep \
        --parallel 4 --report reports/MODEL_COMPARISON.md

The plan (JSON) names the base encoders, the training arguments every run shares, and each run's own
arguments. Every run is `fanzha.training.train` followed by `fanzha.training.evaluate` on its checkpoint
(fp32, the runtime's token windows, no baselines), each in its own process with its own log. Several runs
can share one GPU: these encoders are small, so a single run leaves most of the card idle. A run whose
metrics.json already exists is not repeated, so an interrupted sweep continues where it stopped.
The table is `fanzha.training.compare`'s; the model is chosen on dev (`best` in sweep.json).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from . import compare

log = logging.getLogger("fanzha.sweep")


@dataclass
class SweepArguments:
    plan: str = field(
        default="training/sweeps/issue13.json", metadata={"help": "JSON: base_models, common args, runs"}
    )
    output_dir: str = field(default="runs/sweep", metadata={"help": "one checkpoint directory per run"})
    parallel: int = field(default=1, metadata={"help": "runs at once (several fit on one GPU)"})
    only: str = field(default="", metadata={"help": "comma-separated run ids to do (default: all)"})
    report: str | None = field(default=None, metadata={"help": "write the comparison table here"})
    extra: str = field(
        default="",
        metadata={"help": "extra arguments for every train call, space-separated (quick runs, tests)"},
    )
    eval_extra: str = field(
        default="", metadata={"help": "extra arguments for every evaluate call, space-separated"}
    )


def commands(plan: dict, run: dict, out: Path, extra: list[str], eval_extra: list[str]) -> list[list[str]]:
    base = plan["base_models"][run["base"]]
    train = [
        sys.executable,
        "-m",
        "fanzha.training.train",
        "--base_model",
        base,
        "--output_dir",
        str(out),
        *plan.get("common", []),
        *run.get("args", []),
        *extra,
    ]
    evaluate = [
        sys.executable,
        "-m",
        "fanzha.training.evaluate",
        "--model_dir",
        str(out),
        "--report_dir",
        str(out),
        "--baselines",
        "false",
        *eval_extra,
    ]
    return [train, evaluate]


def main(argv: list[str] | None = None) -> dict:
    (args,) = HfArgumentParser(SweepArguments).parse_args_into_dataclasses(args=argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.parallel < 1:
        raise SystemExit(f"--parallel must be at least 1, got {args.parallel}")
    plan = json.loads(Path(args.plan).read_text())
    root = Path(args.output_dir)
    root.mkdir(parents=True, exist_ok=True)
    wanted = {r.strip() for r in args.only.split(",") if r.strip()}
    runs = [r for r in plan["runs"] if not wanted or r["id"] in wanted]
    unknown = wanted - {r["id"] for r in plan["runs"]}
    if unknown:
        raise SystemExit(f"--only names runs the plan lacks: {sorted(unknown)}")

    # each run is a chain of commands; up to `parallel` chains advance at once
    pending = [r for r in runs if not (root / r["id"] / "metrics.json").exists()]
    active: dict[str, tuple[subprocess.Popen, list[list[str]], object]] = {}
    failed: dict[str, int] = {}
    started = time.time()
    while pending or active:
        while pending and len(active) < args.parallel:
            run = pending.pop(0)
            out = root / run["id"]
            out.mkdir(parents=True, exist_ok=True)
            chain = commands(plan, run, out, args.extra.split(), args.eval_extra.split())
            logfile = open(out / "sweep.log", "a")  # noqa: SIM115 — closed when the chain ends
            log.info("start %s", run["id"])
            active[run["id"]] = (
                subprocess.Popen(chain[0], stdout=logfile, stderr=subprocess.STDOUT),
                chain[1:],
                logfile,
            )
        time.sleep(1.0)
        for run_id, (proc, rest, logfile) in list(active.items()):
            code = proc.poll()
            if code is None:
                continue
            if code != 0 or not rest:
                logfile.close()
                del active[run_id]
                if code != 0:
                    failed[run_id] = code
                log.info("%s %s (%.0fs)", "failed" if code else "done", run_id, time.time() - started)
                continue
            active[run_id] = (
                subprocess.Popen(rest[0], stdout=logfile, stderr=subprocess.STDOUT),
                rest[1:],
                logfile,
            )

    done = [r for r in runs if (root / r["id"] / "metrics.json").exists()]
    dev = {
        r["id"]: json.loads((root / r["id"] / "training_summary.json").read_text())["best_dev_score"]
        for r in done
    }
    best = max(dev, key=dev.get) if dev else None
    result = {
        "dev_scores": dev,
        "best": best,
        "failed": failed,
        "wall_time_s": round(time.time() - started, 1),
    }
    (root / "sweep.json").write_text(json.dumps(result, indent=2))
    table = (
        ""
        if not done
        else compare.main(
            [f"{r['name']}={root / r['id']}" for r in done]
            + (["--output", args.report] if args.report else [])
        )
    )
    log.info("chosen on dev: %s; failed: %s", best, failed or "none")
    if failed:
        raise SystemExit(f"runs failed (see their sweep.log): {failed}")
    return {**result, "table": table}


if __name__ == "__main__":
    main()
