"""`serve` killed with SIGKILL after it opened a release's issue opens no second one.

The real command line (`python -m bot serve`, SQLite under a temporary DATA_DIR) talks to the
GitHub double of this test process. The double creates the issue and holds its answer back;
the process is killed before it learns the issue exists and before the job is recorded done.
The restarted process reclaims the job, finds the issue by its marker, and finishes the job.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot.double.faults import HeldAfter
from bot.double.server import GitHubDouble
from tests.apphelpers import new_secret
from tests.processes import TIMEOUT, App, base_environment
from tests.test_release_issues import ISSUES, immutable_release
from tests.test_releases import TAGGED, release_payload, the_check_run

pytest_plugins = ["tests.ghdouble.fixtures"]


@pytest.fixture
def apps() -> Iterator[list[App]]:
    started: list[App] = []
    yield started
    for app in started:
        if app.process.poll() is None:
            app.process.kill()
            app.process.wait(10)


async def until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def job_states(data: Path) -> list[tuple[str, int]]:
    connection = sqlite3.connect(data / "release-guard.sqlite3")
    try:
        return list(connection.execute("SELECT state, attempts FROM jobs ORDER BY id"))
    finally:
        connection.close()


@pytest.mark.asyncio
async def test_kill_9_after_the_issue_was_opened_opens_no_second_issue(
    ghdouble: GitHubDouble, tmp_path: Path, apps: list[App]
) -> None:
    repo, release = immutable_release(ghdouble)
    ghdouble.faults.add("POST", ISSUES, HeldAfter(TIMEOUT))  # created; the answer never comes
    secret = new_secret()
    env = base_environment(
        APP_ID=str(ghdouble.app_id),
        PRIVATE_KEY=ghdouble.private_key.reveal().decode(),
        WEBHOOK_SECRET=secret,
        GITHUB_API_URL=ghdouble.api_url,
        DATA_DIR=str(tmp_path / "data"),
    )
    serve = ["serve", "--host", "127.0.0.1", "--port", "0"]

    first = App(tmp_path, env, "first", serve, launcher=None)
    apps.append(first)
    await first.started()
    payload = release_payload(repo, release, "published")
    loop = asyncio.get_running_loop()
    status = await loop.run_in_executor(
        None, first.post, secret, payload, str(uuid.uuid4()), "release"
    )
    assert status == 202
    await until(lambda: bool(repo.issues), "the issue to be opened")
    first.kill9()
    assert job_states(tmp_path / "data") == [("running", 1)]

    second = App(tmp_path, env, "second", serve, launcher=None)
    apps.append(second)
    await second.started()
    await until(
        lambda: job_states(tmp_path / "data") == [("done", 2)], "the restarted job to finish"
    )
    second.process.terminate()
    second.process.wait(TIMEOUT)

    assert len(repo.issues) == 1
    assert len(ghdouble.requests_to("POST", ISSUES)) == 1
    assert release.draft is False and not ghdouble.requests_to("PATCH", "/repos/*/releases/*")
    [number] = repo.issues
    check = the_check_run(repo, TAGGED)
    assert check.conclusion == "failure"
    assert f"[Issue {number}](" in check.output["summary"]
