"""How long retained artifacts are kept, which ones, and how much room they may take.

The operator sets the defaults in the environment (or `.env`):

- `RETENTION_KEEP`: `failing` (artifacts with an error-level finding; the default), `all`
  or `none`;
- `RETENTION_DAYS`: days an artifact is kept after it was last seen (default 365);
- `RETENTION_MAX_SIZE`: the store's total size cap (`20GiB`, `500MB`, bytes; `0`: no cap;
  default 20GiB).

A repository's `.github/release-guard.yml` may override `keep` and `days` for its own
artifacts (`retention:` section); the size cap protects the operator's store and stays theirs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Final

from bot.engine.model import ArtifactReport, Severity
from bot.engine.policy import GIB, RetentionRules
from bot.settings import SettingsError, read_dotenv

DAY: Final = 86_400.0
DEFAULT_DAYS: Final = 365
MAX_DAYS: Final = 36_500
DEFAULT_MAX_BYTES: Final = 20 * GIB


class Keep(StrEnum):
    """Which scanned artifacts are retained."""

    FAILING = "failing"
    ALL = "all"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """What to keep, for how long, and the store's total size cap (None: no cap)."""

    keep: Keep = Keep.FAILING
    days: int = DEFAULT_DAYS
    max_bytes: int | None = DEFAULT_MAX_BYTES

    def for_repository(self, rules: RetentionRules | None) -> RetentionPolicy:
        """Return this policy with a repository's `retention:` section laid over it."""
        if rules is None:
            return self
        keep = Keep(rules.keep) if rules.keep is not None else self.keep
        days = rules.days if rules.days is not None else self.days
        return replace(self, keep=keep, days=days)

    def wants(self, report: ArtifactReport) -> bool:
        """Tell whether an artifact with this report is to be retained."""
        if self.keep is Keep.NONE:
            return False
        if self.keep is Keep.ALL:
            return True
        return any(finding.severity is Severity.ERROR for finding in report.findings)

    @property
    def seconds(self) -> float:
        return self.days * DAY

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, *, cwd: Path | None = None
    ) -> RetentionPolicy:
        """Read RETENTION_KEEP, RETENTION_DAYS and RETENTION_MAX_SIZE (environment over .env)."""
        values = merged_environment(environ, cwd=cwd)
        return cls(
            keep=_keep(values.get("RETENTION_KEEP")),
            days=_days(values.get("RETENTION_DAYS")),
            max_bytes=_max_bytes(values.get("RETENTION_MAX_SIZE")),
        )


def merged_environment(
    environ: Mapping[str, str] | None = None, *, cwd: Path | None = None
) -> dict[str, str]:
    """The environment over `cwd/.env`, as `Settings.from_environment` reads it (empty values
    count as unset); the AWS variables of an S3 store are read from it too."""
    merged = dict(read_dotenv((cwd or Path.cwd()) / ".env"))
    merged.update(os.environ if environ is None else environ)
    return {key: value for key, value in merged.items() if value.strip()}


def _keep(value: str | None) -> Keep:
    if value is None:
        return Keep.FAILING
    try:
        return Keep(value.strip().lower())
    except ValueError:
        raise SettingsError(f"RETENTION_KEEP must be failing, all or none, got {value!r}") from None


def _days(value: str | None) -> int:
    if value is None:
        return DEFAULT_DAYS
    if not value.strip().isdigit() or not 1 <= int(value) <= MAX_DAYS:
        raise SettingsError(
            f"RETENTION_DAYS must be a number of days from 1 to {MAX_DAYS}, got {value!r}"
        )
    return int(value)


def _max_bytes(value: str | None) -> int | None:
    from bot.config import parse_size  # the config's size syntax; imported late (yaml)

    if value is None:
        return DEFAULT_MAX_BYTES
    if value.strip().lower() in ("0", "none", "unlimited"):
        return None
    try:
        size = parse_size(value)
    except ValueError:
        size = 0
    if size < 1:
        raise SettingsError(
            "RETENTION_MAX_SIZE must be a size such as 20GiB or 500MB (0 for no cap), "
            f"got {value!r}"
        )
    return size
