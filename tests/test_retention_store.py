"""Retention on both backends: a folder, and S3 on a local S3-compatible server (moto).

The S3 tests start `moto.server` (from the dev extras) on 127.0.0.1 and run the production
code unchanged against it: only ARTIFACT_STORE and the standard AWS_* variables differ.
Without moto they are skipped, unless RELEASE_GUARD_REQUIRE_S3 is set (CI), which fails them.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import obstore
import pytest
import pytest_asyncio

from bot.cli.main import main
from bot.engine.model import ArtifactReport, Finding, Rule, Severity
from bot.engine.policy import Policy, RetentionRules
from bot.engine.scan import scan_path
from bot.retention import BlobStore, Retainer, RetentionMeta, RetentionPolicy, build_retainer
from bot.retention.blobs import blob_key, file_digest
from bot.retention.gc import EXPIRED, INTERRUPTED, ORPHAN, OVER_CAP, collect_garbage
from bot.retention.policy import DAY
from bot.retention.retainer import SPOOL_FOLDER, retained_id
from bot.settings import Settings
from bot.store import Job, JobState, SqliteStore
from bot.store.base import RetainedFilter, RetainedState
from tests.apphelpers import SHA_A, FakeClock, delivery, spec

ROOT = Path(__file__).resolve().parents[1]
REPOSITORY = "octo-org/octo-repo"
MAP = json.dumps(
    {
        "version": 3,
        "sources": ["src/secret.ts"],
        "sourcesContent": ["export const key = 'do not ship';\n"],
        "mappings": "AAAA",
    }
).encode()


# -- the S3 server ---------------------------------------------------------------------------------


def require_s3() -> None:
    """Skip without moto's server, or fail when RELEASE_GUARD_REQUIRE_S3 says it must run."""
    missing = [name for name in ("moto", "flask", "werkzeug") if not importlib.util.find_spec(name)]
    if not missing:
        return
    reason = f"moto[server] is not installed ({', '.join(missing)}): pip install -e '.[dev]'"
    if os.environ.get("RELEASE_GUARD_REQUIRE_S3"):
        pytest.fail(f"{reason}; RELEASE_GUARD_REQUIRE_S3 is set, so the S3 tests must run")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3Server:
    endpoint: str

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": "testing-key-id",
            "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def create_bucket(self, name: str) -> None:
        request = urllib.request.Request(f"{self.endpoint}/{name}", method="PUT")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200


@pytest.fixture(scope="module")
def s3_server() -> Iterator[S3Server]:
    require_s3()
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except (urllib.error.URLError, OSError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"moto's S3 server did not start on {endpoint}")
                time.sleep(0.1)
        yield S3Server(endpoint)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- backends and the harness ----------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    url: str
    environ: dict[str, str]

    def blobs(self) -> BlobStore:
        return BlobStore.from_url(self.url, self.environ)

    async def overwrite(self, digest: str, data: bytes) -> None:
        """Replace a stored blob's bytes behind the App's back (a tampered store)."""
        blobs = self.blobs()
        await obstore.put_async(blobs._objects(), blob_key(digest), data)


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "file":
        return Backend("file", (tmp_path / "store").as_uri(), {})
    server: S3Server = request.getfixturevalue("s3_server")
    bucket = f"rg-{uuid.uuid4().hex[:12]}"
    server.create_bucket(bucket)
    return Backend("s3", f"s3://{bucket}/retained", server.env())


@dataclass
class Harness:
    store: SqliteStore
    retainer: Retainer
    clock: FakeClock
    backend: Backend
    folder: Path

    async def job(self, delivery_id: str, sha: str = SHA_A) -> Job:
        await self.store.record_delivery(delivery(delivery_id), [spec(sha, key=delivery_id)])
        job = await self.store.claim("worker-1", 60)
        assert job is not None
        return job

    async def stages(self, job: Job) -> list[str]:
        return [event.stage for event in await self.store.audit_trail(job.id)]


@pytest_asyncio.fixture
async def harness(backend: Backend, tmp_path: Path) -> AsyncIterator[Harness]:
    clock = FakeClock(time.time())  # blob times are real: keep the two clocks together
    data = tmp_path / "data"
    store = SqliteStore(data / "release-guard.sqlite3", clock=clock)
    await store.open()
    retainer = Retainer(
        backend.blobs(), store, RetentionPolicy(), spool_dir=data / SPOOL_FOLDER, clock=clock
    )
    try:
        yield Harness(store, retainer, clock, backend, tmp_path)
    finally:
        await store.close()


# -- artifacts -------------------------------------------------------------------------------------


