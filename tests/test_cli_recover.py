"""`release-guard recover [--since DURATION] [--dry-run]` (CONTRACT: exit 0 / 2).

The real command line in a subprocess, against the GitHub double running in the test's loop,
on an SQLite database under a temporary DATA_DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.cli.recover import parse_duration
from bot.double.faults import Respond
from bot.double.server import GitHubDouble
from bot.store import SqliteStore
from tests.apphelpers import pull_request_payload
from tests.processes import base_environment

pytest_plugins = ["tests.ghdouble.fixtures"]

REDELIVER = "/app/hook/deliveries/{delivery_id}/attempts"


def test_durations() -> None:
    assert parse_duration("90") == 90.0
    assert parse_duration("15m") == 900.0
    assert parse_duration("12h") == 43_200.0
    assert parse_duration("3d") == 259_200.0
    for bad in ("", "0", "soon", "-1h", "4d", "1w"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_duration(bad)


def environment(ghdouble: GitHubDouble, data_dir: Path, **more: str) -> dict[str, str]:
    return base_environment(
        APP_ID=str(ghdouble.app_id),
        PRIVATE_KEY=ghdouble.private_key.reveal().decode(),
        WEBHOOK_SECRET="s" * 32,
        GITHUB_API_URL=ghdouble.api_url,
        DATA_DIR=str(data_dir),
        **more,
    )


async def recover(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bot", "recover", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def failed(ghdouble: GitHubDouble, n: int) -> str:
    stored = ghdouble.hooks.store("pull_request", pull_request_payload(sha=f"{n:040x}"))
    ghdouble.hooks.record_attempt(stored, status_code=503)
    return stored.guid


async def database_state(data_dir: Path) -> dict[str, Any]:
    store = SqliteStore(data_dir / "release-guard.sqlite3")
    await store.open()
    try:
        return {
            "mark": await store.recovery_mark(),
            "redeliveries": await store.execute("SELECT guid, requests FROM redeliveries"),
            "audit": await store.execute(
                "SELECT stage, delivery_id FROM audit_events WHERE delivery_id IS NOT NULL"
            ),
            "summaries": await store.execute(
                "SELECT count(*) FROM audit_events WHERE stage = 'recovery_sweep'"
            ),
        }
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_dry_run_lists_and_changes_nothing_then_recover_does_it(
    ghdouble: GitHubDouble, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    store = SqliteStore(data_dir / "release-guard.sqlite3")
    await store.open()  # the App ran here before
    await store.close()
    guids = {failed(ghdouble, n) for n in range(3)}
    ok = ghdouble.hooks.store("pull_request", pull_request_payload(sha="f" * 40))
    ghdouble.hooks.record_attempt(ok, status_code=202)
    env = environment(ghdouble, data_dir)
    before = await database_state(data_dir)

    dry = await recover(env, tmp_path, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    listed = [line for line in dry.stdout.splitlines() if line.startswith("would redeliver")]
    assert {line.split()[2] for line in listed} == guids
    assert ok.guid not in dry.stdout
    assert "3 would be redelivered" in dry.stdout
    assert ghdouble.requests_to("POST", REDELIVER) == []
    assert await database_state(data_dir) == before

    done = await recover(env, tmp_path, "--since", "1h")
    assert done.returncode == 0, done.stderr
    redelivered = [line for line in done.stdout.splitlines() if line.startswith("redelivered")]
    assert {line.split()[1] for line in redelivered} == guids
    assert len(ghdouble.requests_to("POST", REDELIVER)) == 3
    after = await database_state(data_dir)
    assert sorted(after["redeliveries"]) == sorted((guid, 1) for guid in guids)
    assert sorted(after["audit"]) == sorted(("redelivery_requested", guid) for guid in guids)
    assert after["mark"] is None  # a manual run leaves the periodic sweep's mark alone
    assert after["summaries"] == [(1,)]

    again = await recover(env, tmp_path)  # asked a moment ago: not asked twice
    assert again.returncode == 0 and "0 redelivery requested" in again.stdout
    assert len(ghdouble.requests_to("POST", REDELIVER)) == 3


@pytest.mark.asyncio
async def test_a_refused_redelivery_or_app_exits_2(ghdouble: GitHubDouble, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    guid = failed(ghdouble, 1)
    env = environment(ghdouble, data_dir)
    ghdouble.faults.add("POST", REDELIVER, Respond(404, {"message": "Not Found"}))
    refused = await recover(env, tmp_path)
    assert refused.returncode == 2
    assert f"FAILED           {guid}" in refused.stdout
    ghdouble.app_id += 1  # GitHub no longer takes the App's JWT
    denied = await recover(env, tmp_path, "--dry-run")
    assert denied.returncode == 2 and "credentials" in denied.stderr
    assert "Traceback" not in denied.stderr


@pytest.mark.asyncio
async def test_usage_errors_exit_2(ghdouble: GitHubDouble, tmp_path: Path) -> None:
    env = environment(ghdouble, tmp_path / "data")
    too_far = await recover(env, tmp_path, "--since", "5d")
    assert too_far.returncode == 2 and "3 days" in too_far.stderr
    without_app = {k: v for k, v in env.items() if k != "APP_ID"}
    missing = await recover(without_app, tmp_path, "--dry-run")
    assert missing.returncode == 2 and "APP_ID" in missing.stderr
