"""Text classifier speed and memory: torch eager fp32 vs ORT fp32 vs ORT int8 (one window per run, and batched runs), 1 and 32 texts per call.

    python bench/text.py --checkpoint runs/model --fp32 runs/export/model.fp32.onnx --json bench/text.json

Each configuration runs in its own process (so peak RSS is that classifier's own), on the same texts
(~40-character messages from the test split), with the same thread count. Prints a Markdown table.
Without --checkpoint / --fp32 (a fresh clone has only the committed int8 model) those rows are skipped.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def texts_of_about(n_chars: int, count: int) -> list[str]:
    from fanzha.datasets.corpus import load_corpus

    pool = [r["text"] for r in load_corpus(splits=["test"]) if abs(len(r["text"]) - n_chars) <= 12]
    return (pool * (count // max(1, len(pool)) + 1))[:count]


def worker(config: str, args: argparse.Namespace) -> dict:
    """Runs inside the subprocess: load one model, time it, report peak RSS."""
    texts = texts_of_about(40, args.texts)
    t0 = time.perf_counter()
    if config == "torch_fp32":
        import torch

        from fanzha.models.normalize import normalize
        from fanzha.training.model import FraudClassifier, encode_batch

        torch.set_num_threads(args.threads)
        model, tokenizer, cfg = FraudClassifier.load(args.checkpoint)

        def predict(batch: list[str]):
            with torch.inference_mode():
                return model(
                    **encode_batch(tokenizer, [normalize(t).text for t in batch], cfg["max_length"])
                ).numpy()
    else:
        from fanzha.models import TextClassifier
        from fanzha.models.normalize import normalize

        path = args.fp32 if config.startswith("ort_fp32") else str(Path(args.model_dir) / "model.onnx")
        # the runtime scores one window per session run (deterministic int8 scores); *_batched rows run the
        # request's windows together, the old behaviour, to show what that determinism costs
        clf = TextClassifier(
            path,
            Path(args.model_dir) / "tokenizer.json",
            threads=args.threads,
            batch_size=32 if config.endswith("_batched") else 1,
        )

        def predict(batch: list[str]):
            return clf.predict([normalize(t).text for t in batch])

    load_s = time.perf_counter() - t0
    predict(texts[:8])  # warm-up
    out = {"config": config, "load_s": round(load_s, 2)}
    for batch_size in (1, 32):
        latencies = []
        start = time.perf_counter()
        done = 0
        while done < len(texts) and time.perf_counter() - start < args.seconds:
            batch = texts[done : done + batch_size]
            t = time.perf_counter()
            predict(batch)
            latencies.append((time.perf_counter() - t) * 1000)
            done += len(batch)
        elapsed = time.perf_counter() - start
        latencies.sort()
        out[f"b{batch_size}"] = {
            "texts": done,
            "texts_per_s": round(done / elapsed, 1),
            "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
        }
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def import_time(runs: int = 3) -> float:
    code = "import time; t=time.perf_counter(); import fanzha.models; print(time.perf_counter()-t)"
    times = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
        for _ in range(runs)
    ]
    return round(min(times), 3)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model-dir",
        default=str(REPO / "models" / "default"),
        help="dir with the int8 model.onnx + tokenizer.json",
    )
    parser.add_argument(
        "--fp32",
        default=None,
        help="fp32 ONNX of the same model (training/export.py keeps it in runs/export)",
    )
    parser.add_argument(
        "--checkpoint", default=None, help="the fine-tuned torch checkpoint of the same model (runs/model)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--texts", type=int, default=640, help="texts per configuration and batch size")
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="time cap per configuration and batch size"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return
    configs = []
    if args.checkpoint and Path(args.checkpoint).is_dir():
        configs.append("torch_fp32")
    if args.fp32 and Path(args.fp32).is_file():
        configs.append("ort_fp32")
    configs += ["ort_int8", "ort_int8_batched"]
    results = []
    for config in configs:
        cmd = [sys.executable, __file__, "--worker", config] + [
            a for a in sys.argv[1:] if a != "--json" and not a.endswith(".json")
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{config} failed:\n{proc.stderr[-2000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    base = next((r for r in results if r["config"] == "torch_fp32"), None)
    print(f"\n{args.threads} threads, texts of ~40 characters, one process per row\n")
    print("| runtime | batch | texts/s | p50 ms | p99 ms | × torch (texts/s) | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        for b in ("b1", "b32"):
            ratio = f"{r[b]['texts_per_s'] / base[b]['texts_per_s']:.2f}" if base else "n/a"
            print(
                f"| {r['config']} | {b[1:]} | {r[b]['texts_per_s']} | {r[b]['p50_ms']} | {r[b]['p99_ms']} | {ratio} | {r['peak_rss_mb']} |"
            )
    imp = import_time()
    print(f"\n`import fanzha.models` (fresh interpreter, best of 3): {imp} s")
    if args.json:
        Path(args.json).write_text(
            json.dumps({"results": results, "import_s": imp, "threads": args.threads}, indent=2)
        )


if __name__ == "__main__":
    main()
