"""Crash recovery on PostgreSQL with one machine: `serve` killed with SIGKILL mid-download,
started again with the same settings, finishes the job once (issue 14).

The real command line (`python -m bot serve`, its embedded procrastinate worker) on a schema
of its own (tests/pgtest.py), against the GitHub double; the first download of the artifact
never ends, so the first process is mid-download when it is killed. The second process, on
the same machine, can prove the first one dead (its pid is gone) and takes the job back at
once, without waiting for the stall timeout.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.double.faults import Slow
from bot.double.server import GitHubDouble
from tests.apphelpers import new_secret, wait_until
from tests.processes import App
from tests.test_app_flow import REAL, published_pull_request
from tests.test_scale_out import BOUND, SHA, app_environment, post, query

pytest_plugins = ["tests.ghdouble.fixtures"]


@pytest.fixture
def apps() -> Iterator[list[App]]:
    started: list[App] = []
    yield started
    for app in started:
        app.stop()


def serve_args() -> list[str]:
    # The default stall timeout (30 s): taking the job back must not wait for it.
    return ["serve", "--host", "127.0.0.1", "--port", "0", "--concurrency", "1"]


@pytest.mark.asyncio
async def test_serve_killed_mid_download_and_restarted_completes_the_job_once(
    ghdouble: GitHubDouble,
    pg_schema_url: str,
    tmp_path: Path,
    apps: list[App],
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo = ghdouble.add_repo("octo-org/leaky-cli")
    run = ghdouble.add_run(repo, head_sha=SHA, name="build")
    ghdouble.add_artifact(
        repo, run, name="npm-package", data=(REAL / "actions-artifact-leaky.zip").read_bytes()
    )
    ghdouble.storage_faults.add("GET", "*", Slow(delay=600))  # the first download hangs
    secret = new_secret()
    env = {**app_environment(ghdouble, pg_schema_url, secret), "DATA_DIR": str(tmp_path / "data")}

    first = App(tmp_path, env, "first", serve_args(), launcher=None)
    apps.append(first)
    await first.started()
    assert await post(first, secret, published_pull_request(repo)) == 202
    await wait_until(lambda: ghdouble.requests_to(host="storage"), timeout=BOUND)
    [(owner, attempts)] = query(pg_schema_url, "SELECT lease_owner, attempts FROM jobs")
    assert attempts == 1 and f"/{first.pid}/" in owner
    first.kill9()

    restarted_at = time.monotonic()
    second = App(tmp_path, env, "second", serve_args(), launcher=None)
    apps.append(second)
    await wait_until(
        lambda: query(pg_schema_url, "SELECT state FROM jobs") == [("done",)], timeout=BOUND
    )
    took = time.monotonic() - restarted_at
    with capsys.disabled():
        print(f"\n[kill -9 on PostgreSQL] job done {took:.1f} s after the restart")

    [check_run] = repo.check_runs.values()
    assert (check_run.head_sha, check_run.status, check_run.conclusion) == (
        SHA,
        "completed",
        "failure",
    )
    completions = [
        r
        for r in ghdouble.requests_to("PATCH", f"*/check-runs/{check_run.id}")
        if isinstance(r.json, dict) and r.json.get("status") == "completed"
    ]
    assert len(completions) == 1
    [(state, attempts, owner)] = query(
        pg_schema_url, "SELECT state, attempts, lease_owner FROM jobs"
    )
    assert (state, attempts, owner) == ("done", 2, None)
    stages = [
        stage for (stage,) in query(pg_schema_url, "SELECT stage FROM audit_events ORDER BY id")
    ]
    assert stages.count("started") == 2 and stages[-1] == "done"
    assert "requeued" in stages
    messages = [r["message"] for r in second.records()]
    assert any("is no longer running" in m for m in messages), messages
    assert second.terminate() == 0