def leaky_zip(folder: Path, name: str = "npm-package", extra: bytes = b"") -> Path:
    """An Actions-style artifact zip whose source map embeds the sources (fails the scan)."""
    path = folder / f"{name}-{uuid.uuid4().hex[:6]}.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("dist/app.js", b"console.log(1);\n//# sourceMappingURL=app.js.map\n")
        archive.writestr("dist/app.js.map", MAP)
        archive.writestr("dist/build-id.txt", path.name)  # distinct bytes per artifact
        if extra:
            archive.writestr("dist/extra.bin", extra, compress_type=zipfile.ZIP_STORED)
    return path


def clean_zip(folder: Path) -> Path:
    path = folder / "clean.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("dist/app.js", b"console.log(1);\n")
    return path


def scanned(path: Path, name: str = "npm-package") -> ArtifactReport:
    report = scan_path(path, policy=Policy(), name=name)
    report.path = "workflow run 99, artifact 1234"
    return report


def failing_report(path: Path, name: str = "big") -> ArtifactReport:
    digest, size = file_digest(path)
    finding = Finding(Rule.FORBIDDEN, Severity.ERROR, f"{name}!/.env", "an env file")
    return ArtifactReport(name, name, digest, size, 1, [finding])


def meta_for(job: Job | None = None, **overrides: object) -> RetentionMeta:
    if job is not None:
        base = RetentionMeta.for_job(
            job,
            workflow_run_id=99,
            artifact_id=1234,
            check_run_url="https://github.com/octo-org/octo-repo/runs/555",
        )
    else:
        base = RetentionMeta(repository=REPOSITORY, commit=SHA_A, installation_id=42)
    values = {field: getattr(base, field) for field in base.__dataclass_fields__}
    values.update(overrides)
    return RetentionMeta(**values)  # type: ignore[arg-type]


# -- the cases -------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_failing_artifact_is_kept_once_even_when_scanned_twice(harness: Harness) -> None:
    path = leaky_zip(harness.folder)
    report = scanned(path)
    first_job = await harness.job("d-1")
    first = await harness.retainer.retain(path, artifact_report=report, meta=meta_for(first_job))
    assert first is not None and first.kept and first.stored_now
    # the same job retried, then a second delivery scanning the same commit again
    again = await harness.retainer.retain(path, artifact_report=report, meta=meta_for(first_job))
    await harness.store.complete(first_job, JobState.DONE, "ok")
    second_job = await harness.job("d-2")
    harness.clock.advance(3600)
    second = await harness.retainer.retain(path, artifact_report=report, meta=meta_for(second_job))
    assert again is not None and second is not None
    assert not again.stored_now and not second.stored_now
    assert first.id == again.id == second.id == retained_id(REPOSITORY, SHA_A, report.sha256 or "")

    blobs = await harness.retainer.blobs.list_blobs()
    assert [(b.digest, b.size) for b in blobs] == [(report.sha256, report.size)]
    records = await harness.store.list_retained(RetainedFilter())
    assert len(records) == 1 and records[0].sighting_count == 2  # the retried job counts once
    assert records[0].expires_at == harness.clock.now + 365 * DAY  # extended by the last scan
    assert "retained" in await harness.stages(second_job)


@pytest.mark.asyncio
async def test_a_clean_scan_is_not_kept_unless_the_policy_says_all(harness: Harness) -> None:
    path = clean_zip(harness.folder)
    report = scanned(path, "clean")
    assert not report.findings
    assert await harness.retainer.retain(path, artifact_report=report, meta=meta_for()) is None
    assert await harness.retainer.blobs.list_blobs() == []
    assert await harness.store.list_retained(RetainedFilter()) == []

    everything = RetentionRules(keep="all", days=7)
    ref = await harness.retainer.retain(
        path, artifact_report=report, meta=meta_for(), rules=everything
    )
    assert ref is not None and ref.kept
    assert ref.expires_at == harness.clock.now + 7 * DAY

    leaky = leaky_zip(harness.folder)
    nothing = RetentionRules(keep="none")
    assert (
        await harness.retainer.retain(
            leaky, artifact_report=scanned(leaky), meta=meta_for(), rules=nothing
        )
        is None
    )


