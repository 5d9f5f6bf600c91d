"""The database behind account/group risk and fraud reports: SQLite by default, PostgreSQL by URL.

    from fanzha.platform.database import Database
    db = Database()                                        # FANZHA_DATABASE_URL, else the default SQLite file
    db = Database("sqlite:////var/lib/fanzha/fanzha.db")   # a file of your choice
    db = Database("postgresql://fanzha:…@db/fanzha")       # PostgreSQL (pip install -e ".[postgres]")

The default file is `$FANZHA_DATA_DIR/fanzha.db`, else `$XDG_DATA_HOME/fanzha/fanzha.db`, else
`~/.local/share/fanzha/fanzha.db`: embedded and zero-setup. SQLite runs in WAL mode (readers never block the
writer) with a 30 s busy timeout, and every write transaction starts with BEGIN IMMEDIATE: it takes the write
lock up front, so two processes never deadlock upgrading a read lock (SQLITE_BUSY that no timeout cures).

The schema is versioned: MIGRATIONS is an ordered list, and opening a database applies the steps it lacks in
one locked transaction (two service workers starting at once apply them once). A database written by a newer
fanzha is refused rather than misread. The migrations are the one definition of the schema: the tables the
stores query are reflected from the database after migrating.
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from fanzha.models.errors import DatabaseError, InputError, MissingExtra
from fanzha.models.settings import settings

log = logging.getLogger("fanzha.database")

SQLITE_BUSY_TIMEOUT_S = 30
# a write that must not wait (on an event loop) still waits this long for another process's write: theirs take
# a fraction of a millisecond, and refusing at once sent so many messages to a thread that the streamed
# message's CPU and p99 were no better than with BentoML's thread hop (bench/conversation.py, two workers)
NO_WAIT_BUSY_TIMEOUT_MS = 5
# PostgreSQL: one advisory-lock key per kind of serialised work (the numbers only need to be stable)
PG_LOCKS = {"migrate": 0x66616E01, "ingest": 0x66616E02}


__all__ = [
    "LATEST",
    "MIGRATIONS",
    "Database",
    "DatabaseError",
    "database_url",
    "default_database_path",
    "migrate",
    "missing_sqlite_file",
]


def default_database_path() -> Path:
    """$FANZHA_DATA_DIR/fanzha.db, else $XDG_DATA_HOME/fanzha/fanzha.db, else ~/.local/share/fanzha/fanzha.db."""
    return settings().default_database_path


def database_url(url: str | None = None) -> str:
    """The URL to use: the argument, else FANZHA_DATABASE_URL, else the default SQLite file."""
    url = url or settings().database_url
    if not url:
        return f"sqlite:///{default_database_path()}"
    # the bare scheme means psycopg2 to SQLAlchemy; the `postgres` extra installs psycopg 3
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare) :]
    return url


def missing_sqlite_file(url: str | None = None) -> Path | None:
    """The file a SQLite URL names when it does not exist (a reader should not create an empty database)."""
    parsed = sa.make_url(database_url(url))
    if (
        parsed.get_backend_name() == "sqlite"
        and parsed.database
        and parsed.database != ":memory:"
        and not Path(parsed.database).is_file()
    ):
        return Path(parsed.database)
    return None


def _sqlite_engine(url: sa.URL) -> Engine:
    memory = url.database in (None, "", ":memory:")
    if not memory:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        **({"poolclass": StaticPool} if memory else {}),
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below), the driver must not
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")  # in WAL: durable at checkpoints, never corrupt
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(
            "BEGIN IMMEDIATE" if conn.get_execution_options().get("fanzha_write") else "BEGIN"
        )

    return engine


def create_engine(url: str | None = None) -> Engine:
    parsed = sa.make_url(database_url(url))
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed)
    if parsed.get_backend_name() != "postgresql":
        raise DatabaseError(
            f"unsupported database {parsed.get_backend_name()!r}: use sqlite:///FILE or postgresql://…"
        )
    try:
        return sa.create_engine(parsed, pool_pre_ping=True)
    except ModuleNotFoundError as e:
        raise MissingExtra(
            f'{e}: install the PostgreSQL driver with `pip install -e ".[postgres]"`'
        ) from None


# -- migrations ---------------------------------------------------------------------------------------------
# Each step is frozen once released: a change to the schema is a NEW step appended here, never an edit of an
# old one, so every database reaches the same schema whichever version it started from.


def _v1_risk_state(conn: Connection) -> None:
    md = sa.MetaData()
    ts = sa.Float  # epoch seconds: the same arithmetic (decay, windows) on every backend
    sa.Table(
        "entities",
        md,  # accounts and groups: one table, `kind` says which
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("id", sa.String(256), primary_key=True),
        sa.Column("first_seen", ts, nullable=False),
        sa.Column("last_seen", ts, nullable=False),
        sa.Column("items", sa.Integer, nullable=False),
        sa.Column("flagged", sa.Integer, nullable=False),
        sa.Column("risk", sa.Float, nullable=False),  # decayed sum of flagged fraud scores, as of risk_ts
        sa.Column("risk_ts", ts, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),  # JSON {label: count}
        sa.Column("recent_flags", sa.Text, nullable=False),  # JSON: the last few flagged times (window rule)
        sa.Column("cluster_id", sa.Integer, nullable=True, index=True),  # accounts only
    )
    sa.Table(
        "handles",
        md,  # contact handles pushed: qq:…, qq_group:…, wechat:…, phone:…, url:…, qr:…
        sa.Column("handle", sa.String(600), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.String(512), nullable=False),
        sa.Column("first_seen", ts, nullable=False),
        sa.Column("last_seen", ts, nullable=False),
        sa.Column("items", sa.Integer, nullable=False),
        sa.Column("flagged", sa.Integer, nullable=False),
        sa.Column("cluster_id", sa.Integer, nullable=True, index=True),
    )
    sa.Table(
        "entity_handles",
        md,
        sa.Column("entity_kind", sa.String(16), primary_key=True),
        sa.Column("entity_id", sa.String(256), primary_key=True),
        sa.Column("handle", sa.String(600), primary_key=True, index=True),
        sa.Column("first_seen", ts, nullable=False),
        sa.Column("last_seen", ts, nullable=False),
        sa.Column("items", sa.Integer, nullable=False),
        sa.Column("flagged", sa.Integer, nullable=False),
    )
    sa.Table(
        "clusters",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("accounts", sa.Integer, nullable=False),
        sa.Column("handles", sa.Integer, nullable=False),
        sa.Column("created", ts, nullable=False),
        sa.Column("updated", ts, nullable=False),
    )
    sa.Table(
        "flagged_items",
        md,  # the reasons behind a risk: which items, when, how sure, which labels
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("entity_kind", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.String(256), nullable=False),
        sa.Column("item_id", sa.String(256), nullable=True),
        sa.Column("source", sa.String(64), nullable=True),
        sa.Column("ts", ts, nullable=False),
        sa.Column("fraud_score", sa.Float, nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("labels", sa.Text, nullable=False),
        sa.Column("handles", sa.Text, nullable=False),
        sa.Index("ix_flagged_items_entity_ts", "entity_kind", "entity_id", "ts"),
        sa.Index("ix_flagged_items_ts", "ts"),
    )
    sa.Table(
        "alerts",
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", ts, nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("entity_kind", sa.String(16), nullable=True),
        sa.Column("entity_id", sa.String(256), nullable=True),
        sa.Column("cluster_id", sa.Integer, nullable=True),
        sa.Column("item_id", sa.String(256), nullable=True),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("threshold", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Index("ix_alerts_entity", "entity_kind", "entity_id"),
    )
    md.create_all(conn)


def _v2_reports(conn: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "reports",
        md,
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("reporter_id", sa.String(256), nullable=False, index=True),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("target_type", sa.String(16), nullable=False),
        sa.Column("target_text", sa.Text, nullable=True),  # the text, or what was read from the image
        sa.Column("target_media_sha256", sa.String(64), nullable=True),
        sa.Column("target_account_id", sa.String(256), nullable=True, index=True),
        sa.Column("target_group_id", sa.String(256), nullable=True, index=True),
        sa.Column("target_source", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text, nullable=True),
        sa.Column("labels", sa.Text, nullable=True),  # JSON: the moderator's labels when confirming
        sa.Column("moderator_id", sa.String(256), nullable=True),
        sa.Column("verdict", sa.Text, nullable=True),  # JSON: the verdict at intake
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.UniqueConstraint("reporter_id", "idempotency_key", name="uq_reports_reporter_key"),
        sa.Index("ix_reports_status_created", "status", "created_at"),
    )
    sa.Table(
        "report_events",
        md,  # the history a reporter sees: received → in_review → confirmed / rejected
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("report_id", sa.String(40), sa.ForeignKey("reports.id"), nullable=False, index=True),
        sa.Column("ts", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(256), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
    )
    md.create_all(conn)


def _v3_ingested_items(conn: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "ingested_items",
        md,  # every item the risk state counted, by (source, item id): a replay counts once
        sa.Column("source", sa.String(512), primary_key=True),  # "" for an item that named no source
        sa.Column("item_id", sa.String(256), primary_key=True),
        sa.Column("ts", sa.Float, nullable=False),  # when it was ingested: pruned with the flagged items
        sa.Index("ix_ingested_items_ts", "ts"),
    )
    md.create_all(conn)


def _v4_conversations(conn: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "conversations",
        md,  # one row per live conversation: its bounded state (fanzha.models.conversation), expired when idle
        sa.Column("conversation_id", sa.String(256), primary_key=True),
        sa.Column("state", sa.Text, nullable=False),  # JSON: recent window, running scores, trigger
        sa.Column("message_count", sa.Integer, nullable=False),
        sa.Column("trigger_index", sa.Integer, nullable=True),
        sa.Column("account_id", sa.String(256), nullable=True),
        sa.Column("group_id", sa.String(256), nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False, index=True),  # idle expiry scans by this
    )
    sa.Table(
        "conversation_message_ids",
        md,  # every message id a live conversation has seen: a duplicate id is refused (bounded by expiry)
        sa.Column("conversation_id", sa.String(256), primary_key=True),
        sa.Column("message_id", sa.String(256), primary_key=True),
        sa.Column("idx", sa.Integer, nullable=False),
    )
    md.create_all(conn)


def _v5_moderation(conn: Connection) -> None:
    md = sa.MetaData()
    ts = sa.Float
    cases = sa.Table(
        "review_cases",
        md,  # every case a moderator works on: a report, an item decided `review`, an audit sample, an alert
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(300), nullable=False, unique=True),  # "review:12", "report:r…"
        sa.Column("queue", sa.String(16), nullable=False),  # reports | review | audit | alerts
        sa.Column("ref", sa.String(256), nullable=True),  # the report id or alert id it stands for
        sa.Column("kind", sa.String(16), nullable=False),  # text image video conversation account group alert
        sa.Column("status", sa.String(16), nullable=False),  # open confirmed rejected
        sa.Column("escalated", sa.Boolean, nullable=False),  # an open case a moderator passed up
        sa.Column("priority", sa.Float, nullable=False),
        sa.Column("fraud_score", sa.Float, nullable=True),
        sa.Column("decision", sa.String(16), nullable=True),  # the model's: pass / review / block
        sa.Column("labels", sa.Text, nullable=False),  # JSON list: the model's labels
        sa.Column("reach", sa.Integer, nullable=False),  # times the same content came while the case was open
        sa.Column("report_count", sa.Integer, nullable=False),
        sa.Column("minors", sa.Boolean, nullable=False),  # wording aimed at minors
        sa.Column("snippet", sa.Text, nullable=False),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("verdict", sa.Text, nullable=True),  # JSON: the verdict as stored
        sa.Column("media", sa.Text, nullable=True),  # JSON list of kept files and what is drawn on them
        sa.Column("media_dir", sa.String(64), nullable=True),  # under FANZHA_DATA_DIR/review/
        sa.Column("conversation", sa.Text, nullable=True),  # JSON: messages and trigger index
        sa.Column("content_sha", sa.String(64), nullable=True),
        sa.Column("item_id", sa.String(256), nullable=True),
        sa.Column("source", sa.String(512), nullable=True),
        sa.Column("account_id", sa.String(256), nullable=True, index=True),
        sa.Column("group_id", sa.String(256), nullable=True, index=True),
        sa.Column("created_at", ts, nullable=False, index=True),  # retention scans by this
        sa.Column("updated_at", ts, nullable=False),
        sa.Column("claimed_by", sa.String(256), nullable=True),
        sa.Column("claim_expires_at", ts, nullable=True),
        sa.Column("decided_at", ts, nullable=True),
        sa.Index("ix_review_cases_content", "queue", "content_sha", "status"),
        sa.Index("ix_review_cases_ref", "queue", "ref"),
    )
    # the queue page: open cases of one queue, highest priority first, oldest first among equals, read in
    # index order (no sort, whatever the depth)
    sa.Index(
        "ix_review_cases_queue",
        cases.c.queue,
        cases.c.status,
        cases.c.priority.desc(),
        cases.c.created_at,
        cases.c.id,
    )
    sa.Table(
        "decisions",
        md,  # every moderator decision: the audit log, the dashboard's agreement, the feedback export
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(300), nullable=False, index=True),
        sa.Column("queue", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("moderator_id", sa.String(256), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),  # confirm reject escalate
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("labels", sa.Text, nullable=False),  # JSON list: the labels confirmed
        sa.Column("model_decision", sa.String(16), nullable=True),
        sa.Column("fraud_score", sa.Float, nullable=True),
        sa.Column("text", sa.Text, nullable=True),  # what was decided on (the feedback export reads it)
        sa.Column("source", sa.String(512), nullable=True),
        sa.Column("account_id", sa.String(256), nullable=True),
        sa.Column("group_id", sa.String(256), nullable=True),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("ts", ts, nullable=False, index=True),
        sa.UniqueConstraint("moderator_id", "idempotency_key", name="uq_decisions_moderator_key"),
    )
    sa.Table(
        "actions",
        md,  # disposal of accounts and groups: who, when, why, on which evidence; lifted or expiring
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("entity_kind", sa.String(16), nullable=False),
        sa.Column("entity_id", sa.String(256), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("moderator_id", sa.String(256), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("duration_s", sa.Float, nullable=True),
        sa.Column("expires_at", ts, nullable=True),
        sa.Column("case_id", sa.String(300), nullable=True),
        sa.Column("evidence", sa.Text, nullable=False),  # JSON
        sa.Column("created_at", ts, nullable=False, index=True),
        sa.Column("lifted_at", ts, nullable=True),
        sa.Column("lifted_by", sa.String(256), nullable=True),
        sa.Column("lift_reason", sa.Text, nullable=True),
        sa.Index("ix_actions_entity", "entity_kind", "entity_id"),
    )
    sa.Table(
        "action_deliveries",
        md,  # each POST of an action (or its lift) to FANZHA_ACTION_WEBHOOK and how it went
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("action_id", sa.Integer, sa.ForeignKey("actions.id"), nullable=False, index=True),
        sa.Column("event", sa.String(16), nullable=False),  # dispose | lift
        sa.Column("status", sa.String(16), nullable=False),  # pending delivered failed not_configured
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", ts, nullable=False),
        sa.Column("updated_at", ts, nullable=False),
    )
    md.create_all(conn)
    # the reports still waiting for a moderator become cases of the `reports` queue
    reports = sa.table(
        "reports",
        *(sa.column(c) for c in ("id", "target_type", "target_text", "target_account_id", "target_group_id")),
        *(sa.column(c) for c in ("target_source", "status", "verdict", "created_at", "updated_at")),
    )
    rows = conn.execute(sa.select(reports).where(reports.c.status.in_(("received", "in_review")))).all()
    for r in rows:
        verdict = json.loads(r.verdict) if r.verdict else {}
        score = verdict.get("fraud_score")
        conn.execute(
            cases.insert().values(
                case_id=f"report:{r.id}",
                queue="reports",
                ref=r.id,
                kind=r.target_type,
                status="open",
                escalated=False,
                priority=100.0 * (score if score is not None else 0.5) + 8.0,
                fraud_score=score,
                decision=verdict.get("decision"),
                labels=json.dumps(verdict.get("labels") or []),
                reach=1,
                report_count=1,
                minors=False,
                snippet=(r.target_text or "")[:120],
                text=r.target_text,
                account_id=r.target_account_id,
                group_id=r.target_group_id,
                source=r.target_source,
                created_at=r.created_at,
                updated_at=r.updated_at,
            )
        )


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Connection], None]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "risk state: entities, handles, clusters, flagged items, alerts", _v1_risk_state),
    Migration(2, "fraud reports and their status events", _v2_reports),
    Migration(3, "ingested items by (source, item id): replayed items count once", _v3_ingested_items),
    Migration(4, "live conversations: bounded window state and seen message ids", _v4_conversations),
    Migration(
        5, "moderation: review cases, claims, decisions, disposal actions and deliveries", _v5_moderation
    ),
)
LATEST = MIGRATIONS[-1].version

_VERSION_MD = sa.MetaData()
SCHEMA_VERSION = sa.Table(
    "schema_version",
    _VERSION_MD,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied_at", sa.Float, nullable=False),
)


class WriteBusy(RuntimeError):
    """A write that was asked not to wait found another writer holding the database's write lock."""


