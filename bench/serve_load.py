"""Load test of the real service on loopback: latency, throughput and memory, bounded in count and time.

    python bench/serve_load.py                          # starts `bentoml serve` on 127.0.0.1, runs, stops it
    python bench/serve_load.py --json reports/bench_serve.json --soak 10000

What it measures, all in one run against one server:
- server start → /readyz answering 200;
- text: 1, 8 and 32 concurrent clients, one message per request — p50/p99 latency, throughput, errors;
  next to the in-process batched throughput of the same model (Detector.classify_texts, batch 32,
  same thread count), measured in this process before the server starts;
- image: 4 concurrent clients posting a 1280×720 frame — p50/p99;
- soak: N text requests — server RSS (all its processes) after the first 500 and after N.
Clients run in this process (threads with keep-alive connections) on the same machine as the server, so
at high concurrency they compete with it for the cores: the figures are conservative.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import batched_throughput, messages

from fanzha.serving.launch import local_server

REPO = Path(__file__).resolve().parents[1]
FRAME = REPO / "tests" / "fixtures" / "media" / "frame_720p.png"


class Client:
    """One keep-alive HTTP connection per thread."""

    local = threading.local()

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, float]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        t0 = time.perf_counter()
        try:
            conn.request("POST", path, body, {"Content-Type": content_type})
            response = conn.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            self.local.conn = None
            status = 0
        return status, time.perf_counter() - t0


def load(client: Client, bodies: list[tuple[str, bytes, str]], concurrency: int, max_seconds: float) -> dict:
    results, wall, client_cpu = timed_load(client, bodies, concurrency, max_seconds)
    return {**summary(results, concurrency, wall), "client_cpu_cores": round(client_cpu, 2)}


def timed_load(
    client: Client, bodies: list[tuple[str, bytes, str]], concurrency: int, max_seconds: float
) -> tuple[list[tuple[int, float]], float, float]:
    """(status, seconds) of each request, the wall time, and the cores the load generator itself used."""
    deadline = time.perf_counter() + max_seconds

    def one(item):
        if time.perf_counter() > deadline:
            return None
        return client.post(*item)

    t0, cpu0 = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(concurrency) as pool:
        results = [r for r in pool.map(one, bodies) if r is not None]
    wall = time.perf_counter() - t0
    return results, wall, (time.process_time() - cpu0) / wall


def summary(results: list[tuple[int, float]], clients: int, wall: float) -> dict:
    latencies = sorted(lat for _, lat in results)
    return {
        "clients": clients,
        "requests": len(results),
        "errors": sum(status != 200 for status, _ in results),
        "throughput_rps": round(len(results) / wall, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1),
    }


def text_body(text: str) -> tuple[str, bytes, str]:
    return (
        "/classify_text",
        json.dumps({"items": [{"text": text}]}, ensure_ascii=False).encode(),
        "application/json",
    )


def image_body() -> tuple[str, bytes, str]:
    boundary = "fanzha-bench"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="frame.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + FRAME.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return "/classify_image", body, f"multipart/form-data; boundary={boundary}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2, help="service workers (FANZHA_WORKERS)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per worker")
    parser.add_argument("--requests", type=int, default=600, help="text requests per concurrency level")
    parser.add_argument("--image-requests", type=int, default=40)
    parser.add_argument(
        "--soak", type=int, default=10_000, help="text requests for the memory soak (0 = skip)"
    )
    parser.add_argument("--max-seconds", type=float, default=120, help="time bound for each load level")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    texts = messages(max(args.requests, 640))
    # the same total compute as the server: workers × threads onnxruntime threads
    inproc = batched_throughput(texts[:640], args.workers * args.threads, 32)
    with (
        tempfile.TemporaryDirectory(prefix="fanzha-bench-") as home,
        local_server(
            {"BENTOML_HOME": home, "FANZHA_WORKERS": str(args.workers), "FANZHA_THREADS": str(args.threads)},
            import_model=True,
        ) as server,
    ):
        port, ready_s = server.port, server.ready_s
        client = Client("127.0.0.1", port)
        load(client, [text_body(t) for t in texts[:64]], 8, 30)  # warm-up
        text_rows = [
            load(client, [text_body(t) for t in texts[: args.requests]], c, args.max_seconds)
            for c in (1, 8, 32)
        ]
        image_row = load(client, [image_body()] * args.image_requests, 4, args.max_seconds)
        soak = None
        if args.soak:
            bodies = [text_body(t) for t in messages(args.soak)]
            load(client, bodies[:500], 16, args.max_seconds)
            before = server.rss_mb()
            row = load(client, bodies, 16, 30 * 60)
            after = server.rss_mb()
            soak = {
                "requests": row["requests"] + 500,
                "errors": row["errors"],
                "rss_after_500_mb": round(before, 1),
                "rss_after_all_mb": round(after, 1),
                "growth_pct": round(100 * (after / before - 1), 2),
            }

    print(
        f"\nfanzha service on 127.0.0.1, {args.workers} worker(s) × {args.threads} onnxruntime threads, {os.cpu_count()} cores; "
        f"start → ready {ready_s:.2f} s\n"
    )
    print(
        "| load | requests | errors | p50 | p99 | throughput | vs in-process batched | load generator CPU |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in text_rows:
        print(
            f"| text, {r['clients']} clients | {r['requests']} | {r['errors']} | {r['p50_ms']} ms | {r['p99_ms']} ms | "
            f"{r['throughput_rps']} texts/s | {r['throughput_rps'] / inproc:.0%} | {r['client_cpu_cores']} cores |"
        )
    print(
        f"| image 1280×720, 4 clients | {image_row['requests']} | {image_row['errors']} | {image_row['p50_ms']} ms | "
        f"{image_row['p99_ms']} ms | {image_row['throughput_rps']} images/s | | {image_row['client_cpu_cores']} cores |"
    )
    print(
        f"\nin-process batched throughput (batch 32, {args.workers * args.threads} threads): {inproc:.0f} texts/s"
    )
    if soak:
        print(
            f"soak: {soak['requests']} text requests, {soak['errors']} errors; server RSS {soak['rss_after_500_mb']} MB after 500 → "
            f"{soak['rss_after_all_mb']} MB after all ({soak['growth_pct']:+.2f} %)"
        )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "workers": args.workers,
                    "threads": args.threads,
                    "ready_s": round(ready_s, 2),
                    "in_process_texts_per_s": round(inproc, 1),
                    "text": text_rows,
                    "image": image_row,
                    "soak": soak,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
