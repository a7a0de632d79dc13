"""`release-guard retained list|show|export|gc`: output, --json, filters and exit codes."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.engine.model import ArtifactReport, Finding, Rule, Severity
from bot.engine.policy import RetentionRules
from bot.retention import RetainedRef, RetentionMeta, build_retainer
from bot.retention.blobs import file_digest
from bot.settings import Settings
from bot.store import JobState, SqliteStore
from bot.store.base import RetainedState
from tests.apphelpers import SHA_A, SHA_B, delivery, spec

ENV_VARS = (
    "DATABASE_URL",
    "DATA_DIR",
    "ARTIFACT_STORE",
    "RETENTION_KEEP",
    "RETENTION_DAYS",
    "RETENTION_MAX_SIZE",
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def artifact(folder: Path, name: str, body: bytes) -> tuple[Path, ArtifactReport]:
    path = folder / f"{name}.zip"
    path.write_bytes(body)
    digest, size = file_digest(path)
    finding = Finding(Rule.EMBEDDED_SOURCES, Severity.ERROR, f"{name}!/app.js.map", "sources")
    return path, ArtifactReport(name, name, digest, size, 2, [finding])


def populate(workdir: Path, *, days: int | None = None, ago: float = 0) -> list[RetainedRef]:
    """Keep two artifacts of one job (commit A) and one of another repository (commit B)."""

    async def go() -> list[RetainedRef]:
        store = SqliteStore(workdir / "data" / "release-guard.sqlite3")
        await store.open()
        try:
            retainer = build_retainer(Settings.from_environment(), store)
            retainer.clock = lambda: time.time() - ago
            await store.record_delivery(delivery("d-1"), [spec(SHA_A)])
            job = await store.claim("w", 30)
            assert job is not None
            refs = []
            rules = RetentionRules(days=days) if days else None
            for name in ("npm-package", "docs"):
                path, report = artifact(workdir, name, name.encode() * 100)
                meta = RetentionMeta.for_job(job, workflow_run_id=99, artifact_id=len(name))
                ref = await retainer.retain(path, artifact_report=report, meta=meta, rules=rules)
                assert ref is not None
                refs.append(ref)
            await store.complete(job, JobState.DONE, "failure")
            path, report = artifact(workdir, "other", b"other bytes")
            meta = RetentionMeta(repository="else/where", commit=SHA_B, event="release")
            ref = await retainer.retain(path, artifact_report=report, meta=meta, rules=rules)
            assert ref is not None
            refs.append(ref)
            return refs
        finally:
            await store.close()

    return asyncio.run(go())


def test_list_table_and_filters(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    refs = populate(workdir)
    code, out, _ = run(capsys, "retained", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "ID", "STATE", "REPOSITORY", "COMMIT", "ARTIFACT", "SIZE", "SHA256", "LAST", "SEEN"
    ]  # fmt: skip
    assert len(lines) == 4 and all(ref.id in out for ref in refs)

    code, out, _ = run(capsys, "retained", "list", "--repository", "ELSE/where", "--json")
    assert code == 0
    assert [r["id"] for r in json.loads(out)] == [refs[2].id]
    code, out, _ = run(capsys, "retained", "list", "--commit", SHA_A[:8], "--json")
    assert sorted(r["artifact_name"] for r in json.loads(out)) == ["docs", "npm-package"]
    code, out, _ = run(capsys, "retained", "list", "--since", "1d", "--until", "2999-01-01")
    assert code == 0 and len(out.splitlines()) == 4
    code, out, _ = run(capsys, "retained", "list", "--until", "2001-01-01")
    assert code == 0 and out == "no retained artifacts\n"
    code, out, _ = run(capsys, "retained", "list", "--state", "pending", "--json")
    assert json.loads(out) == []


def test_show_tells_where_it_came_from_and_how_to_get_it_back(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = populate(workdir)
    code, out, _ = run(capsys, "retained", "show", refs[0].id[:8])
    assert code == 0
    assert f"retained {refs[0].id}: kept" in out
    assert f"sha256       {refs[0].digest}" in out
    assert f"release-guard retained export {refs[0].id} DEST" in out
    assert "delivery d-1, job 1, pull request #7, workflow run 99" in out
    assert "error sourcemap/embedded-sources npm-package!/app.js.map: sources" in out
    assert (workdir / "data" / "retained").as_uri() in out

    code, out, _ = run(capsys, "retained", "show", refs[0].id, refs[2].id, "--json")
    assert code == 0
    documents = json.loads(out)
    assert [d["id"] for d in documents] == [refs[0].id, refs[2].id]
    assert documents[1]["sightings"][0]["event"] == "release"


def test_show_errors_are_exit_2(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "retained", "show", "abcdef")
    assert code == 2 and "nothing has been retained yet" in err
    populate(workdir)
    code, _, err = run(capsys, "retained", "show", "abcdef")
    assert code == 2 and "no retained artifact abcdef" in err
    with pytest.raises(SystemExit) as exc:
        main(["retained", "show", "not-an-id"])
    assert exc.value.code == 2
    assert "expected a retained id" in capsys.readouterr().err


def test_export_into_a_folder_and_never_over_a_file(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refs = populate(workdir)
    out_dir = workdir / "evidence"
    out_dir.mkdir()
    code, out, _ = run(capsys, "retained", "export", refs[0].id, str(out_dir))
    assert code == 0 and f"sha256 {refs[0].digest} verified" in out
    exported = out_dir / f"npm-package-{refs[0].digest[:12]}.zip"
    assert exported.read_bytes() == b"npm-package" * 100
    code, _, err = run(capsys, "retained", "export", refs[0].id, str(exported))
    assert code == 2 and "already exists" in err
    code, _, err = run(capsys, "retained", "export", refs[0].id, str(workdir / "no" / "x.zip"))
    assert code == 2 and "no such folder" in err
    code, out, _ = run(capsys, "audit", "1", "--json")
    stages = [event["stage"] for event in json.loads(out)["trail"]]
    assert stages.count("retained") == 2 and stages[-1] == "retention_export"


def test_export_of_an_artifact_that_is_not_stored_is_refused(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "blocked").write_bytes(b"a file where the store's folder should be")
    monkeypatch.setenv("ARTIFACT_STORE", (workdir / "blocked").as_uri())
    refs = populate(workdir)
    assert {ref.state for ref in refs} == {RetainedState.PENDING}
    code, _, err = run(capsys, "retained", "export", refs[0].id, str(workdir / "x.zip"))
    assert code == 2 and "is pending, not in the store" in err
    code, out, _ = run(capsys, "retained", "show", refs[0].id)
    assert "not stored" in out and "next retry" in out


def test_gc_says_what_it_deleted(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    refs = populate(workdir)
    code, out, _ = run(capsys, "retained", "gc")
    assert code == 0
    assert out == (
        "gc: deleted 0 item(s), 0 B freed; 3 retained artifact(s) remain, 1.5 KiB (cap 20.0 GiB)\n"
    )

    monkeypatch.setenv("RETENTION_MAX_SIZE", "1200B")  # room for the two newest only
    code, out, _ = run(capsys, "retained", "gc", "--dry-run", "--json")
    document = json.loads(out)
    assert document["dry_run"] is True
    assert [d["retained_id"] for d in document["deleted"]] == [refs[0].id]
    assert [d["reason"] for d in document["deleted"]] == ["over the size cap"]

    code, out, _ = run(capsys, "retained", "gc")
    assert code == 0
    assert out.splitlines()[0].startswith(f"deleted {refs[0].id}  octo-org/octo-repo@")
    assert "(over the size cap)" in out.splitlines()[0]
    assert "1 retained" not in out and "2 retained artifact(s) remain" in out
    code, out, _ = run(capsys, "retained", "list", "--json")
    assert refs[0].id not in out


def test_gc_by_age(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(workdir, days=1, ago=2 * 86_400)  # kept two days ago, for one day
    code, out, _ = run(capsys, "retained", "gc", "--json")
    document = json.loads(out)
    assert code == 0 and {d["reason"] for d in document["deleted"]} == {"expired"}
    assert len(document["deleted"]) == 3 and document["remaining_records"] == 0
    code, out, _ = run(capsys, "audit", "1")
    assert out.count("retention_gc") == 2 and "expired" in out


def test_without_a_database(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "retained", "list") == (0, "no retained artifacts\n", "")
    code, out, _ = run(capsys, "retained", "gc", "--json")
    assert code == 0 and json.loads(out)["deleted"] == []
    code, _, err = run(capsys, "retained", "export", "abcdef", str(workdir))
    assert code == 2 and "nothing has been retained yet" in err
    assert not (workdir / "data" / "release-guard.sqlite3").exists()


def test_bad_settings_are_exit_2(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RETENTION_KEEP", "some")
    code, _, err = run(capsys, "retained", "list")
    assert code == 2 and "RETENTION_KEEP must be failing, all or none" in err
    monkeypatch.delenv("RETENTION_KEEP")
    monkeypatch.setenv("ARTIFACT_STORE", "ftp://nope")
    code, _, err = run(capsys, "retained", "gc")
    assert code == 2 and "ARTIFACT_STORE" in err
    with pytest.raises(SystemExit) as exc:
        main(["retained"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["retained", "list", "--since", "yesterday"])
    assert exc.value.code == 2
