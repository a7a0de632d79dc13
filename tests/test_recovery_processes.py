"""The recovery sweep in real processes: a web process and a worker on one PostgreSQL, both
with the sweep on, recover the deliveries that failed while they were down, each once.

The real command line (`python -m bot serve --no-worker`, `python -m bot worker`), the GitHub
double in the test's loop playing GitHub's webhook: it keeps the failed deliveries and, asked,
sends them again, signed, with their original GUIDs, to the web process.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.double.server import GitHubDouble
from tests.apphelpers import new_secret, wait_until
from tests.processes import App
from tests.test_app_flow import published_pull_request
from tests.test_scale_out import BOUND, app_environment, query
from tests.test_serve import free_port

pytest_plugins = ["tests.ghdouble.fixtures"]

REDELIVER = "/app/hook/deliveries/{delivery_id}/attempts"
SWEPT = "recovery sweep: "  # what it did, or that another process was sweeping


@pytest.fixture
def apps() -> Iterator[list[App]]:
    started: list[App] = []
    yield started
    for app in started:
        app.stop()


@pytest.mark.asyncio
async def test_two_processes_sweep_and_each_failed_delivery_is_redelivered_once(
    ghdouble: GitHubDouble, pg_schema_url: str, tmp_path: Path, apps: list[App]
) -> None:
    repo = ghdouble.add_repo("octo-org/quiet-cli")  # no workflow run: each check is quick
    secret, port = new_secret(), free_port()
    # While nothing listens, three deliveries fail; one earlier delivery went through.
    failed = []
    for n in range(3):
        payload = copy.deepcopy(published_pull_request(repo))
        payload["pull_request"]["head"]["sha"] = f"{n + 1:040x}"
        failed.append(await ghdouble.hooks.deliver("pull_request", payload))
    assert all(a.status_code == 0 for a in failed)
    fine = ghdouble.hooks.store("pull_request", published_pull_request(repo))
    ghdouble.hooks.record_attempt(fine, status_code=202)
    ghdouble.hooks.target_url = f"http://127.0.0.1:{port}/api/github/webhooks"
    ghdouble.hooks.secret = secret

    env = {**app_environment(ghdouble, pg_schema_url, secret), "RECOVERY_INTERVAL": "30"}
    web = App(
        tmp_path,
        {**env, "DATA_DIR": str(tmp_path / "web")},
        "web",
        ["serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
        launcher=None,
    )
    worker = App(
        tmp_path, {**env, "DATA_DIR": str(tmp_path / "w")}, "worker", ["worker"], launcher=None
    )
    apps.extend([web, worker])
    await web.started()
    for app in (web, worker):  # each swept once, or found the other one sweeping
        await wait_until(lambda app=app: app.logged(SWEPT), timeout=BOUND)
    await wait_until(
        lambda: query(pg_schema_url, "SELECT count(*) FROM jobs WHERE state = 'done'") == [(3,)],
        timeout=BOUND,
    )
    await ghdouble.hooks.settle()
    recorded = {row[0] for row in query(pg_schema_url, "SELECT delivery_id FROM deliveries")}
    assert recorded == {a.guid for a in failed}
    for attempt in failed:
        (again,) = ghdouble.hooks.redeliveries_of(attempt.guid)  # once, by one of the two
        assert again.status_code == 202
    assert ghdouble.hooks.redeliveries_of(fine.guid) == []
    assert len(ghdouble.requests_to("POST", REDELIVER)) == 3
    audited = query(
        pg_schema_url,
        "SELECT delivery_id FROM audit_events WHERE stage = 'redelivery_requested'",
    )
    assert sorted(row[0] for row in audited) == sorted(a.guid for a in failed)
    for app in (web, worker):
        assert app.terminate() == 0
