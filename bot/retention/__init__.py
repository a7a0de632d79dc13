"""Keep every failing artifact for investigation: the store, its index, the policy and gc.

- `blobs`: content-addressed blobs (SHA-256) in `ARTIFACT_STORE`, a folder or S3, via obstore;
- `policy`: what to keep and for how long (environment, and a repository's `retention:`);
- `retainer`: `Retainer.retain`, called by the handlers between scanning and deleting an
  artifact, and the retry of retentions that the store refused;
- `gc`: expired first, then oldest past the size cap, then crash leftovers;
- `maintenance`: the App's periodic retry and gc.

The metadata lives in the App's database (`bot.store.base.RetentionIndex`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bot.retention.blobs import BlobStore, BlobStoreError, DigestMismatch
from bot.retention.gc import GcReport, collect_garbage
from bot.retention.policy import Keep, RetentionPolicy, merged_environment
from bot.retention.retainer import (
    MISSING,
    SPOOL_FOLDER,
    Missing,
    RetainedRef,
    Retainer,
    RetentionMeta,
    retained_id,
    retained_ids,
    retention_note,
)
from bot.settings import Settings
from bot.store.base import RetentionIndex

__all__ = [
    "MISSING",
    "BlobStore",
    "BlobStoreError",
    "DigestMismatch",
    "GcReport",
    "Keep",
    "Missing",
    "RetainedRef",
    "Retainer",
    "RetentionMeta",
    "RetentionPolicy",
    "build_retainer",
    "collect_garbage",
    "retained_id",
    "retained_ids",
    "retention_note",
]


def build_retainer(
    settings: Settings,
    index: RetentionIndex,
    *,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    policy: RetentionPolicy | None = None,
) -> Retainer:
    """Return the Retainer for `settings.artifact_store`, indexed in `index` (the App's store).

    The policy and the `AWS_*` variables come from the environment over `.env` unless given.
    Raises SettingsError for a store URL or a setting that cannot be used; contacts nothing.
    """
    values = merged_environment(environ, cwd=cwd)
    return Retainer(
        BlobStore.from_url(settings.artifact_store, values),
        index,
        policy or RetentionPolicy.from_environment(values),
        spool_dir=settings.data_dir / SPOOL_FOLDER,
    )
