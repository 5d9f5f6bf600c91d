"""Start this service as a real `bentoml serve` on loopback, in its own process group: for benches and tests.

The service never imports this module; it lives here because it knows the service's import path and its
/readyz probe. Only the standard library (and psutil, which BentoML depends on, for RSS) is used.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

SERVICE = "fanzha.serving.service:Fanzha"
HOST = "127.0.0.1"


class ServerFailed(RuntimeError):
    """The server exited or did not answer /readyz in time (the message carries its log's tail)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class LocalServer:
    url: str
    port: int
    process: subprocess.Popen
    ready_s: float  # from spawning `bentoml serve` to the first 200 from /readyz
    log: Path | None

    def _each_process(self, read):
        """(process, read(process)) for the server's processes (the arbiter and its workers) that answer."""
        import psutil

        root = psutil.Process(self.process.pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                yield p, read(p)
            except psutil.Error:  # a worker that exited meanwhile
                pass

    def rss_by_process_mb(self) -> dict[str, float]:
        """RSS of the server's processes, by pid and command."""
        return {
            f"{p.pid} {' '.join(p.cmdline()[-3:])[:60]}": round(rss / 2**20, 1)
            for p, rss in self._each_process(lambda p: p.memory_info().rss)
        }

    def rss_mb(self) -> float:
        return sum(self.rss_by_process_mb().values())

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the server's processes have used so far: a bench's load, measured as work
        per request, is steadier on a shared machine than its latency."""
        return sum(t.user + t.system for _, t in self._each_process(lambda p: p.cpu_times()))


@contextmanager
def local_server(
    env: Mapping[str, str] | None = None,
    *,
    unset: tuple[str, ...] = (),
    log: Path | None = None,
    import_model: bool = False,
    ready_seconds: float = 120,
) -> Iterator[LocalServer]:
    """Serve on a free loopback port with this process's environment plus `env` (minus `unset`); yields once
    /readyz answers 200 and stops the whole process group afterwards (SIGTERM, then SIGKILL after 30 s).
    `import_model` first puts the committed model into the (possibly fresh) BENTOML_HOME."""
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", **(env or {})}
    for key in unset:
        full_env.pop(key, None)
    if import_model:
        cmd = [sys.executable, "-m", "fanzha.cli", "import-model"]
        subprocess.run(cmd, env=full_env, check=True, capture_output=True)
    port = free_port()
    with ExitStack() as stack:
        out = stack.enter_context(open(log, "wb")) if log else subprocess.DEVNULL
        t0 = time.perf_counter()
        cmd = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", HOST, "--port", str(port)]
        proc = subprocess.Popen(
            cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            ready_s = _wait_ready(proc, port, t0, ready_seconds, log)
            yield LocalServer(f"http://{HOST}:{port}", port, proc, ready_s, log)
        finally:
            _stop(proc)


def _wait_ready(
    proc: subprocess.Popen, port: int, t0: float, ready_seconds: float, log: Path | None
) -> float:
    while True:
        if proc.poll() is not None:
            raise ServerFailed(f"bentoml serve exited with {proc.returncode}{_tail(log)}")
        try:
            conn = http.client.HTTPConnection(HOST, port, timeout=5)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return time.perf_counter() - t0
        except OSError:
            pass
        finally:
            conn.close()
        if time.perf_counter() - t0 > ready_seconds:
            raise ServerFailed(f"server not ready in {ready_seconds:.0f} s{_tail(log)}")
        time.sleep(0.2)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=10)


def _tail(log: Path | None) -> str:
    return f":\n{log.read_text(errors='replace')[-3000:]}" if log and log.exists() else ""


@contextmanager
def asgi_in_thread(app, host: str = HOST, port: int | None = None) -> Iterator[str]:
    """Serve an ASGI app (the review console, for its browser tests, bench and screenshots) with uvicorn in a
    thread of this process on loopback; yields its base URL once it listens, and stops it afterwards."""
    import threading

    import uvicorn

    config = uvicorn.Config(app, host=host, port=port or free_port(), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="fanzha-asgi", daemon=True)
    thread.start()
    deadline = time.perf_counter() + 30
    while not server.started:
        if not thread.is_alive() or time.perf_counter() > deadline:
            raise ServerFailed(f"uvicorn did not start on {host}:{config.port}")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{config.port}"
    finally:
        server.should_exit = True
        thread.join(10)
