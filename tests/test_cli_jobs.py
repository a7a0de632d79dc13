"""`release-guard jobs` and `release-guard audit JOB`: table, trail, --json, exit codes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bot.cli.main import main
from bot.store import JobState, SqliteStore
from tests.apphelpers import SHA_A, SHA_B, delivery, spec

ENV_VARS = (
    "DATABASE_URL",
    "DATA_DIR",
    "APP_ID",
    "PRIVATE_KEY",
    "PRIVATE_KEY_PATH",
    "WEBHOOK_SECRET",
    "LOG_LEVEL",
    "LOG_FORMAT",
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def populate(data_dir: Path) -> None:
    async def go() -> None:
        store = SqliteStore(data_dir / "release-guard.sqlite3")
        await store.open()
        try:
            await store.record_delivery(delivery("d-1"), [spec(SHA_A)])
            await store.record_delivery(delivery("d-2"), [spec(SHA_B)])
            job = await store.claim("host/1/tok/worker", 30)
            assert job is not None
            await store.audit(job.id, "downloading", "artifact dist (2 files)", {"bytes": 2048})
            await store.set_check_run(job, 31337)
            await store.complete(job, JobState.DONE, "1 artifact, 0 errors")
        finally:
            await store.close()

    asyncio.run(go())


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_jobs_table(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(workdir / "data")
    code, out, _ = run(capsys, "jobs")
    assert code == 0
    header, newest, oldest = out.splitlines()
    assert header.split()[:5] == ["ID", "STATE", "KIND", "REPOSITORY", "COMMIT"]
    assert newest.split()[:6] == ["2", "queued", "check", "octo-org/octo-repo", SHA_B[:7], "0"]
    assert oldest.split()[:7] == [
        "1",
        "done",
        "check",
        "octo-org/octo-repo",
        SHA_A[:7],
        "1",
        "31337",
    ]
    assert oldest.endswith("1 artifact, 0 errors")
    assert header.index("STATE") == newest.index("queued")  # aligned columns


def test_jobs_json(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(workdir / "data")
    code, out, _ = run(capsys, "jobs", "--json", "--limit", "1")
    assert code == 0
    (job,) = json.loads(out)
    assert job["id"] == 2 and job["state"] == "queued" and job["head_sha"] == SHA_B
    assert job["delivery_id"] == "d-2" and job["details"] == {"pull_number": 7}


def test_jobs_before_anything_was_received(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "jobs") == (0, "no jobs yet\n", "")
    code, out, _ = run(capsys, "jobs", "--json")
    assert (code, json.loads(out)) == (0, [])
    assert not (workdir / "data").exists()  # a read-only command creates nothing


def test_audit_trail(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(workdir / "data")
    code, out, _ = run(capsys, "audit", "1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"job 1: check octo-org/octo-repo @ {SHA_A[:7]}"
    assert "state done, attempt 1, delivery d-1, check run 31337" in lines[1]
    assert lines[2] == "  result: 1 artifact, 0 errors"
    trail = [line.split()[1] for line in lines[4:]]
    assert trail == ["received", "queued", "downloading", "check_run", "done"]
    assert '{"bytes": 2048}' in lines[6]


def test_audit_json(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    populate(workdir / "data")
    code, out, _ = run(capsys, "audit", "1", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["job"]["check_run_id"] == 31337
    stages = [event["stage"] for event in document["trail"]]
    assert stages == ["received", "queued", "downloading", "check_run", "done"]
    assert document["trail"][2]["data"] == {"bytes": 2048}
    assert all(event["at"].endswith("Z") for event in document["trail"])


def test_audit_of_an_unknown_job_is_exit_2(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    populate(workdir / "data")
    code, _, err = run(capsys, "audit", "99")
    assert code == 2 and "no job 99" in err


def test_audit_without_a_database_is_exit_2(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "audit", "1")
    assert code == 2 and "no database yet" in err


def test_bad_settings_are_exit_2(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/rg")
    code, _, err = run(capsys, "jobs")
    assert code == 2 and "PostgreSQL" in err
    monkeypatch.setenv("DATABASE_URL", "mysql://db/rg")
    code, _, err = run(capsys, "audit", "1")
    assert code == 2 and "DATABASE_URL must be" in err


@pytest.mark.parametrize(
    "args", [["audit"], ["audit", "abc"], ["audit", "0"], ["jobs", "--limit", "0"]]
)
def test_usage_errors_are_exit_2(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2
