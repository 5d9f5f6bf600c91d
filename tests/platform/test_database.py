"""Database.driver: compiled statements on the driver's own connection, with SQLAlchemy's errors and
all-or-nothing transactions, on SQLite and PostgreSQL alike."""

import pytest
import sqlalchemy as sa

from fanzha.platform.database import Database

from .db_fixtures import db_url  # noqa: F401 (fixture)


@pytest.fixture
def db(db_url):  # noqa: F811
    database = Database(db_url)
    yield database
    database.close()


def statements(db: Database) -> dict:
    ids = db.tables["conversation_message_ids"]
    cid, mid = sa.bindparam("cid"), sa.bindparam("mid")
    return {
        "remember": db.compile(
            ids.insert().values(conversation_id=cid, message_id=mid, idx=sa.bindparam("idx"))
        ),
        "seen": db.compile(
            sa.select(ids.c.idx, ids.c.message_id).where(ids.c.conversation_id == cid).order_by(ids.c.idx)
        ),
    }


def test_rows_come_back_by_column_name(db) -> None:
    sql = statements(db)
    with db.driver(write=True) as cur:
        cur.execute(sql["remember"], {"cid": "c1", "mid": "m1", "idx": 7, "unused": "ignored"})
    with db.driver() as cur:
        row = cur.execute(sql["seen"], {"cid": "c1"}).first()
        assert (row.idx, row.message_id) == (7, "m1")
        assert cur.execute(sql["seen"], {"cid": "nobody"}).first() is None


def test_a_failed_statement_undoes_the_whole_transaction_and_raises_sqlalchemys_error(db) -> None:
    sql = statements(db)
    with pytest.raises(sa.exc.IntegrityError):
        with db.driver(write=True) as cur:
            cur.execute(sql["remember"], {"cid": "c1", "mid": "m1", "idx": 0})
            cur.execute(sql["remember"], {"cid": "c1", "mid": "m1", "idx": 1})  # the same id twice
    with db.driver() as cur:
        assert cur.execute(sql["seen"], {"cid": "c1"}).first() is None  # the first insert was rolled back
    with db.driver(write=True) as cur:  # and the connection went back to the pool usable
        assert cur.execute(sql["remember"], {"cid": "c1", "mid": "m1", "idx": 0}).rowcount == 1


def test_a_half_read_query_does_not_hold_the_database(db, db_url) -> None:  # noqa: F811
    """`first()` of a query with several rows, then another process writes, then this one: no 'database is
    locked' (SQLite keeps an unfinished SELECT's snapshot on the connection until its cursor is closed)."""
    sql = statements(db)
    with db.driver(write=True) as cur:
        for i in range(3):
            cur.execute(sql["remember"], {"cid": "c1", "mid": f"m{i}", "idx": i})
    with db.driver() as reader:  # `reader` stays referenced: only closing its cursor ends the SELECT
        assert reader.execute(sql["seen"], {"cid": "c1"}).first().idx == 0  # two rows left unread
    other = Database(db_url)
    try:
        with other.driver(write=True) as writer:
            writer.execute(statements(other)["remember"], {"cid": "c2", "mid": "m0", "idx": 0})
    finally:
        other.close()
    with db.driver(write=True) as cur:
        assert cur.execute(sql["remember"], {"cid": "c1", "mid": "m3", "idx": 3}).rowcount == 1
    del reader  # alive until here on purpose


def test_a_value_written_into_the_statement_is_bound_too(db) -> None:
    ids = db.tables["conversation_message_ids"]
    count = db.compile(
        sa.select(sa.func.count()).where(ids.c.conversation_id == sa.bindparam("cid"), ids.c.idx >= 1)
    )
    sql = statements(db)
    with db.driver(write=True) as cur:
        for i in range(3):
            cur.execute(sql["remember"], {"cid": "c1", "mid": f"m{i}", "idx": i})
    with db.driver() as cur:
        assert cur.execute(count, {"cid": "c1"}).cursor.fetchone()[0] == 2


def test_a_write_that_must_not_wait_says_so_and_leaves_nothing(tmp_path) -> None:
    """driver(write=True, wait=False), for an event loop: WriteBusy at once while another thread of this process
    or another process holds SQLite's write lock, and the database's busy timeout stays as it was."""
    import sqlite3
    import time

    from fanzha.platform.database import SQLITE_BUSY_TIMEOUT_S, WriteBusy

    url = f"sqlite:///{tmp_path / 'f.db'}"
    db = Database(url)
    sql = statements(db)
    with db.write():  # this process's lock, held by "another thread"
        t0 = time.perf_counter()
        with pytest.raises(WriteBusy, match="this process"):
            with db.driver(write=True, wait=False) as cur:
                cur.execute(sql["remember"], {"cid": "c", "mid": "m1", "idx": 0})
        assert time.perf_counter() - t0 < 1.0
    other = sqlite3.connect(tmp_path / "f.db", isolation_level=None)  # another worker, mid-write
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(WriteBusy, match="another process"):
        with db.driver(write=True, wait=False) as cur:
            cur.execute(sql["remember"], {"cid": "c", "mid": "m1", "idx": 0})
    other.execute("ROLLBACK")
    with db.driver(write=True, wait=False) as cur:  # free again: it writes
        cur.execute(sql["remember"], {"cid": "c", "mid": "m1", "idx": 0})
    with db.driver() as cur:
        assert cur.execute(sql["seen"], {"cid": "c"}).first().message_id == "m1"
    raw = db.engine.raw_connection()
    try:
        timeout = raw.cursor().execute("PRAGMA busy_timeout").fetchone()[0]
    finally:
        raw.close()
    assert timeout == SQLITE_BUSY_TIMEOUT_S * 1000
    other.close()
    db.close()
