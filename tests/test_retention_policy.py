"""Retention settings, the store URL, the handler-facing helpers and the periodic chores."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from bot.app.serve import _retainer
from bot.engine.model import ArtifactReport, Finding, Rule, Severity
from bot.engine.policy import GIB, MIB, RetentionRules
from bot.events import JobKind
from bot.retention import (
    BlobStore,
    Keep,
    RetainedRef,
    RetentionMeta,
    RetentionPolicy,
    build_retainer,
    retained_ids,
    retention_note,
)
from bot.retention.blobs import blob_key, check_digest
from bot.retention.maintenance import retention_chores
from bot.settings import Settings, SettingsError
from bot.store import Job, JobState, SqliteStore
from bot.store.base import RetainedFilter, RetainedState
from tests.apphelpers import SHA_A


def report(severity: Severity | None) -> ArtifactReport:
    findings = [] if severity is None else [Finding(Rule.MAP_FILE, severity, "a.map", "m")]
    return ArtifactReport("dist", "dist", "a" * 64, 3, 1, findings)


def test_defaults_and_environment(tmp_path: Path) -> None:
    assert RetentionPolicy.from_environment({}, cwd=tmp_path) == RetentionPolicy(
        Keep.FAILING, 365, 20 * GIB
    )
    policy = RetentionPolicy.from_environment(
        {"RETENTION_KEEP": "ALL", "RETENTION_DAYS": "30", "RETENTION_MAX_SIZE": "500MiB"},
        cwd=tmp_path,
    )
    assert policy == RetentionPolicy(Keep.ALL, 30, 500 * MIB)
    assert (
        RetentionPolicy.from_environment({"RETENTION_MAX_SIZE": "0"}, cwd=tmp_path).max_bytes
        is None
    )
    (tmp_path / ".env").write_text("RETENTION_KEEP=none\nRETENTION_DAYS=7\n")
    from_file = RetentionPolicy.from_environment({"RETENTION_DAYS": "9"}, cwd=tmp_path)
    assert (from_file.keep, from_file.days) == (Keep.NONE, 9)  # the environment wins


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RETENTION_KEEP", "some", "failing, all or none"),
        ("RETENTION_DAYS", "0", "from 1 to 36500"),
        ("RETENTION_DAYS", "a week", "from 1 to 36500"),
        ("RETENTION_MAX_SIZE", "big", "RETENTION_MAX_SIZE must be a size"),
        ("RETENTION_MAX_SIZE", "-3", "RETENTION_MAX_SIZE must be a size"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str, tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=message):
        RetentionPolicy.from_environment({name: value}, cwd=tmp_path)


def test_what_is_wanted_and_repository_overrides() -> None:
    policy = RetentionPolicy()
    assert policy.wants(report(Severity.ERROR))
    assert not policy.wants(report(Severity.WARNING)) and not policy.wants(report(None))
    everything = policy.for_repository(RetentionRules(keep="all", days=3))
    assert everything.wants(report(None)) and everything.days == 3
    assert everything.max_bytes == policy.max_bytes  # the cap stays the operator's
    assert not policy.for_repository(RetentionRules(keep="none")).wants(report(Severity.ERROR))
    assert policy.for_repository(None) is policy
    assert policy.for_repository(RetentionRules(days=10)).keep is Keep.FAILING


def test_store_urls_and_secrets() -> None:
    local = BlobStore.from_url("file:///srv/release%20guard/retained")
    assert local.is_local and "release guard" in str(local._local_root)
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    s3 = BlobStore.from_url(
        "s3://bucket/some/prefix",
        {
            "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
            "AWS_SECRET_ACCESS_KEY": secret,
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
            "AWS_PROFILE": "ignored",
        },
    )
    assert not s3.is_local and secret not in repr(s3) and secret not in s3.url
    for bad in ("ftp://x", "s3://", "file://host/path", "/plain/path"):
        with pytest.raises(SettingsError, match="ARTIFACT_STORE"):
            BlobStore.from_url(bad)
    assert blob_key("ab" + "c" * 62) == f"sha256/ab/ab{'c' * 62}"
    with pytest.raises(ValueError):
        check_digest("../../etc/passwd")


def test_notes_for_the_check_run() -> None:
    kept = RetainedRef("1" * 16, "a" * 64, 3, "dist", RetainedState.KEPT)
    pending = RetainedRef("2" * 16, "b" * 64, 3, "docs", RetainedState.PENDING, error="down")
    failed = RetainedRef("3" * 16, "c" * 64, 3, "web", RetainedState.FAILED, error="disk full")
    assert retention_note([kept]) is None and retained_ids([]) is None
    assert retained_ids([kept, pending, kept]) == f"{'1' * 16} {'2' * 16}"
    note = retention_note([kept, pending])
    assert note is not None and "docs (2222222222222222)" in note and "will be retried" in note
    note = retention_note([pending, failed])
    assert note is not None and "could not be kept" in note and "down" in note


def job(kind: JobKind, head_sha: str | None, **details: object) -> Job:
    return Job(
        id=5,
        delivery_id="d-5",
        kind=kind,
        installation_id=42,
        repository="octo-org/octo-repo",
        head_sha=head_sha,
        details=dict(details),  # type: ignore[arg-type]
        dedupe_key="k",
        state=JobState.RUNNING,
        attempts=1,
        not_before=0,
        lease_owner="w",
        lease_expires=1,
        check_run_id=None,
        created_at=0,
        updated_at=0,
        result_summary=None,
    )


def test_meta_from_a_job() -> None:
    pull = RetentionMeta.for_job(
        job(JobKind.CHECK, SHA_A, event="pull_request", pull_number=7), artifact_id=3
    )
    assert (pull.event, pull.pull_request, pull.commit, pull.job_id) == (
        "pull_request",
        7,
        SHA_A,
        5,
    )
    run = RetentionMeta.for_job(job(JobKind.WORKFLOW_RUN, SHA_A, workflow_run_id=99))
    assert (run.event, run.workflow_run_id) == ("workflow_run", 99)
    release = RetentionMeta.for_job(
        job(JobKind.RELEASE, None, release_id=8, tag_name="v1.0.0"), commit=SHA_A
    )
    assert (release.release, release.commit) == ("v1.0.0", SHA_A)
    comment = RetentionMeta.for_job(
        job(JobKind.COMMENT_COMMAND, SHA_A, issue_number=4, is_pull_request=True)
    )
    assert comment.pull_request == 4
    with pytest.raises(ValueError, match="commit"):
        RetentionMeta.for_job(job(JobKind.RELEASE, None))


@pytest.mark.asyncio
async def test_the_chores_retry_and_collect_in_the_background(tmp_path: Path) -> None:
    settings = Settings.for_data_dir(tmp_path / "data")
    store = SqliteStore(settings.data_dir / "release-guard.sqlite3")
    await store.open()
    try:
        retainer = _retainer(settings, store)
        assert retainer is not None
        retainer = build_retainer(settings, store, environ={}, cwd=tmp_path)
        artifact = tmp_path / "a.zip"
        artifact.write_bytes(b"failing bytes")
        failing = dataclasses.replace(
            report(Severity.ERROR), sha256=None, size=artifact.stat().st_size
        )
        meta = RetentionMeta(repository="o/r", commit=SHA_A)
        retainer.clock = lambda: 0.0  # kept in 1970: long expired
        ref = await retainer.retain(artifact, artifact_report=failing, meta=meta)
        assert ref is not None and ref.kept
        retainer.clock = time.time
        seen: list[int] = []
        async with retention_chores(
            retainer, tick=0.01, gc_interval=0.02, on_gc=lambda gc: seen.append(gc.remaining_bytes)
        ):
            # The collector drops the index entry, then the blob, then reports: wait for all.
            for _ in range(200):
                await asyncio.sleep(0.01)
                if (
                    seen
                    and seen[-1] == 0
                    and not await store.list_retained(RetainedFilter())
                    and not await retainer.blobs.list_blobs()
                ):
                    break
        assert await store.list_retained(RetainedFilter()) == []
        assert await retainer.blobs.list_blobs() == []
        assert seen and seen[-1] == 0  # what feeds the retained-bytes gauge
        async with retention_chores(None):
            pass
    finally:
        await store.close()
