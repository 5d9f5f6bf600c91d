"""Train and evaluate several candidate models, then write one comparison table.

    python -m fanzha.training.sweep --plan training/sweeps/issue13.json --output_dir runs/sweep \
        --parallel 4 --report reports/MODEL_COMPARISON.md

The plan (JSON) names the base encoders, the training arguments every run shares, and each run's own
arguments. Every run is `fanzha.training.train` followed by `fanzha.training.evaluate` on its checkpoint
(fp32, the runtime's token windows, no baselines), each in its own process with its own log. With
`--export true` each checkpoint is also exported to int8 (`<run>/export`), and the exports are compared on dev
through the Detector (`fanzha.training.select`): the shipping choice, `selected` in sweep.json.
`--evaluate false` leaves out the test and external scoring (choose first, measure the chosen one after). Several runs
can share one GPU: these encoders are small, so a single run leaves most of the card idle. A run whose
metrics.json already exists is not repeated, so an interrupted sweep continues where it stopped.
The table is `fanzha.training.compare`'s; the model is chosen on dev (`best` in sweep.json).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser

from . import compare, select

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
    evaluate: bool = field(
        default=True, metadata={"help": "score each checkpoint on test and the external sets (evaluate)"}
    )
    export: bool = field(
        default=False,
        metadata={"help": "export each checkpoint to int8 and choose among the exports on dev (select)"},
    )
    export_extra: str = field(
        default="", metadata={"help": "extra arguments for every export call, space-separated"}
    )


def commands(
    plan: dict,
    run: dict,
    out: Path,
    extra: list[str],
    eval_extra: list[str],
    export_extra: list[str] | None = None,
    evaluate: bool = True,
) -> list[list[str]]:
    """train, then export when `export_extra` is given (a list, maybe empty), then evaluate when asked."""
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
    evaluate_ = [
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
    export = [
        sys.executable,
        "-m",
        "fanzha.training.export",
        "--model_dir",
        str(out),
        "--output_dir",
        str(out / "export"),
        "--work_dir",
        str(out / "export-work"),
        "--version",
        f"fanzha-text-{run['id']}-int8",
        *(export_extra or []),
    ]
    return [train] + ([export] if export_extra is not None else []) + ([evaluate_] if evaluate else [])


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

    def finished(run_id: str) -> bool:
        out = root / run_id
        return (
            (not args.evaluate or (out / "metrics.json").exists())
            and (not args.export or (out / "export" / "model.onnx").exists())
            and (out / "training_summary.json").exists()
        )

    # each run is a chain of commands; up to `parallel` chains advance at once
    pending = [r for r in runs if not finished(r["id"])]
    active: dict[str, tuple[subprocess.Popen, list[list[str]], object]] = {}
    failed: dict[str, int] = {}
    started = time.time()
    while pending or active:
        while pending and len(active) < args.parallel:
            run = pending.pop(0)
            out = root / run["id"]
            out.mkdir(parents=True, exist_ok=True)
            chain = commands(
                plan,
                run,
                out,
                args.extra.split(),
                args.eval_extra.split(),
                args.export_extra.split() if args.export else None,
                args.evaluate,
            )
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

    done = [r for r in runs if finished(r["id"])]
    dev = {
        r["id"]: json.loads((root / r["id"] / "training_summary.json").read_text())["best_dev_score"]
        for r in done
    }
    selected = None
    if args.export and done:  # the shipping choice: the Detector on dev at each export's own thresholds
        corpus = _option(plan.get("common", []) + args.extra.split(), "--corpus")
        chosen = select.main(
            [str(root / r["id"] / "export") for r in done] + (["--corpus", corpus] if corpus else [])
        )["chosen"]
        selected = Path(chosen).parent.name
    best = max(dev, key=dev.get) if dev else None
    result = {
        "dev_scores": dev,
        "best": best,
        "selected": selected,
        "failed": failed,
        "wall_time_s": round(time.time() - started, 1),
    }
    (root / "sweep.json").write_text(json.dumps(result, indent=2))
    measured = [r for r in done if (root / r["id"] / "metrics.json").exists()]
    table = (
        ""
        if not measured
        else compare.main(
            [f"{r['name']}={root / r['id']}" for r in measured]
            + (["--output", args.report] if args.report else [])
        )
    )
    log.info(
        "chosen on dev: %s (training score), %s (Detector, exports); failed: %s",
        best,
        selected,
        failed or "none",
    )
    if failed:
        raise SystemExit(f"runs failed (see their sweep.log): {failed}")
    return {**result, "table": table}


def _option(argv: list[str], name: str) -> str | None:
    """The value of `name` in an argument list (`--x v` or `--x=v`; the last one wins)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument(name)
    return vars(parser.parse_known_args(argv)[0])[name.lstrip("-").replace("-", "_")]


if __name__ == "__main__":
    main()
