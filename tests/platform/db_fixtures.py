"""Database URLs for store tests: a fresh SQLite file, and a fresh schema on the session's PostgreSQL
(tests/postgres.py: the system's initdb/pg_ctl, or FANZHA_TEST_POSTGRES_URL), for every test that takes
`db_url`. The PostgreSQL variant skips only where there is no PostgreSQL at all, and says why."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

BACKENDS = ["sqlite", "postgresql"]


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fanzha.db'}"


def postgres_schema_url(base_url: str):
    """(url whose search_path is a new schema, drop()): each test gets an empty schema of its own."""
    import sqlalchemy as sa

    from fanzha.platform.database import database_url

    base = database_url(base_url)
    schema = f"fanzha_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})

    def drop() -> None:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return url.render_as_string(hide_password=False), drop


@pytest.fixture
def pg_url(postgres_url):
    """A fresh, empty schema on the session's PostgreSQL."""
    url, drop = postgres_schema_url(postgres_url)
    yield url
    drop()


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    url, drop = postgres_schema_url(
        request.getfixturevalue("postgres_url")
    )  # postgres_url: tests/postgres.py
    yield url
    drop()
