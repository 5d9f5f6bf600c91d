"""Archive scoring end to end: `fanzha score` JSONL → Parquet vs the bare classifier, and memory over a run.

    python bench/batch.py                         # 20,000 lines: throughput, ratio to the bare classifier
    python bench/batch.py --lines 1000000         # + peak RSS and RSS along the run (flat?)
    python bench/batch.py --ray                   # + the Ray engine (local mode) on the same input

The input is generated from the test split's messages (cycled, each line its own id). The bare
classifier (Detector.classify_texts in batches of 64, same threads) runs in this process first; each
`fanzha score` run is a subprocess whose RSS (with its children: Ray workers) is sampled every 0.5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from common import batched_throughput, messages

REPO = Path(__file__).resolve().parents[1]


def generate(path: Path, lines: int) -> None:
    pool = messages(1000)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(lines):
            f.write(
                json.dumps(
                    {"id": f"m{i}", "text": pool[i % len(pool)], "account_id": f"u{i % 5000}"},
                    ensure_ascii=False,
                )
                + "\n"
            )


def tree_rss_mb(proc: psutil.Process) -> float:
    try:
        procs = [proc, *proc.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20
    except psutil.Error:
        return 0.0


def run_score(src: Path, out: Path, threads: int, engine: str) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "fanzha.cli",
        "score",
        str(src),
        "-o",
        str(out),
        "-q",
        "--threads",
        str(threads),
        "--engine",
        engine,
        "--overwrite",
    ]
    t0 = time.perf_counter()
    proc = psutil.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples: list[tuple[float, float]] = []
    while proc.poll() is None:
        samples.append((time.perf_counter() - t0, tree_rss_mb(proc)))
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"fanzha score failed ({proc.returncode}):\n{err}")
    rss = [mb for _, mb in samples if mb > 0]
    # RSS along the run: at 25 %, 50 %, 75 % and 100 % of the wall time
    along = [max([mb for t, mb in samples if t <= wall * q] or [0.0]) for q in (0.25, 0.5, 0.75, 1.0)]
    return {
        "engine": engine,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(max(rss or [0.0]), 1),
        "rss_quartiles_mb": [round(x, 1) for x in along],
        "summary": err.strip().splitlines()[-1] if err.strip() else "",
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ray", action="store_true", help="also run --engine ray (distributed extra)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fanzha-batch-") as tmp:
        src = Path(tmp) / "archive.jsonl"
        generate(src, args.lines)
        bare = batched_throughput(messages(6400), args.threads, 64)
        runs = [run_score(src, Path(tmp) / "out.parquet", args.threads, "local")]
        if args.ray:
            runs.append(run_score(src, Path(tmp) / "out_ray.parquet", args.threads, "ray"))
        size_mb = src.stat().st_size / 2**20

    print(
        f"\n{args.lines:,}-line JSONL ({size_mb:.1f} MB) → Parquet, {args.threads} threads, {os.cpu_count()} cores\n"
    )
    print(
        "| run | wall | records/s end to end | vs bare classifier | peak RSS | RSS at 25/50/75/100 % of the run |"
    )
    print("|---|---:|---:|---:|---:|---|")
    print(f"| bare classifier (classify_texts, batch 64) | | {bare:,.0f} | 100 % | | |")
    for r in runs:
        rate = args.lines / r["wall_s"]
        r["records_per_s"] = round(rate, 1)
        r["vs_bare"] = round(rate / bare, 3)
        print(
            f"| fanzha score --engine {r['engine']} | {r['wall_s']:,.1f} s | {rate:,.0f} | {rate / bare:.0%} | "
            f"{r['peak_rss_mb']:,.0f} MB | {' / '.join(f'{x:,.0f}' for x in r['rss_quartiles_mb'])} MB |"
        )
    print("\nwall time includes interpreter start, model load, planning, merging the parts and the summary")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "lines": args.lines,
                    "threads": args.threads,
                    "bare_records_per_s": round(bare, 1),
                    "runs": runs,
                },
                ensure_ascii=False,
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
