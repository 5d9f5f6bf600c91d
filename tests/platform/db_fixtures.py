"""Database URLs for store tests: a fresh SQLite file always; a fresh PostgreSQL schema too when
FANZHA_TEST_POSTGRES_URL names a database to use (e.g. postgresql://postgres@127.0.0.1:5432/postgres)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

POSTGRES_URL = os.environ.get("FANZHA_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not POSTGRES_URL, reason="set FANZHA_TEST_POSTGRES_URL to run the store tests against PostgreSQL"))]


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fanzha.db'}"


def postgres_schema_url(base_url: str | None = None):
    """(url whose search_path is a new schema, drop()): each test gets an empty schema of its own."""
    import sqlalchemy as sa

    from fanzha.platform.database import database_url

    base = database_url(base_url or POSTGRES_URL)
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


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    url, drop = postgres_schema_url()
    yield url
    drop()