def _begin_immediate(cursor, wait: bool, dbapi) -> None:
    """BEGIN IMMEDIATE; not waiting, SQLite's busy handler gives up after NO_WAIT_BUSY_TIMEOUT_MS (WriteBusy)."""
    if wait:
        cursor.execute("BEGIN IMMEDIATE")
        return
    cursor.execute(f"PRAGMA busy_timeout={NO_WAIT_BUSY_TIMEOUT_MS}")
    try:
        cursor.execute("BEGIN IMMEDIATE")
    except dbapi.OperationalError as e:
        raise WriteBusy(f"another process is writing: {e}") from None
    finally:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")


class Database:
    """An engine, its migrated schema, and transactions that serialise writers the right way per backend."""

    def __init__(self, url: str | None = None, migrations: tuple[Migration, ...] = MIGRATIONS) -> None:
        self.url = database_url(url)
        self.engine = create_engine(self.url)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        # a file the workers share (an in-memory SQLite database is one connection for every thread)
        self.is_sqlite_file = self.is_sqlite and self.engine.url.database not in (None, "", ":memory:")
        # one writer at a time inside this process: threads queue on a lock instead of spinning in SQLite's
        # busy handler (which sleeps up to 100 ms a try); other processes still wait through busy_timeout
        self._write_lock = threading.Lock() if self.is_sqlite else None
        try:
            self.version = migrate(self, migrations)
        except sa.exc.OperationalError as e:
            raise DatabaseError(f"cannot open the database {self.safe_url}: {e.orig}") from None
        self.tables = reflect(self.engine)

    @property
    def safe_url(self) -> str:
        return sa.make_url(self.url).render_as_string(hide_password=True)

    @contextmanager
    def write(self, lock: str | None = None) -> Iterator[Connection]:
        """A write transaction: BEGIN IMMEDIATE on SQLite; on PostgreSQL an advisory lock named by `lock`."""
        if self._write_lock is not None:
            self._write_lock.acquire()
        try:
            with self.engine.connect() as conn:
                conn.execution_options(fanzha_write=True)
                with conn.begin(), _nul_is_input():
                    if lock and not self.is_sqlite:
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCKS[lock]})
                    yield conn
        finally:
            if self._write_lock is not None:
                self._write_lock.release()

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin(), _nul_is_input():
            yield conn

    def write_lock_free(self) -> bool:
        """Whether no thread of this process holds the write lock now (a hint: it may be taken a moment later)."""
        return self._write_lock is None or not self._write_lock.locked()

    @contextmanager
    def driver(self, write: bool = False, wait: bool = True) -> Iterator[DriverCursor]:
        """A transaction on the driver's own connection (sqlite3, psycopg), for a hot path's few statements
        (`Compiled`): SQLAlchemy's per-statement work (events, result objects, commit hooks) cost a streamed
        message ten times what SQLite does. The same serialisation as `write` (BEGIN IMMEDIATE and the process
        lock on SQLite) and the same errors: the driver's are raised as SQLAlchemy's (IntegrityError, …).
        `wait=False` (a write on an event loop): WriteBusy at once when another thread holds the process lock, and
        after NO_WAIT_BUSY_TIMEOUT_MS when another process holds SQLite's."""
        lock = self._write_lock if write else None
        if lock is not None and not lock.acquire(blocking=wait):
            raise WriteBusy("another thread of this process is writing")
        try:
            with _nul_is_input(), _as_sqlalchemy_errors(self.engine.dialect.loaded_dbapi):
                raw = self.engine.raw_connection()
                try:
                    cursor = raw.cursor()
                    try:
                        if self.is_sqlite and write:  # a lone read needs no transaction in WAL mode
                            _begin_immediate(cursor, wait, self.engine.dialect.loaded_dbapi)
                        yield DriverCursor(cursor)
                        raw.commit()
                    except BaseException:
                        # a rollback that fails too (a broken connection, which the pool drops) must not hide
                        # the first error
                        try:
                            raw.rollback()
                        except Exception:
                            log.warning("rollback failed after an error", exc_info=True)
                        raise
                    finally:
                        cursor.close()  # a half-read SELECT must not keep its snapshot on the pooled connection
                finally:
                    raw.close()  # back to the pool
        finally:
            if lock is not None:
                lock.release()

    def compile(self, statement: sa.Executable) -> Compiled:
        return Compiled(statement, self.engine.dialect)

    def close(self) -> None:
        self.engine.dispose()