@pytest.mark.asyncio
async def test_the_metadata_record_is_complete(harness: Harness) -> None:
    path = leaky_zip(harness.folder)
    report = scanned(path)
    job = await harness.job("d-meta")
    ref = await harness.retainer.retain(path, artifact_report=report, meta=meta_for(job))
    assert ref is not None
    record = await harness.store.get_retained(ref.id[:8])
    assert record is not None
    document = record.to_json()
    assert document["sha256"] == report.sha256 and document["size"] == report.size
    assert document["repository"] == REPOSITORY and document["commit"] == SHA_A
    assert document["state"] == "kept" and document["kept_at"] and document["expires_at"]
    (sighting,) = document["sightings"]
    assert sighting == {
        "seen_at": document["kept_at"],
        "artifact_name": "npm-package",
        "installation_id": 42,
        "event": "check",
        "delivery_id": "d-meta",
        "job_id": job.id,
        "pull_request": 7,
        "release": None,
        "workflow_run_id": 99,
        "artifact_id": 1234,
        "check_run_url": "https://github.com/octo-org/octo-repo/runs/555",
        "findings": [f.to_dict() for f in report.findings],
    }
    assert any(f["rule"] == "sourcemap/embedded-sources" for f in sighting["findings"])
    # the bytes are where the record says, and they are the artifact's
    chunks = [chunk async for chunk in harness.retainer.blobs.read(record.digest)]
    assert b"".join(chunks) == path.read_bytes()
    trail = await harness.store.audit_trail(job.id)
    kept = [event for event in trail if event.stage == "retained"]
    assert (
        kept and kept[0].data["retained_id"] == ref.id and kept[0].data["sha256"] == report.sha256
    )


@pytest.mark.asyncio
async def test_bytes_that_do_not_match_the_scanned_digest_are_refused(harness: Harness) -> None:
    path = leaky_zip(harness.folder)
    report = scanned(path)
    path.write_bytes(path.read_bytes() + b"changed after the scan")
    ref = await harness.retainer.retain(path, artifact_report=report, meta=meta_for())
    assert ref is not None and ref.state is RetainedState.FAILED
    assert "hashes to" in (ref.error or "")
    assert await harness.retainer.blobs.list_blobs() == []  # nothing under the digest


@pytest.mark.asyncio
async def test_gc_deletes_what_has_expired_and_says_so(harness: Harness) -> None:
    old = leaky_zip(harness.folder, "old")
    await harness.retainer.retain(
        old, artifact_report=scanned(old, "old"), meta=meta_for(), rules=RetentionRules(days=1)
    )
    harness.clock.advance(2 * DAY)
    new = leaky_zip(harness.folder, "new")
    kept = await harness.retainer.retain(new, artifact_report=scanned(new, "new"), meta=meta_for())
    assert kept is not None

    dry = await collect_garbage(harness.retainer, dry_run=True)
    assert [(d.artifact_name, d.reason) for d in dry.deleted] == [("old", EXPIRED)]
    assert len(await harness.retainer.blobs.list_blobs()) == 2  # a dry run deletes nothing

    report = await collect_garbage(harness.retainer)
    assert [(d.artifact_name, d.reason) for d in report.deleted] == [("old", EXPIRED)]
    assert report.freed_bytes == old.stat().st_size
    assert report.remaining_records == 1 and report.remaining_bytes == new.stat().st_size
    assert [b.digest for b in await harness.retainer.blobs.list_blobs()] == [kept.digest]
    assert [r.id for r in await harness.store.list_retained(RetainedFilter())] == [kept.id]


@pytest.mark.asyncio
async def test_gc_deletes_the_oldest_past_the_size_cap(harness: Harness) -> None:
    sizes = []
    for index in range(3):
        path = leaky_zip(harness.folder, f"art{index}", extra=os.urandom(4096))
        sizes.append(path.stat().st_size)
        ref = await harness.retainer.retain(
            path, artifact_report=scanned(path, f"art{index}"), meta=meta_for()
        )
        assert ref is not None and ref.kept
        harness.clock.advance(60)
    harness.retainer.policy = RetentionPolicy(max_bytes=sizes[1] + sizes[2])
    report = await collect_garbage(harness.retainer)
    assert [(d.artifact_name, d.reason) for d in report.deleted] == [("art0", OVER_CAP)]
    assert report.remaining_bytes == sizes[1] + sizes[2]
    harness.retainer.policy = RetentionPolicy(max_bytes=1)
    report = await collect_garbage(harness.retainer)
    assert [d.artifact_name for d in report.deleted] == ["art1", "art2"]  # oldest first
    assert await harness.retainer.blobs.list_blobs() == []


