"""A bounded soak of the real service with mixed valid and invalid requests (issue 11): no 500s, 503s only as
the overload answer, /readyz up throughout, and memory after a warm-up against memory at the end.

    python bench/soak.py                                   # 60 s, 16 threads, on 127.0.0.1; prints a table
    python bench/soak.py --seconds 60 --json reports/bench_soak.json

It starts `bentoml serve` on 127.0.0.1 (a private BentoML home and database, an API key set) and runs 16
client threads for --seconds (and at most --max-requests requests), each picking a request from a weighted
mix: valid texts, images, mixed batches, archive tasks, risk queries and fraud reports, next to malformed
multipart bodies, a URL where a file belongs, invented paths with and without a key, wrong keys, broken
JSON, JSON nested 100,000 deep, NaN, lone surrogates, oversized bodies, invalid task submissions and task ids
from another endpoint. A probe thread asks /readyz twice a second. Server RSS (all its processes) is read
after a warm-up (--warmup seconds of the same mix, not counted), every 10 s, and at the end. The exit status is 1 when any answer was a 500 (or another 5xx but a 503
with the overload body), a 503 lacked the overload body or Retry-After, or a request failed outright.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

from common import messages

from fanzha.serving.launch import LocalServer, local_server

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO / "tests" / "fixtures" / "media"
KEY = "soak-key-7f3a"
OVERLOADED = {"error": "overloaded, retry later"}


class Conn:
    """One keep-alive connection per thread; the request target is sent exactly as given."""

    local = threading.local()

    def __init__(self, port: int) -> None:
        self.port = port

    def send(
        self, method: str, target: str, body: bytes | None, headers: dict, timeout: float = 60
    ) -> tuple[int, dict, bytes]:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.putrequest(method, target, skip_host="Host" in headers, skip_accept_encoding=True)
            for k, v in headers.items():
                conn.putheader(k, v)
            if body is not None and "Content-Length" not in headers:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            self.local.conn = None
            return 0, {}, b""


def multipart(fields: dict[str, tuple[str | None, bytes]], boundary: str = "soak") -> tuple[bytes, str]:
    out = b""
    for name, (filename, data) in fields.items():
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Mix:
    """The requests: (name, weight, valid, build) where build(rng, state) → (method, target, body, headers)."""

    def __init__(self, texts: list[str], only: str = "all") -> None:
        self.texts = texts
        self.png = (MEDIA / "qr.png").read_bytes()
        self.poster_b64 = base64.b64encode((MEDIA / "poster.png").read_bytes()).decode()
        self.archive_ids: list[str] = []
        self.lock = threading.Lock()
        self.kinds = [
            ("text", 30, True, self.text),
            ("image", 3, True, self.image),
            ("batch", 4, True, self.batch),
            ("archive task", 2, True, self.archive),
            ("archive status", 3, True, self.archive_status),
            ("account risk", 5, True, self.risk),
            ("alerts", 4, True, self.alerts),
            ("report", 3, True, self.report),
            ("malformed multipart", 6, False, self.malformed),
            ("url as file", 3, False, self.url_file),
            ("invented path, no key", 8, False, self.invented),
            ("invented path, key", 4, False, self.invented_keyed),
            ("wrong key", 5, False, self.wrong_key),
            ("broken JSON", 4, False, self.broken_json),
            ("JSON 100,000 deep", 1, False, self.deep),
            ("NaN / Infinity", 2, False, self.nan),
            ("lone surrogate", 2, False, self.surrogate),
            ("body over the limit", 2, False, self.too_big),
            ("empty items", 3, False, self.empty),
            ("bad archive submit", 3, False, self.bad_archive),
            ("image as video task", 1, False, self.image_as_video),
            ("task id of another endpoint", 2, False, self.other_task),
        ]
        if only != "all":  # --mix valid / invalid: one side alone (to tell where memory or time goes)
            self.kinds = [k for k in self.kinds if k[2] == (only == "valid")]
        self.weights = [w for _, w, _, _ in self.kinds]

    def pick(self, rng: random.Random):
        return rng.choices(self.kinds, self.weights)[0]

    @staticmethod
    def _json(target: str, obj, key: str | None = KEY) -> tuple:
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
        return "POST", target, json.dumps(obj, ensure_ascii=False).encode(), headers

    def text(self, rng, n=None):
        items = [
            {
                "text": rng.choice(self.texts),
                "id": f"t{rng.getrandbits(48):x}",
                "account_id": f"acct{rng.randrange(200)}",
                "group_id": f"grp{rng.randrange(20)}",
                "source": "comment",
            }
            for _ in range(n or rng.randint(1, 8))
        ]
        return self._json("/classify_text", {"items": items})

    def image(self, rng):
        body, content_type = multipart(
            {"file": ("qr.png", self.png), "id": (None, f"img{rng.getrandbits(32):x}".encode())}
        )
        return "POST", "/classify_image", body, {"Content-Type": content_type, "X-API-Key": KEY}

    def batch(self, rng):
        items = [
            {
                "type": "text",
                "text": rng.choice(self.texts),
                "id": f"b{rng.getrandbits(48):x}",
                "account_id": f"acct{rng.randrange(200)}",
            }
            for _ in range(rng.randint(1, 6))
        ]
        if rng.random() < 0.2:
            items.append({"type": "image", "data": self.poster_b64, "id": f"bi{rng.getrandbits(32):x}"})
        if rng.random() < 0.3:
            items.append(
                {"type": "image", "data": base64.b64encode(b"junk").decode()}
            )  # a bad item: its own error
        return self._json("/classify_batch", {"items": items})

    def archive(self, rng):
        items = [
            {
                "type": "text",
                "text": rng.choice(self.texts),
                "id": f"a{rng.getrandbits(48):x}",
                "account_id": f"acct{rng.randrange(200)}",
            }
            for _ in range(rng.randint(2, 20))
        ]
        return self._json("/classify_archive/submit", {"items": items})

    def archive_status(self, rng):
        with self.lock:
            task_id = rng.choice(self.archive_ids) if self.archive_ids else "0" * 32
        action = rng.choice(["status", "status", "get"])
        return "GET", f"/classify_archive/{action}?task_id={task_id}", None, {"X-API-Key": KEY}

    def risk(self, rng):
        return self._json("/account_risk", {"account_id": f"acct{rng.randrange(200)}"})

    def alerts(self, rng):
        return self._json("/alerts", {"after_id": rng.randrange(0, 50), "limit": 20})

    def report(self, rng):
        return self._json(
            "/report",
            {
                "reporter_id": f"user{rng.randrange(1000)}",
                "reason": "骗钱",
                "idempotency_key": f"k{rng.randrange(500)}",
                "target": {
                    "type": "text",
                    "text": rng.choice(self.texts),
                    "account_id": f"acct{rng.randrange(200)}",
                },
            },
        )

    def malformed(self, rng):
        target = rng.choice(
            ["/classify_image", "/classify_text", "/report", "/reports", "/scan_video/submit"]
        )
        case = rng.randrange(4)
        if case == 0:
            body, content_type = b"x", "multipart/form-data"
        elif case == 1:
            body, content_type = b"--a\r\nxx", "multipart/form-data; boundary=b"
        elif case == 2:
            body, content_type = b"x", f"multipart/form-data; boundary={'B' * 5000}"
        else:
            body = (
                "".join(
                    f'--bb\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\nx\r\n' for i in range(1001)
                ).encode()
                + b"--bb--\r\n"
            )
            content_type = "multipart/form-data; boundary=bb"
        return "POST", target, body, {"Content-Type": content_type, "X-API-Key": KEY}

    def url_file(self, rng):
        value = rng.choice([b"http://127.0.0.1:1/x.png", b"file:///etc/passwd", b"http://169.254.169.254/"])
        body, content_type = multipart({"file": (None, value)})
        return (
            "POST",
            rng.choice(["/classify_image", "/classify_video"]),
            body,
            {"Content-Type": content_type, "X-API-Key": KEY},
        )

    def invented(self, rng, key=None):
        path = "/" + "/".join(f"{rng.getrandbits(40):x}" for _ in range(rng.randint(1, 3)))
        path = rng.choice(
            [
                path,
                path,
                "//classify_text",
                "/classify_text/",
                "/./classify_text",
                "/classify_text%2F",
                "/reports/",
            ]
        )
        return (
            rng.choice(["GET", "POST"]),
            path,
            b"{}",
            {
                "Content-Type": "application/json",
                "Host": "evil.example",
                **({"X-API-Key": key} if key else {}),
            },
        )

    def invented_keyed(self, rng):
        return self.invented(rng, KEY)

    def wrong_key(self, rng):
        method, target, body, headers = self.text(rng, 1)
        del headers["Authorization"]
        choice = rng.randrange(4)
        if choice == 0:
            headers["Authorization"] = KEY  # no scheme
        elif choice == 1:
            headers["X-API-Key"] = KEY[:-1]
        elif choice == 2:
            headers["Cookie"] = f"X-API-Key={KEY}"
        else:
            target += f"?api_key={KEY}"
        return method, target, body, headers

    def broken_json(self, rng):
        body = rng.choice(
            [
                b'{"items": [',
                b"not json",
                b'{"items": "x"}',
                b'{"items": [{"text": 42}]}',
                b"\x1f\x8b\x08\x00gz",
            ]
        )
        return (
            "POST",
            rng.choice(["/classify_text", "/account_risk", "/report"]),
            body,
            {"Content-Type": "application/json", "X-API-Key": KEY},
        )

    def deep(self, rng):
        return (
            "POST",
            "/classify_text",
            b'{"items": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            {"Content-Type": "application/json", "X-API-Key": KEY},
        )

    def nan(self, rng):
        target, body = rng.choice(
            [
                ("/clusters", b'{"min_accounts": NaN}'),
                ("/alerts", b'{"after_id": Infinity}'),
                ("/classify_text", b'{"items": [{"text": NaN}]}'),
            ]
        )
        return "POST", target, body, {"Content-Type": "application/json", "X-API-Key": KEY}

    def surrogate(self, rng):
        body = b'{"items": [{"text": "\\ud800\xe4\xbd\xa0\xe5\xa5\xbd", "id": "\\udc00"}]}'
        return "POST", "/classify_text", body, {"Content-Type": "application/json", "X-API-Key": KEY}

    def too_big(self, rng):
        # a Content-Length over the limit, then only a little body: refused before the body is read (the server
        # then closes the connection, which cannot be reused)
        return (
            "POST",
            "/classify_text",
            b"{}",
            {
                "Content-Type": "application/json",
                "X-API-Key": KEY,
                "Content-Length": str(64 * 2**20),
                "Connection": "close",
            },
        )

    def empty(self, rng):
        return self._json(rng.choice(["/classify_text", "/classify_batch"]), {"items": []})

    def bad_archive(self, rng):
        return self._json(
            "/classify_archive/submit",
            rng.choice([{}, {"items": []}, {"items": [{"type": "text", "text": " "}]}]),
        )

    def image_as_video(self, rng):
        body, content_type = multipart({"file": ("qr.png", self.png)})
        return "POST", "/scan_video/submit", body, {"Content-Type": content_type, "X-API-Key": KEY}

    def other_task(self, rng):
        with self.lock:
            task_id = rng.choice(self.archive_ids) if self.archive_ids else "0" * 32
        return (
            "GET",
            f"/scan_video/{rng.choice(['status', 'get'])}?task_id={task_id}",
            None,
            {"X-API-Key": KEY},
        )


def soak(port: int, mix: Mix, threads: int, seconds: float, max_requests: int, server: LocalServer) -> dict:
    conn = Conn(port)
    counts: dict[str, Counter] = defaultdict(Counter)
    bad_503: list[str] = []
    failures: list[str] = []
    latencies: list[float] = []
    lock = threading.Lock()
    sent = {"n": 0}
    deadline = time.perf_counter() + seconds
    stop = threading.Event()
    probes = Counter()
    rss: list[tuple[float, float]] = []

    def probe() -> None:
        own = Conn(port)
        started = time.perf_counter()
        while not stop.wait(0.5):
            probes[own.send("GET", "/readyz", None, {}, timeout=10)[0]] += 1
            if not rss or time.perf_counter() - started - rss[-1][0] >= 10:
                rss.append((round(time.perf_counter() - started, 1), round(server.rss_mb(), 1)))

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        while time.perf_counter() < deadline:
            with lock:
                if sent["n"] >= max_requests:
                    return
                sent["n"] += 1
            name, _, valid, build = mix.pick(rng)
            method, target, body, headers = build(rng)
            t0 = time.perf_counter()
            status, got, raw = conn.send(method, target, body, headers)
            elapsed = time.perf_counter() - t0
            with lock:
                counts[name][status] += 1
                latencies.append(elapsed)
                if status == 0:
                    failures.append(f"{name}: no answer")
                elif status >= 500:
                    try:
                        answer = json.loads(raw)
                    except ValueError:
                        answer = None
                    overload = (
                        status == 503
                        and isinstance(answer, dict)
                        and answer.get("error") == OVERLOADED["error"]
                        and got.get("retry-after")
                    )
                    if not overload:
                        bad_503.append(f"{name}: {status} {raw[:200]!r}")
            if name == "archive task" and status == 200:
                with mix.lock:
                    mix.archive_ids.append(json.loads(raw)["task_id"])
                    del mix.archive_ids[:-200]

    prober = threading.Thread(target=probe, daemon=True)
    prober.start()
    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    t0 = time.perf_counter()
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    wall = time.perf_counter() - t0
    stop.set()
    prober.join(15)
    latencies.sort()
    valid = {name for name, _, ok, _ in mix.kinds if ok}
    return {
        "seconds": round(wall, 1),
        "threads": threads,
        "requests": sent["n"],
        "requests_per_s": round(sent["n"] / wall, 1),
        "by_kind": {name: dict(sorted(c.items())) for name, c in counts.items()},
        "valid_kinds": sorted(valid),
        "statuses": dict(sorted(sum(counts.values(), Counter()).items())),
        "server_errors_other_than_overload": bad_503[:20],
        "server_errors_count": len(bad_503),
        "failed_requests": len(failures),
        "readyz": dict(probes),
        "readyz_availability": round(probes[200] / max(1, sum(probes.values())), 4),
        "rss_mb_every_10_s": rss,
        "p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
        "p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else None,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60, help="how long the mixed load runs (bounded)")
    p.add_argument("--threads", type=int, default=16, help="client threads")
    p.add_argument(
        "--max-requests",
        type=int,
        default=200_000,
        help="stop after this many requests even before --seconds",
    )
    p.add_argument(
        "--warmup", type=float, default=20, help="seconds of the same mix before RSS is read (not counted)"
    )
    p.add_argument("--workers", type=int, default=2, help="service workers (FANZHA_WORKERS)")
    p.add_argument(
        "--mix",
        choices=("all", "valid", "invalid"),
        default="all",
        help="both kinds of request, or one side alone",
    )
    p.add_argument("--json", default=None, help="write the figures here (e.g. reports/bench_soak.json)")
    args = p.parse_args()
    if not 0 < args.seconds <= 3600 or not 0 < args.warmup <= 600 or not 0 < args.max_requests <= 10_000_000:
        raise SystemExit(
            "--seconds must be within (0, 3600], --warmup within (0, 600] and --max-requests within (0, 10,000,000]"
        )

    mix = Mix(messages(650), args.mix)
    with (
        tempfile.TemporaryDirectory(prefix="fanzha-soak-") as home,
        local_server(
            {
                "BENTOML_HOME": home,
                "FANZHA_WORKERS": str(args.workers),
                "FANZHA_API_KEYS": KEY,
                "FANZHA_DATABASE_URL": f"sqlite:///{home}/fanzha.db",
            },
            unset=("FANZHA_MODERATOR_KEYS",),
            log=Path(home) / "serve.log",
            import_model=True,
            ready_seconds=180,
        ) as server,
    ):
        port, ready_s = server.port, server.ready_s
        # warm-up: the same mix from the same threads, not counted (the batcher trains, onnxruntime's and the
        # allocator's arenas grow to what this concurrency needs), so that RSS before/after shows growth
        warm = soak(port, mix, args.threads, args.warmup, args.max_requests, server)
        time.sleep(2)
        rss_before, processes_before = server.rss_mb(), server.rss_by_process_mb()
        result = soak(port, mix, args.threads, args.seconds, args.max_requests, server)
        time.sleep(2)
        rss_after, processes_after = server.rss_mb(), server.rss_by_process_mb()
    result.update(
        mix=args.mix,
        rss_by_process_mb={"before": processes_before, "after": processes_after},
        warmup={
            k: warm[k] for k in ("seconds", "requests", "statuses", "server_errors_count", "failed_requests")
        },
        ready_s=round(ready_s, 2),
        workers=args.workers,
        cores=os.cpu_count(),
        rss_before_mb=round(rss_before, 1),
        rss_after_mb=round(rss_after, 1),
        rss_growth_pct=round(100 * (rss_after / rss_before - 1), 2),
    )

    statuses = sorted(result["statuses"])
    print(
        f"\nsoak: {result['requests']:,} requests in {result['seconds']} s from {args.threads} threads "
        f"({result['requests_per_s']:,} requests/s) on 127.0.0.1; {args.workers} worker(s), {result['cores']} cores\n"
    )
    print("| request | valid | sent | " + " | ".join(str(s) for s in statuses) + " |")
    print("|---|---|---:|" + "---:|" * len(statuses))
    for name, _, valid, _ in mix.kinds:
        row = result["by_kind"].get(name, {})
        print(
            f"| {name} | {'yes' if valid else 'no'} | {sum(row.values()):,} | "
            + " | ".join(f"{row.get(s, 0):,}" for s in statuses)
            + " |"
        )
    total = result["statuses"]
    print(
        f"| **all** | | **{result['requests']:,}** | "
        + " | ".join(f"**{total[s]:,}**" for s in statuses)
        + " |"
    )
    ok_5xx = result["server_errors_count"] == 0
    print(
        f"\n500s: {total.get(500, 0)} {'✅' if total.get(500, 0) == 0 else '❌'}; 5xx other than the overload answer: "
        f"{result['server_errors_count']} {'✅' if ok_5xx else '❌'}; 503 (all with the overload body and Retry-After): {total.get(503, 0)}; "
        f"requests with no answer: {result['failed_requests']}"
    )
    print(
        f"/readyz: {result['readyz'].get(200, 0)}/{sum(result['readyz'].values())} probes answered 200 "
        f"({100 * result['readyz_availability']:.1f} %)"
    )
    print(
        f"warm-up ({result['warmup']['seconds']} s, not counted above): {result['warmup']['requests']:,} requests, statuses "
        f"{result['warmup']['statuses']}, 5xx other than the overload answer: {result['warmup']['server_errors_count']}"
    )
    print(
        f"server RSS (all processes): {result['rss_before_mb']} MB after the warm-up → {result['rss_after_mb']} MB after the soak "
        f"({result['rss_growth_pct']:+.2f} %); every 10 s: {', '.join(f'{mb:,.0f}' for _, mb in result['rss_mb_every_10_s'])} MB; "
        f"latency p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms"
    )
    for line in result["server_errors_other_than_overload"][:5]:
        print("  ", line)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, ensure_ascii=False, indent=2))
    clean = (
        ok_5xx
        and total.get(500, 0) == 0
        and result["failed_requests"] == 0
        and warm["server_errors_count"] == 0
    )
    sys.exit(0 if clean else 1)


if __name__ == "__main__":
    main()
