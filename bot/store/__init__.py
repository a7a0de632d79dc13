"""The durable store: the `Store` protocol and the backend that DATABASE_URL selects."""

from __future__ import annotations

from bot.settings import PostgresDatabase, Settings, SqliteDatabase
from bot.store.base import (
    AuditEvent,
    Delivery,
    Job,
    JobState,
    LeaseLost,
    Store,
    StoreError,
    StoreMissing,
)
from bot.store.postgres import PostgresStore
from bot.store.sqlite import SqliteStore

__all__ = [
    "AuditEvent",
    "Delivery",
    "Job",
    "JobState",
    "LeaseLost",
    "PostgresStore",
    "SqliteStore",
    "Store",
    "StoreError",
    "StoreMissing",
    "store_for",
]


def store_for(settings: Settings, *, create: bool = True) -> Store:
    """Return the (unopened) store that `settings.database` names.

    With `create` False, an SQLite file that does not exist yet is an error instead of being
    created (read-only commands such as `jobs` should not leave an empty database behind).
    A PostgreSQL database is always migrated on `open()`: its schema is shared, and a
    command that finds it empty would create the same tables as the first server anyway.
    """
    database = settings.database
    if isinstance(database, SqliteDatabase):
        return SqliteStore(database.path, create=create)
    if isinstance(database, PostgresDatabase):
        return PostgresStore(database.url.reveal())
    raise StoreError(f"unsupported database: {database!r}")  # pragma: no cover