@pytest.mark.asyncio
async def test_gc_removes_blobs_no_record_names_after_a_grace_period(harness: Harness) -> None:
    path = leaky_zip(harness.folder)
    named = await harness.retainer.retain(path, artifact_report=scanned(path), meta=meta_for())
    assert named is not None
    stray = harness.folder / "stray.bin"
    stray.write_bytes(b"a crash between the upload and the record")
    digest, size = file_digest(stray)
    await harness.retainer.blobs.put_file(digest, stray, size=size)

    young = await collect_garbage(harness.retainer)  # the stray blob is too recent
    assert young.deleted == []
    later = await collect_garbage(harness.retainer, now=time.time() + 7200)
    assert [(d.digest, d.reason) for d in later.deleted] == [(digest, ORPHAN)]
    assert [b.digest for b in await harness.retainer.blobs.list_blobs()] == [named.digest]


@pytest.mark.asyncio
async def test_gc_leaves_the_store_alone_beside_an_empty_database(harness: Harness) -> None:
    stray = harness.folder / "stray.bin"
    stray.write_bytes(b"kept under another DATABASE_URL")
    digest, size = file_digest(stray)
    await harness.retainer.blobs.put_file(digest, stray, size=size)
    report = await collect_garbage(harness.retainer, now=time.time() + 7200)
    assert report.deleted == [] and "DATABASE_URL" in report.warnings[0]
    assert len(await harness.retainer.blobs.list_blobs()) == 1


async def _break(harness: Harness) -> None:
    """Make the store fail: a folder that is a file, or a bucket that does not exist."""
    backend = harness.backend
    if backend.name == "file":
        harness.folder.joinpath("store").write_bytes(b"not a folder")
    else:
        harness.retainer.blobs = BlobStore.from_url(
            backend.url.replace("s3://", "s3://missing-"), backend.environ
        )


async def _repair(harness: Harness) -> None:
    if harness.backend.name == "file":
        harness.folder.joinpath("store").unlink()
    harness.retainer.blobs = harness.backend.blobs()


@pytest.mark.asyncio
async def test_a_store_failure_during_a_job_keeps_the_result_and_retries(harness: Harness) -> None:
    from bot.handlers.artifacts import ArtifactInfo, RunInfo, scan_artifacts

    source = leaky_zip(harness.folder)
    run = RunInfo(id=99, name="build", status="completed", conclusion="success", html_url=None)
    artifact = ArtifactInfo(1234, "npm-package", source.stat().st_size, False, "https://dl", run)

    class Downloads:
        async def download(self, url: str, dest: Path, *, max_bytes: int) -> None:
            dest.write_bytes(source.read_bytes())

    job = await harness.job("d-fail")
    await _break(harness)
    refs = []

    async def keep(info: ArtifactInfo, path: Path, report: ArtifactReport) -> None:
        ref = await harness.retainer.retain(
            path,
            artifact_report=report,
            meta=meta_for(job, artifact_id=info.id, workflow_run_id=info.run.id),
        )
        refs.append(ref)

    workdir = harness.folder / "work"
    workdir.mkdir()
    outcome = await scan_artifacts(
        Downloads(),  # type: ignore[arg-type]
        [artifact],
        Policy(),
        workdir=workdir,
        on_scanned=keep,
    )
    # the scan's result is whole: the verdict does not depend on the store
    assert outcome.report.conclusion.value == "failure"
    assert list(workdir.iterdir()) == []  # the download is deleted as before
    (ref,) = refs
    assert ref is not None and ref.state is RetainedState.PENDING and ref.error
    stages = await harness.stages(job)
    assert stages[-2:] == ["retaining", "retention_failed"]
    record = await harness.store.get_retained(ref.id)
    assert record is not None and record.spool_path and Path(record.spool_path).is_file()
    assert await harness.retainer.retry_pending() == []  # not due yet

    harness.clock.advance(61)
    again = await harness.retainer.retry_pending()  # still failing: backoff doubles
    assert [r.state for r in again] == [RetainedState.PENDING]
    record = await harness.store.get_retained(ref.id)
    assert record is not None and record.attempts == 2
    assert record.next_attempt_at == harness.clock.now + 120

    await _repair(harness)
    harness.clock.advance(121)
    (done,) = await harness.retainer.retry_pending()
    assert done.state is RetainedState.KEPT and done.stored_now
    record = await harness.store.get_retained(ref.id)
    assert record is not None and record.state is RetainedState.KEPT and record.spool_path is None
    assert not any((harness.folder / "data" / SPOOL_FOLDER).iterdir())
    stages = await harness.stages(job)
    assert stages[-3:] == ["retention_failed", "retention_retry", "retained"]
    chunks = [chunk async for chunk in harness.retainer.blobs.read(record.digest)]
    assert b"".join(chunks) == source.read_bytes()


# -- the command line on both backends -------------------------------------------------------------


