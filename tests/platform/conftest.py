"""Fixtures every platform test may take: `db_url` (SQLite and PostgreSQL) and `make_platform` (a Platform with a
scripted detector, a movable clock and a private review folder)."""

from .db_fixtures import db_url  # noqa: F401 (fixture)
from .moderation_fixtures import make_platform  # noqa: F401 (fixture)
