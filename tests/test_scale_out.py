"""Scale-out for real: web and worker processes on one PostgreSQL, against the GitHub double.

Every process is the real command line (`python -m bot serve --no-worker`, `python -m bot
worker`) with DATABASE_URL naming a schema of its own on RELEASE_GUARD_TEST_POSTGRES_URL's
server (tests/pgtest.py); each has its own DATA_DIR, as on separate machines. The double runs
in the test's event loop, so the tests wait without blocking it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.double.faults import Slow
from bot.double.server import GitHubDouble
from tests.apphelpers import new_secret, pull_request_payload, wait_until
from tests.processes import App, base_environment, new_pem
from tests.test_app_flow import REAL, published_pull_request

pytest_plugins = ["tests.ghdouble.fixtures"]

SHA = "feed" + "5" * 36
BOUND = 90.0  # how long a test waits for the processes at most (not a timing assertion)


@pytest.fixture
def apps() -> Iterator[list[App]]:
    started: list[App] = []
    yield started
    for app in started:
        app.stop()


def query(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return list(conn.execute(sql, params).fetchall())


def web_args() -> list[str]:
    return ["serve", "--no-worker", "--host", "127.0.0.1", "--port", "0"]


def worker_args() -> list[str]:
    return ["worker", "--concurrency", "1", "--stalled-after", "3"]


def test_three_web_processes_receiving_one_delivery_queue_one_job(
    pg_schema_url: str,
    tmp_path: Path,
    apps: list[App],
) -> None:
    secret = new_secret()
    env = base_environment(
        DATABASE_URL=pg_schema_url, APP_ID="1", PRIVATE_KEY=new_pem(), WEBHOOK_SECRET=secret
    )
    # Three start at once on an empty database: their schema upgrades must not collide.
    for number in range(3):
        apps.append(
            App(
                tmp_path,
                {**env, "DATA_DIR": str(tmp_path / f"web{number}")},
                f"web{number}",
                web_args(),
                launcher=None,
            )
        )
    for app in apps:
        app.wait_for_port()

    payload, delivery = pull_request_payload(), str(uuid.uuid4())
    barrier = threading.Barrier(3)
    statuses: list[int] = []

    def post(app: App) -> None:
        barrier.wait()
        statuses.append(app.post(secret, payload, delivery))

    threads = [threading.Thread(target=post, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    # One records it (202); the others find it recorded (200), as for a redelivery.
    assert sorted(statuses) == [200, 200, 202]
    assert query(pg_schema_url, "SELECT count(*) FROM deliveries") == [(1,)]
    assert query(pg_schema_url, "SELECT count(*), min(state) FROM jobs") == [(1, "queued")]
    assert query(pg_schema_url, "SELECT count(*), min(status::text) FROM procrastinate_jobs") == [
        (1, "todo")
    ]
    for app in apps:
        assert app.terminate() == 0


def app_environment(ghdouble: GitHubDouble, url: str, secret: str) -> dict[str, str]:
    return base_environment(
        DATABASE_URL=url,
        APP_ID=str(ghdouble.app_id),
        PRIVATE_KEY=ghdouble.private_key.reveal().decode(),
        WEBHOOK_SECRET=secret,
        GITHUB_API_URL=ghdouble.api_url,
    )


def start(apps: list[App], tmp_path: Path, env: dict[str, str], name: str, args: list[str]) -> App:
    app = App(tmp_path, {**env, "DATA_DIR": str(tmp_path / name)}, name, args, launcher=None)
    apps.append(app)
    return app


async def post(app: App, secret: str, payload: dict[str, Any]) -> int:
    return await asyncio.to_thread(app.post, secret, payload, str(uuid.uuid4()))


@pytest.mark.asyncio
async def test_a_worker_killed_mid_scan_its_job_completes_once_on_another(
    ghdouble: GitHubDouble,
    pg_schema_url: str,
    tmp_path: Path,
    apps: list[App],
) -> None:
    repo = ghdouble.add_repo("octo-org/leaky-cli")
    run = ghdouble.add_run(repo, head_sha=SHA, name="build")
    ghdouble.add_artifact(
        repo, run, name="npm-package", data=(REAL / "actions-artifact-leaky.zip").read_bytes()
    )
    # The first download of the artifact never ends: whoever runs the job is mid-scan.
    ghdouble.storage_faults.add("GET", "*", Slow(delay=600))
    secret = new_secret()
    env = app_environment(ghdouble, pg_schema_url, secret)
    web = start(apps, tmp_path, env, "web", web_args())
    await web.started()
    workers = [start(apps, tmp_path, env, f"worker{n}", worker_args()) for n in (1, 2)]
    for worker in workers:
        await worker.started("worker ")

    assert await post(web, secret, published_pull_request(repo)) == 202
    await wait_until(lambda: ghdouble.requests_to(host="storage"), timeout=BOUND)
    [(owner, attempts)] = query(pg_schema_url, "SELECT lease_owner, attempts FROM jobs")
    assert attempts == 1
    [victim] = [w for w in workers if f"/{w.pid}/" in owner]
    [survivor] = [w for w in workers if w is not victim]
    victim.kill9()

    await wait_until(
        lambda: any(c.status == "completed" for c in repo.check_runs.values()), timeout=BOUND
    )
    await wait_until(
        lambda: query(pg_schema_url, "SELECT state FROM jobs") == [("done",)], timeout=BOUND
    )
    # One check run, completed once, by the survivor on the job's second attempt.
    [check_run] = repo.check_runs.values()
    assert (check_run.head_sha, check_run.conclusion) == (SHA, "failure")
    completions = [
        r
        for r in ghdouble.requests_to("PATCH", f"*/check-runs/{check_run.id}")
        if isinstance(r.json, dict) and r.json.get("status") == "completed"
    ]
    assert len(completions) == 1
    [(state, attempts)] = query(pg_schema_url, "SELECT state, attempts FROM jobs")
    assert (state, attempts) == ("done", 2)
    stages = [
        stage for (stage,) in query(pg_schema_url, "SELECT stage FROM audit_events ORDER BY id")
    ]
    assert "requeued" in stages and stages[-1] == "done"
    assert stages.count("started") == 2
    # The failing artifact was kept once, by the survivor (the victim never finished reading it).
    assert query(pg_schema_url, "SELECT count(*), min(state) FROM retained") == [(1, "kept")]
    assert any(
        r.get("job_id") == 1 and r["message"].startswith("job 1 done") for r in survivor.records()
    )
    for app in (web, survivor):
        assert app.terminate() == 0
    # The operator's view, from any machine with DATABASE_URL.
    listed = subprocess.run(
        [sys.executable, "-m", "bot", "jobs", "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    [job] = json.loads(listed.stdout)
    assert (job["state"], job["attempts"], job["check_run_id"]) == ("done", 2, check_run.id)


@pytest.mark.asyncio
async def test_workers_back_off_together_from_a_rate_limited_installation(
    ghdouble: GitHubDouble,
    pg_schema_url: str,
    tmp_path: Path,
    apps: list[App],
) -> None:
    limited = ghdouble.add_repo("octo-org/busy")
    other = ghdouble.add_repo("octo-org/quiet")
    assert limited.installation_id != other.installation_id
    shas = [f"{n:040x}" for n in range(1, 13)]
    for sha in shas:
        ghdouble.add_run(limited, head_sha=sha, name="build")
    ghdouble.add_run(other, head_sha=SHA, name="build")
    installation = ghdouble.installation_of(limited)
    ghdouble.exhaust_rate_limit(installation, reset_in=300)

    secret = new_secret()
    env = app_environment(ghdouble, pg_schema_url, secret)
    web = start(apps, tmp_path, env, "web", web_args())
    await web.started()

    async def deliver(batch: list[str]) -> None:
        for sha in batch:
            payload = published_pull_request(limited)
            payload["pull_request"]["head"]["sha"] = sha
            assert await post(web, secret, payload) == 202

    def retried(count: int) -> bool:
        rows = query(
            pg_schema_url,
            "SELECT count(*) FROM jobs WHERE repository = %s AND state = 'queued' AND attempts = 1",
            (limited.full_name,),
        )
        return rows == [(count,)]

    def refused() -> int:
        return sum(
            1
            for r in ghdouble.requests
            if r.host == "api" and r.installation_id == installation.id and r.status == 403
        )

    # The first worker meets the limit once, and holds its other jobs back by itself.
    await deliver(shas[:8])
    first = start(apps, tmp_path, env, "worker1", worker_args())
    await wait_until(lambda: retried(8), timeout=BOUND)
    assert refused() == 1
    assert first.terminate() == 0

    # A second worker, a process that never met the limit, learns it from the database: its
    # jobs for the installation wait for the reset without asking GitHub; others go on.
    second = start(apps, tmp_path, env, "worker2", worker_args())
    await second.started("worker ")
    await deliver(shas[8:])
    assert await post(web, secret, published_pull_request(other)) == 202
    await wait_until(lambda: retried(12), timeout=BOUND)
    await wait_until(
        lambda: any(c.status == "completed" for c in other.check_runs.values()), timeout=BOUND
    )
    assert refused() == 1
    [(earliest,)] = query(
        pg_schema_url,
        "SELECT min(not_before) FROM jobs WHERE repository = %s",
        (limited.full_name,),
    )
    assert earliest >= ghdouble.now() + 200  # they wait for the reset, not a short backoff
    for app in (web, second):
        assert app.terminate() == 0


@pytest.mark.asyncio
async def test_two_workers_one_check_run_per_set_of_inputs_each_artifact_downloaded_once(
    ghdouble: GitHubDouble,
    pg_schema_url: str,
    tmp_path: Path,
    apps: list[App],
) -> None:
    """Issue 15 on PostgreSQL: `pull_request.opened` and `workflow_run.completed` of a build
    that had finished arrive together and go to two workers, under 5xx and secondary rate
    limits; then a second workflow finishes."""
    from bot.double.faults import SecondaryRateLimit, ServerError
    from tests.test_scan_once import CLEAN, run_payload

    repo = ghdouble.add_repo("octo-org/leaky-cli")
    build = ghdouble.add_run(repo, head_sha=SHA, name="build")
    ghdouble.add_artifact(
        repo, build, name="npm-package", data=(REAL / "actions-artifact-leaky.zip").read_bytes()
    )
    ghdouble.faults.add("GET", "/repos/{owner}/{repo}/actions/runs", ServerError(502), times=2)
    ghdouble.faults.add(
        "POST", "/repos/{owner}/{repo}/check-runs", SecondaryRateLimit(retry_after=1)
    )
    ghdouble.faults.add(
        "GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts", ServerError(503)
    )
    secret = new_secret()
    env = app_environment(ghdouble, pg_schema_url, secret)
    # Scale-out keeps failing artifacts in one store every worker sees (S3 in production):
    # a reused failing verdict needs its retained copy.
    env["ARTIFACT_STORE"] = (tmp_path / "retained").as_uri()
    web = start(apps, tmp_path, env, "web", web_args())
    await web.started()
    for n in (1, 2):
        await start(apps, tmp_path, env, f"worker{n}", worker_args()).started("worker ")

    opened, completed = await asyncio.gather(
        post(web, secret, published_pull_request(repo)),
        asyncio.to_thread(
            web.post, secret, run_payload(repo, build), str(uuid.uuid4()), "workflow_run"
        ),
    )
    assert (opened, completed) == (202, 202)

    def finished(count: int) -> bool:
        states = query(pg_schema_url, "SELECT state FROM jobs")
        return len(states) == count and all(state == "done" for (state,) in states)

    await wait_until(lambda: finished(2), timeout=BOUND)
    [check] = repo.check_runs.values()
    assert (check.status, check.conclusion) == ("completed", "failure")
    assert len(ghdouble.requests_to("GET", "*", host="storage")) == 1
    summaries = [s for (s,) in query(pg_schema_url, "SELECT result_summary FROM jobs")]
    assert sum(s.startswith("nothing new since check run") for s in summaries) == 1
    assert ghdouble.faults.pending() == 0

    docs = ghdouble.add_run(repo, head_sha=SHA, name="docs")
    ghdouble.add_artifact(repo, docs, name="site", data=CLEAN)
    assert (
        await asyncio.to_thread(
            web.post, secret, run_payload(repo, docs), str(uuid.uuid4()), "workflow_run"
        )
        == 202
    )
    await wait_until(lambda: finished(3), timeout=BOUND)
    first, latest = sorted(repo.check_runs.values(), key=lambda c: c.id)
    assert first.id == check.id and latest.status == "completed"
    assert "npm-package" in latest.output["summary"] and "site" in latest.output["summary"]
    assert latest.conclusion == "failure"  # the first run's reused verdict still fails it
    assert len(ghdouble.requests_to("GET", "*", host="storage")) == 2
