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
from bot.store.sqlite import SqliteStore

__all__ = [
    "AuditEvent",
    "Delivery",
    "Job",
    "JobState",
    "LeaseLost",
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
    """
    database = settings.database
    if isinstance(database, SqliteDatabase):
        return SqliteStore(database.path, create=create)
    if isinstance(database, PostgresDatabase):
        raise StoreError(
            "DATABASE_URL names a PostgreSQL database, which this version cannot use yet: "
            "remove DATABASE_URL to use the embedded SQLite database under DATA_DIR"
        )
    raise StoreError(f"unsupported database: {database!r}")  # pragma: no cover
