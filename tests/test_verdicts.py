"""The verdict cache's rules: what is never kept, and a store that fails costs a download only."""

from __future__ import annotations

import pytest

from bot.engine.model import ArtifactReport, Finding, Rule, Severity
from bot.engine.policy import Policy
from bot.handlers.verdicts import Subject, VerdictCache, engine_version
from bot.store.base import CheckCoverage, StoredVerdict, StoreError

DIGEST = "ab" * 32


class MemoryLedger:
    """A ScanLedger in memory that can be told to fail."""

    def __init__(self) -> None:
        self.verdicts: dict[str, StoredVerdict] = {}
        self.failing = False

    async def get_verdict(self, key: str) -> StoredVerdict | None:
        if self.failing:
            raise StoreError("the database is down")
        return self.verdicts.get(key)

    async def put_verdict(self, verdict: StoredVerdict) -> None:
        if self.failing:
            raise StoreError("the database is down")
        self.verdicts[verdict.key] = verdict

    async def get_coverage(self, repository: str, head_sha: str) -> CheckCoverage | None:
        return None

    async def put_coverage(self, coverage: CheckCoverage) -> None:
        return None


def report(*findings: Finding, sha256: str = DIGEST) -> ArtifactReport:
    return ArtifactReport(
        name="npm-package",
        path="workflow run 1, artifact 2",
        sha256=sha256,
        size=10,
        files=3,
        findings=list(findings),
    )


LEAK = Finding(Rule.EMBEDDED_SOURCES, Severity.ERROR, "npm-package!/a.js.map", "sources", 1)
SUBJECT = Subject("artifact", 2, 10, f"sha256:{DIGEST}")


@pytest.mark.asyncio
async def test_a_verdict_reads_back_whole_for_the_same_key_only() -> None:
    ledger = MemoryLedger()
    cache = VerdictCache(ledger, "Octo/Repo", Policy())
    assert await cache.remember(SUBJECT, "npm-package", report(LEAK), "0123456789abcdef")
    recalled = await cache.recall(SUBJECT, "npm-package")
    assert recalled is not None and recalled.retained_id == "0123456789abcdef"
    assert recalled.report.to_dict() == report(LEAK).to_dict()
    # Same bytes, another repository, name or policy: another key.
    assert await VerdictCache(ledger, "octo/other", Policy()).recall(SUBJECT, "npm-package") is None
    assert await cache.recall(SUBJECT, "site") is None
    stricter = VerdictCache(ledger, "octo/repo", Policy(deny=("*.txt",)))
    assert await stricter.recall(SUBJECT, "npm-package") is None
    # The repository's name is compared case-blind, as GitHub does.
    assert await VerdictCache(ledger, "octo/repo", Policy()).recall(SUBJECT, "npm-package")
    # A person's rescan recalls nothing.
    refresh = VerdictCache(ledger, "octo/repo", Policy(), refresh=True)
    assert await refresh.recall(SUBJECT, "npm-package") is None


@pytest.mark.asyncio
async def test_what_is_never_kept() -> None:
    ledger = MemoryLedger()
    cache = VerdictCache(ledger, "octo/repo", Policy())
    limit = Finding(Rule.ARCHIVE_LIMIT, Severity.ERROR, "npm-package", "took too long")
    assert not await cache.remember(SUBJECT, "npm-package", report(limit), None)
    # GitHub's digest that the downloaded bytes do not match is not trusted.
    assert not await cache.remember(SUBJECT, "npm-package", report(sha256="cd" * 32), None)
    assert ledger.verdicts == {}
    # Without a digest from GitHub, the id and size name the artifact.
    assert await cache.remember(Subject("artifact", 2, 10), "npm-package", report(), None)


@pytest.mark.asyncio
async def test_a_store_that_fails_means_scanning_again() -> None:
    ledger = MemoryLedger()
    cache = VerdictCache(ledger, "octo/repo", Policy())
    await cache.remember(SUBJECT, "npm-package", report(), None)
    ledger.failing = True
    assert await cache.recall(SUBJECT, "npm-package") is None
    assert not await cache.remember(SUBJECT, "npm-package", report(), None)
    ledger.failing = False
    [stored] = ledger.verdicts.values()
    ledger.verdicts[stored.key] = StoredVerdict(stored.key, {"nonsense": 1}, None, 0.0)
    assert await cache.recall(SUBJECT, "npm-package") is None


def test_the_engine_version_names_the_release_and_the_engine_source() -> None:
    version, _, source = engine_version().partition("+")
    assert version and len(source) == 16