class Compiled:
    """A statement compiled once for the database's dialect, run on a `Database.driver` cursor with its bound
    values by name. SQLAlchemy's type conversions are not applied: use it on columns whose Python values the
    driver takes as they are (text, integers, floats)."""

    def __init__(self, statement: sa.Executable, dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.names = compiled.positiontup  # the order of `?` (SQLite); None for named styles (psycopg)
        # values written into the statement itself (`col >= 1`), bound with the caller's
        self.literals = {k: v for k, v in compiled.params.items() if v is not None}

    def params(self, values: dict) -> list | dict:
        values = {**self.literals, **values} if self.literals else values
        return [values[n] for n in self.names] if self.names is not None else values


class DriverCursor:
    """A driver cursor that runs `Compiled` statements: rows as named tuples, `rowcount` of the last one."""

    def __init__(self, cursor) -> None:
        self.cursor = cursor

    def execute(self, statement: Compiled, values: dict) -> DriverCursor:
        self.cursor.execute(statement.sql, statement.params(values))
        return self

    def first(self):
        row = self.cursor.fetchone()
        if row is None:
            return None
        fields = tuple(d[0] for d in self.cursor.description)
        return _row_type(fields)(*row)

    @property
    def rowcount(self) -> int:
        return self.cursor.rowcount


@functools.lru_cache(maxsize=64)
def _row_type(fields: tuple[str, ...]) -> type:
    return collections.namedtuple("Row", fields)


@contextmanager
def _as_sqlalchemy_errors(dbapi) -> Iterator[None]:
    """The driver's exceptions as SQLAlchemy raises them (IntegrityError, OperationalError, DataError …), so a
    caller handles one family whichever way its statements ran."""
    try:
        yield
    except dbapi.Error as e:
        raise sa.exc.DBAPIError.instance(None, None, e, dbapi.Error) from e


@contextmanager
def _nul_is_input() -> Iterator[None]:
    """PostgreSQL text cannot hold U+0000 (psycopg refuses it before sending): that is the caller's input, not
    an outage, so every store says so as an InputError (HTTP 400) instead of a DataError (500)."""
    try:
        yield
    except sa.exc.DataError as e:
        if "NUL" not in str(e.orig):
            raise
        raise InputError("text and ids cannot contain NUL characters (U+0000)") from None


def migrate(db: Database, migrations: tuple[Migration, ...] = MIGRATIONS) -> int:
    """Apply the steps the database lacks; returns its version. Safe to call from several processes at once."""
    with db.write(lock="migrate") as conn:
        SCHEMA_VERSION.create(conn, checkfirst=True)
        current = conn.execute(sa.select(sa.func.max(SCHEMA_VERSION.c.version))).scalar() or 0
        known = max((m.version for m in migrations), default=0)
        if current > known:
            raise DatabaseError(
                f"the database {db.safe_url} has schema version {current}, newer than this fanzha "
                f"knows ({known}): upgrade fanzha"
            )
        for step in sorted(migrations, key=lambda m: m.version):
            if step.version > current:
                step.apply(conn)
                conn.execute(
                    SCHEMA_VERSION.insert().values(
                        version=step.version, description=step.description, applied_at=time.time()
                    )
                )
                log.info(
                    "database %s: applied migration %d (%s)", db.safe_url, step.version, step.description
                )
                current = step.version
    return current


def reflect(engine: Engine) -> dict[str, sa.Table]:
    md = sa.MetaData()
    md.reflect(engine)
    return dict(md.tables)
