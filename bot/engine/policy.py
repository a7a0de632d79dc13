"""The policy a scan runs under: rule severities, file lists and archive limits.

It also carries the repository's App settings (what to do with a failing release, how comment
commands are spelled), so one loaded config answers every question a job asks of it.

The config loader (`bot.config`) builds a Policy from `.github/release-guard.yml`; tests and
the App build it directly. It is immutable so one Policy can serve many scans at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from types import MappingProxyType
from typing import Final

from bot.engine.model import DEFAULT_SEVERITY, Rule, Severity

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB


@dataclass(frozen=True, slots=True)
class ArchiveLimits:
    """Safety limits of the archive walker; reaching one is an `archive/limit` finding.

    Sizes count decompressed bytes as they are read, never the sizes an archive declares.
    """

    max_depth: int = 4
    """How many archives deep the walker descends (the artifact itself is depth 0)."""
    max_entries: int = 100_000
    """Entries (files, folders, links) in one artifact, all nesting levels together."""
    max_entry_size: int = 2 * GIB
    """Decompressed bytes of one entry."""
    max_total_size: int = 8 * GIB
    """Decompressed bytes of one artifact, all entries and nesting levels together."""
    max_ratio: float = 250.0
    """Decompressed / compressed bytes of one entry or one compressed stream, once it is
    past `ratio_grace` decompressed bytes."""
    ratio_grace: int = 16 * MIB
    max_seconds: float = 900.0
    """Wall-clock seconds to read one artifact: a scan still running then stops and fails
    closed. The other limits bound the bytes; this bounds the work a hostile file can make
    per byte (a source map of millions of tiny values is slow to read, not large)."""
    max_path_length: int = 4096
    """Bytes (UTF-8) of one member's name; Linux's PATH_MAX. A longer name is refused before
    it is matched against any rule, which bounds the work per name."""
    max_directory_size: int = 64 * MIB
    """Bytes of one zip's central directory (about 400,000 entries of 120-byte names); the
    directory is read a record at a time, so this bounds time, not memory."""


@dataclass(frozen=True, slots=True)
class ArtifactRules:
    """Rules for the artifacts whose name matches `name` (a shell-style glob)."""

    name: str
    allow: tuple[str, ...] = ()
    """Gitignore-style patterns; when non-empty every file outside them is `files/not-allowed`."""

    def matches(self, artifact_name: str) -> bool:
        return fnmatchcase(artifact_name, self.name)


DEFAULT_COMMAND_PREFIX: Final = "/release-guard"
"""What a pull-request comment starts with to ask release-guard for something."""


class OnFailure(StrEnum):
    """What the App does to a published release whose assets fail the scan."""

    DRAFT = "draft"  # edit it back to a draft; an immutable one cannot be: as `issue`
    ISSUE = "issue"  # open one issue in the repository about it, and touch nothing
    DELETE = "delete"  # opt-in: delete it once its failing assets are retained
    NONE = "none"  # only report: the check run fails, the release stays published


@dataclass(frozen=True, slots=True)
class ReleaseSettings:
    """How releases are guarded (the config's `release:` section)."""

    on_failure: OnFailure = OnFailure.DRAFT
    scan_workflow_artifacts: bool = False
    """Also scan the artifacts of the workflow runs of the commit the tag points to."""


@dataclass(frozen=True, slots=True)
class CommentSettings:
    """How pull-request comments address the App (the config's `comments:` section)."""

    prefix: str = DEFAULT_COMMAND_PREFIX
    """The slash command, e.g. `/release-guard rescan`; `@<app-slug> rescan` always works."""


@dataclass(frozen=True, slots=True)
class RetentionRules:
    """A repository's `retention:` section: which scanned artifacts the App keeps, how long.

    None leaves the operator's default (RETENTION_KEEP, RETENTION_DAYS; see `bot.retention`).
    """

    keep: str | None = None
    """`failing` (an error-level finding), `all` or `none`."""
    days: int | None = None
    """Days an artifact is kept after it was last seen."""


def _default_severities() -> Mapping[Rule, Severity | None]:
    return MappingProxyType(dict(DEFAULT_SEVERITY))


@dataclass(frozen=True, slots=True)
class Policy:
    """Everything a scan needs to judge an artifact."""

    severities: Mapping[Rule, Severity | None] = field(default_factory=_default_severities)
    """Severity per rule; None switches a rule off. Rules missing here use their default."""
    artifacts: tuple[ArtifactRules, ...] = ()
    """Per-artifact rules, first match wins."""
    deny: tuple[str, ...] = ()
    """Gitignore-style patterns added to the built-in deny list (never `!` negations: the
    deny list only grows)."""
    deny_exceptions: tuple[str, ...] = ()
    """Paths the config explicitly exempts from the deny list: exact inner or logical paths
    without wildcards, or folders ending with `/` (see `bot.engine.filerules`)."""
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    secret_allow: frozenset[str] = frozenset()
    """Fingerprints (`sha256:` and 16 hex digits) of secrets accepted as test fixtures: the
    `secrets/*` rules skip them (config `secrets.allow`)."""
    retention: RetentionRules | None = None
    """The repository's retention settings, when its config has a `retention:` section."""
    release: ReleaseSettings = field(default_factory=ReleaseSettings)
    """What the App does with releases; not used by the scan itself."""
    comments: CommentSettings = field(default_factory=CommentSettings)
    """How comment commands are spelled; not used by the scan itself."""

    def severity(self, rule: Rule) -> Severity | None:
        if rule in self.severities:
            return self.severities[rule]
        return DEFAULT_SEVERITY[rule]

    def rules_for(self, artifact_name: str) -> ArtifactRules | None:
        for rules in self.artifacts:
            if rules.matches(artifact_name):
                return rules
        return None
