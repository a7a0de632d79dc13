"""Scan each artifact once: verdicts kept by what was scanned, under which policy, by which engine.

A pull-request check, a deployment gate and a release scan of one commit often meet the same
bytes; so do the jobs of a commit whose workflows finish one after the other. The first scan's
`ArtifactReport` is kept in the App's database (`ScanLedger`) under a key made of:

- the repository (a verdict, and the retained copy it names, never crosses repositories);
- what was scanned: the `digest` GitHub gives for an artifact or a release asset
  (`sha256:<hex>`; "List workflow run artifacts" and "List release assets" in
  https://docs.github.com/en/rest/actions/artifacts and
  https://docs.github.com/en/rest/releases/assets, `@octokit/openapi` 23.0.2 shows it on
  both), else the artifact's or asset's id and size (neither can be changed once uploaded);
- the artifact's name (the policy's per-artifact rules and the findings' paths depend on it);
- a digest of the effective policy, and the engine's version (the package version and a
  digest of the engine's source).

A config change or an engine upgrade therefore makes new keys: nothing is invalidated by hand.
A verdict whose scan was cut short by a safety limit (`archive/limit`, which can depend on the
machine's speed) is never kept. A digest GitHub gave that the downloaded bytes do not match is
not trusted: that verdict is not kept either. The store failing costs a download, never a
verdict: a lookup that fails is a miss, a write that fails is logged.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.resources
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Literal

import bot
from bot.engine.model import ArtifactReport, Rule
from bot.engine.policy import Policy
from bot.store.base import ScanLedger, StoredVerdict, StoreError

log = logging.getLogger(__name__)

_SHA256: Final = re.compile(r"sha256:([0-9a-fA-F]{64})")


@dataclass(frozen=True, slots=True)
class Subject:
    """What a verdict is about, as the API describes it before anything is downloaded."""

    kind: Literal["artifact", "asset"]
    id: int
    size: int
    digest: str | None = None
    """GitHub's `digest` field (`sha256:<hex>`), when the API gives one."""

    @property
    def sha256(self) -> str | None:
        """The digest's hex, when GitHub gave a SHA-256 digest."""
        match = _SHA256.fullmatch(self.digest or "")
        return match[1].lower() if match else None

    @property
    def identity(self) -> str:
        """The bytes' digest, or else the artifact's or asset's id and size."""
        sha256 = self.sha256
        return f"sha256:{sha256}" if sha256 else f"{self.kind}:{self.id}:{self.size}"


def _canonical(value: Any) -> Any:
    """`value` as plain JSON data, the same for equal values (for a stable digest)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return sorted(([_canonical(k), _canonical(v)] for k, v in value.items()), key=repr)
    if isinstance(value, tuple | list | frozenset | set):
        items = [_canonical(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, frozenset | set) else items
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot fingerprint a {type(value).__name__}")


def policy_digest(policy: Policy) -> str:
    """A stable digest of the whole effective policy (equal policies, equal digests)."""
    text = json.dumps(_canonical(policy), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def engine_version() -> str:
    """release-guard's version and a digest of the engine's source files.

    Any change to the engine (a new rule, a fixed bug) changes it, released or not, so no
    verdict of an older engine is ever reused.
    """
    digest = hashlib.sha256()
    package = importlib.resources.files("bot.engine")
    for item in sorted(package.iterdir(), key=lambda i: i.name):
        if item.name.endswith(".py") and item.is_file():
            digest.update(item.name.encode() + b"\0" + item.read_bytes() + b"\0")
    return f"{bot.__version__}+{digest.hexdigest()[:16]}"


@dataclass(frozen=True, slots=True)
class Recalled:
    """A verdict found for a subject: the report (a fresh copy) and its retained copy's id."""

    report: ArtifactReport
    retained_id: str | None


class VerdictCache:
    """One job's view of the kept verdicts: its repository and its effective policy.

    `refresh` (a rescan a person asked for) recalls nothing, so everything is downloaded and
    scanned again, and records what it finds for the next jobs.
    """

    def __init__(
        self,
        ledger: ScanLedger,
        repository: str,
        policy: Policy,
        *,
        refresh: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._ledger = ledger
        self._repository = repository.lower()
        self._policy = policy_digest(policy)
        self._engine = engine_version()
        self._refresh = refresh
        self._clock = clock

    def key(self, subject: Subject, name: str) -> str:
        parts = [self._repository, subject.identity, name, self._policy, self._engine]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    async def recall(self, subject: Subject, name: str) -> Recalled | None:
        """The kept verdict for `subject` scanned as `name`, or None (also when the store fails)."""
        if self._refresh:
            return None
        try:
            stored = await self._ledger.get_verdict(self.key(subject, name))
        except StoreError as exc:
            log.warning("cannot read a kept verdict (%s); scanning again", exc)
            return None
        if stored is None:
            return None
        try:
            report = ArtifactReport.from_dict(stored.report)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("a kept verdict does not read back (%s); scanning again", exc)
            return None
        return Recalled(report, stored.retained_id)

    async def remember(
        self, subject: Subject, name: str, report: ArtifactReport, retained_id: str | None
    ) -> bool:
        """Keep `report` for the next jobs; False (and nothing kept) when it must not be."""
        if any(f.rule is Rule.ARCHIVE_LIMIT for f in report.findings):
            return False  # a limit reached may depend on this machine's speed: scan again
        expected = subject.sha256
        if expected is not None and (report.sha256 or "").lower() != expected:
            log.warning(
                "%s %d: GitHub's digest %s does not match the downloaded bytes (%s); its "
                "verdict is not kept",
                subject.kind,
                subject.id,
                subject.digest,
                report.sha256,
            )
            return False
        data = report.to_dict()
        data["scanned"] = report.scanned
        verdict = StoredVerdict(self.key(subject, name), data, retained_id, self._clock())
        try:
            await self._ledger.put_verdict(verdict)
        except StoreError as exc:
            log.warning("cannot keep a verdict (%s); the next job scans again", exc)
            return False
        return True