def _cli_env(monkeypatch: pytest.MonkeyPatch, backend: Backend, data: Path) -> None:
    for name in ("DATABASE_URL", "RETENTION_KEEP", "RETENTION_DAYS", "RETENTION_MAX_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(data.parent)
    monkeypatch.setenv("DATA_DIR", str(data))
    monkeypatch.setenv("ARTIFACT_STORE", backend.url)
    for name, value in backend.environ.items():
        monkeypatch.setenv(name, value)


def test_export_verifies_the_digest_and_refuses_a_tampered_blob(
    backend: Backend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    data = tmp_path / "data"
    _cli_env(monkeypatch, backend, data)
    path = leaky_zip(tmp_path)
    report = scanned(path)

    async def keep() -> str:
        store = SqliteStore(data / "release-guard.sqlite3")
        await store.open()
        try:
            retainer = build_retainer(Settings.from_environment(), store)
            ref = await retainer.retain(path, artifact_report=report, meta=meta_for())
            assert ref is not None and ref.kept
            return ref.id
        finally:
            await store.close()

    rid = asyncio.run(keep())
    out = tmp_path / "out"
    out.mkdir()
    assert main(["retained", "export", rid, str(out), "--json"]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["verified"] is True and exported["sha256"] == report.sha256
    assert Path(exported["path"]).read_bytes() == path.read_bytes()

    asyncio.run(backend.overwrite(report.sha256 or "", b"PK tampered bytes"))
    dest = tmp_path / "tampered.zip"
    assert main(["retained", "export", rid, str(dest)]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and "does not match its digest" in err
    assert not dest.exists() and [p.name for p in tmp_path.iterdir() if "tampered" in p.name] == []
    assert main(["retained", "show", rid, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["location"].endswith(blob_key(report.sha256 or ""))


# -- a restart in the middle of a write ------------------------------------------------------------


def _child_write(data: Path, url: str, artifact: Path) -> None:
    """Run in a child process: retain `artifact`, and hang in the middle of the upload."""
    from bot.retention import blobs

    original = blobs._verified_chunks

    def stalling(path: Path, digest: str, size: int) -> Iterator[bytes]:
        for index, chunk in enumerate(original(path, digest, size)):
            yield chunk
            if index == 0:
                print("writing", flush=True)
                time.sleep(600)

    blobs._verified_chunks = stalling

    async def go() -> None:
        store = SqliteStore(data / "release-guard.sqlite3")
        await store.open()
        settings = Settings.for_data_dir(data, artifact_store=url)
        retainer = build_retainer(settings, store, environ=dict(os.environ))
        await retainer.retain(artifact, artifact_report=failing_report(artifact), meta=meta_for())

    asyncio.run(go())


@pytest.mark.asyncio
async def test_a_restart_in_the_middle_of_a_write_leaves_nothing_half_written(
    backend: Backend, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    artifact = tmp_path / "big.zip"
    artifact.write_bytes(os.urandom(3 * 8 * 1024 * 1024 + 123))
    report = failing_report(artifact)
    env = {**os.environ, **backend.environ, "PYTHONPATH": str(ROOT)}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.test_retention_store",
        str(data),
        backend.url,
        str(artifact),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(child.stdout.readline(), 60)
        assert line == b"writing\n"
        await asyncio.sleep(0.5)  # let the first part reach the store
    finally:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signal.SIGKILL)
        await child.wait()

    store = SqliteStore(data / "release-guard.sqlite3")
    await store.open()
    try:
        settings = Settings.for_data_dir(data, artifact_store=backend.url)
        retainer = build_retainer(settings, store, environ=backend.environ)
        assert await retainer.blobs.stat(report.sha256 or "") is None  # nothing half-written
        assert await retainer.blobs.list_blobs() == []
        assert await store.list_retained(RetainedFilter()) == []
        if backend.name == "file":  # the write really was cut: its staging file is there
            folder = tmp_path / "store" / "sha256" / (report.sha256 or "")[:2]
            assert [p.name.split("#")[0] for p in folder.iterdir()] == [report.sha256]

        # the job runs again after the restart and keeps the artifact, whole
        ref = await retainer.retain(artifact, artifact_report=report, meta=meta_for())
        assert ref is not None and ref.kept and ref.stored_now
        chunks = [chunk async for chunk in retainer.blobs.read(ref.digest)]
        assert b"".join(chunks) == artifact.read_bytes()
        swept = await collect_garbage(retainer, now=time.time() + 7200)
        leftovers = [d for d in swept.deleted if d.reason == INTERRUPTED]
        assert len(leftovers) == (1 if backend.name == "file" else 0)
        assert [b.digest for b in await retainer.blobs.list_blobs()] == [ref.digest]
    finally:
        await store.close()


if __name__ == "__main__":
    _child_write(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
