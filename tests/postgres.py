"""A throwaway PostgreSQL cluster for the test session, from the system's own binaries.

Where the URL comes from, first match wins:
1. FANZHA_TEST_POSTGRES_URL, or a postgresql:// FANZHA_DATABASE_URL (read when this module is imported,
   before any conftest points FANZHA_DATABASE_URL at SQLite): a server someone else runs. Each test gets a
   schema of its own there and drops it; nothing else is touched.
2. `initdb` and `pg_ctl` (Debian's `postgresql` package: /usr/lib/postgresql/<version>/bin, else on PATH):
   a new cluster in a temporary folder, listening on a Unix socket in that folder only (no TCP port to
   collide with), trust auth, fsync off. PostgreSQL refuses to run as root, so under root (CI) the server
   runs as the `postgres` user when there is one, else as `nobody`. Stopped and deleted at session end.
3. Neither: the PostgreSQL tests skip, and say why. With FANZHA_TEST_REQUIRE_POSTGRES=1 (.ci/run sets it)
   they fail instead, so CI cannot silently stop testing PostgreSQL.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

_URL = os.environ.get("FANZHA_TEST_POSTGRES_URL") or next(
    (u for u in [os.environ.get("FANZHA_DATABASE_URL", "")] if u.startswith(("postgresql", "postgres://"))),
    None,
)
REQUIRED = os.environ.get("FANZHA_TEST_REQUIRE_POSTGRES") == "1"
NO_POSTGRES = (
    "no PostgreSQL: install the server binaries (Debian: apt-get install postgresql; initdb/pg_ctl under "
    "/usr/lib/postgresql/*/bin or on PATH), or set FANZHA_TEST_POSTGRES_URL (or FANZHA_DATABASE_URL) to postgresql://…"
)


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl, else the folder of `initdb` on PATH."""
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parts[-3].split(".")],
    )
    for initdb in reversed(versions):
        if (Path(initdb).parent / "pg_ctl").is_file():
            return Path(initdb).parent
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl", path=str(Path(on_path).resolve().parent)):
        return Path(on_path).resolve().parent
    return None


def _unprivileged_user() -> pwd.struct_passwd | None:
    """None when not root; else the account the server runs as (`postgres`, else `nobody`)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError(
        "running as root and there is neither a `postgres` nor a `nobody` account to run PostgreSQL as"
    )


class Cluster:
    """initdb + pg_ctl start in a temporary folder; `url` reaches it over the folder's Unix socket."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="fanzha-pg-"))
        self.data = self.root / "data"
        self.user = _unprivileged_user()
        if self.user:  # the server's files belong to the account it runs as
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        self.url = f"postgresql://postgres@/postgres?host={self.root}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        kw = {}
        if self.user:
            kw = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C.UTF-8",
            "LANG": "C.UTF-8",
            "TZ": "UTC",
        }
        done = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            env=env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kw,
        )
        if done.returncode:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stdout}{done.stderr}{tail}")

    def start(self) -> Cluster:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.root}' -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        return self

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"FANZHA_TEST_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A PostgreSQL server URL for the session (postgresql://…); skips, or fails under
    FANZHA_TEST_REQUIRE_POSTGRES=1, where there is none."""
    try:
        import psycopg  # noqa: F401
    except ModuleNotFoundError:
        _unavailable(
            'the PostgreSQL driver is not installed: pip install -e ".[postgres]" (the dev extra has it)'
        )
    if _URL:
        yield _URL
        return
    bin_dir = find_bin_dir()
    if bin_dir is None:
        _unavailable(NO_POSTGRES)
    cluster = Cluster(bin_dir).start()
    try:
        yield cluster.url
    finally:
        cluster.stop()
