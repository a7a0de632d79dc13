"""The whole App on loopback: a signed delivery in, a completed check run at the GitHub double.

The delivery is GitHub's published `pull_request.opened` example (tests/payloads), pointed at
a repository of the double; `serve` runs with its embedded worker and the real handler, on
each backend: SQLite (its own queue) and PostgreSQL (procrastinate).
"""

from __future__ import annotations

import asyncio
import copy
import json
import socket
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app.serve import serve
from bot.app.worker import WorkerOptions
from bot.double.server import GitHubDouble
from bot.secrets import Secret
from bot.settings import Database, PostgresDatabase, Settings
from bot.store import store_for
from tests.apphelpers import examples, new_secret, wait_until, webhook_headers

pytest_plugins = ["tests.ghdouble.fixtures"]

REAL = Path(__file__).parent / "fixtures" / "real"
SHA = "feed" + "5" * 36


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def published_pull_request(repo: Any) -> dict[str, Any]:
    example = next(
        e for e in examples() if e.event == "pull_request" and e.payload.get("action") == "opened"
    )
    payload = copy.deepcopy(example.payload)
    payload["installation"] = {"id": repo.installation_id, "node_id": "x"}
    payload["repository"]["full_name"] = repo.full_name
    payload["pull_request"]["head"]["sha"] = SHA
    return payload


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Database | None:
    """None: the embedded SQLite under DATA_DIR; else a PostgreSQL schema of the test's own."""
    if request.param == "sqlite":
        return None
    return PostgresDatabase(Secret(request.getfixturevalue("pg_schema_url")))


@pytest.mark.asyncio
async def test_signed_pull_request_ends_in_a_failed_check_run(
    ghdouble: GitHubDouble, tmp_path: Path, database: Database | None
) -> None:
    repo = ghdouble.add_repo("octo-org/leaky-cli")
    run = ghdouble.add_run(repo, head_sha=SHA, name="build")
    ghdouble.add_artifact(
        repo, run, name="npm-package", data=(REAL / "actions-artifact-leaky.zip").read_bytes()
    )
    secret = new_secret()
    port = free_port()
    settings = Settings.for_data_dir(
        tmp_path / "data",
        app_id=ghdouble.app_id,
        private_key=ghdouble.private_key,
        webhook_secret=Secret(secret),
        github_api_url=ghdouble.api_url,
        host="127.0.0.1",
        port=port,
    )
    if database is not None:
        settings = replace(settings, database=database)
    stop = asyncio.Event()
    server = asyncio.create_task(
        serve(settings, stop=stop, options=WorkerOptions(concurrency=1, poll_interval=0.05))
    )
    try:
        url = f"http://127.0.0.1:{port}{settings.webhook_path}"
        body = json.dumps(published_pull_request(repo)).encode()
        async with aiohttp.ClientSession() as session:
            await wait_until(lambda: _listening(port), timeout=10)
            async with session.post(
                url, data=body, headers=webhook_headers(secret, body, "pull_request")
            ) as answer:
                assert answer.status == 202
            await wait_until(
                lambda: any(c.status == "completed" for c in repo.check_runs.values()), timeout=20
            )
    finally:
        stop.set()
        await asyncio.wait_for(server, timeout=20)

    [check] = repo.check_runs.values()
    assert (check.name, check.head_sha, check.conclusion) == ("release-guard", SHA, "failure")
    assert any(a["title"] == "sourcemap/embedded-sources" for a in check.annotations)

    store = store_for(settings, create=False)
    await store.open()
    try:
        [job] = await store.list_jobs()
        stages = [event.stage for event in await store.audit_trail(job.id)]
    finally:
        await store.close()
    assert job.state.value == "done"
    for stage in ("received", "queued", "downloading", "scanning", "reporting", "done"):
        assert stage in stages


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
