"""Every log line of a full run, at DEBUG, as JSON: no secret in any of them, and every line
logged for a job names its delivery and its job.

The run is `test_app_flow`'s: `serve` in-process against the GitHub double, one signed
`pull_request` delivery whose artifact leaks a source map, the check run completed. Logging is
set up the way `release-guard serve` sets it up (`configure_logging` with the settings'
secrets), into a buffer instead of stderr; then `/metrics` is scraped for what the same run
counted.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.app.serve import serve
from bot.app.worker import WorkerOptions
from bot.double.server import GitHubDouble
from bot.ops.logs import MASK, configure_logging, forget_secrets
from bot.secrets import Secret
from bot.settings import Settings
from tests.apphelpers import new_secret, wait_until, webhook_headers
from tests.test_app_flow import REAL, SHA, published_pull_request

pytest_plugins = ["tests.ghdouble.fixtures"]

JOB_MESSAGE = re.compile(r"\bjob \d+\b")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    """Capture the root logger as `release-guard serve` configures it, then put it back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    yield buffer
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.NOTSET)
    forget_secrets()


async def _full_run(ghdouble: GitHubDouble, tmp_path: Path, buffer: io.StringIO) -> dict[str, Any]:
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
        log_level="debug",
        log_format="json",
    )
    configure_logging(
        level=settings.log_level,
        fmt=settings.log_format,
        secrets=settings.secret_values(),
        stream=buffer,
    )
    stop = asyncio.Event()
    server = asyncio.create_task(
        serve(settings, stop=stop, options=WorkerOptions(concurrency=1, poll_interval=0.05))
    )
    delivery_id = "2d7f9e40-5a1b-11ef-8c8f-000000000001"
    try:
        url = f"http://127.0.0.1:{port}{settings.webhook_path}"
        body = json.dumps(published_pull_request(repo)).encode()
        async with aiohttp.ClientSession() as session:
            await wait_until(lambda: _listening(port), timeout=10)
            async with session.post(
                url, data=body, headers=webhook_headers(secret, body, "pull_request", delivery_id)
            ) as answer:
                assert answer.status == 202
            await wait_until(
                lambda: any(c.status == "completed" for c in repo.check_runs.values()), timeout=20
            )
            # The check run completes just before the worker records the job as done: scrape
            # until the job's end is counted too.
            metrics = ""
            for _ in range(200):
                async with session.get(f"http://127.0.0.1:{port}/metrics") as scraped:
                    metrics = await scraped.text()
                if 'state="done"' in metrics:
                    break
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(server, timeout=20)
    return {
        "secret": secret,
        "pem": ghdouble.private_key.reveal().decode(),
        "tokens": list(ghdouble.state.tokens),
        "delivery_id": delivery_id,
        "installation_id": repo.installation_id,
        "metrics": metrics,
    }


@pytest.mark.asyncio
async def test_no_secret_in_any_log_line_and_job_lines_carry_both_ids(
    ghdouble: GitHubDouble, tmp_path: Path, log_buffer: io.StringIO
) -> None:
    run = await _full_run(ghdouble, tmp_path, log_buffer)
    text = log_buffer.getvalue()
    lines = text.splitlines()
    assert len(lines) > 20, "a full run at DEBUG logs plenty"
    assert run["tokens"], "the double issued an installation token during the run"

    forbidden = {"webhook secret": run["secret"], "private key": run["pem"].strip()}
    pem_lines = [
        line.strip()
        for line in run["pem"].splitlines()
        if line.strip() and not line.startswith("-----")
    ]
    assert len(pem_lines) > 10
    forbidden.update({f"private key line {n}": line for n, line in enumerate(pem_lines)})
    forbidden.update({f"token {n}": token for n, token in enumerate(run["tokens"])})
    for what, value in forbidden.items():
        assert value not in text, f"the {what} appears in the logs"
        assert json.dumps(value)[1:-1] not in text, f"the {what} appears (JSON-escaped)"
    assert MASK not in text, "nothing even tried to log a secret"

    records = [json.loads(line) for line in lines]  # every line is one JSON object
    job_records = [r for r in records if "job_id" in r or JOB_MESSAGE.search(r["message"])]
    assert len(job_records) >= 5
    for record in job_records:
        assert record.get("job_id") is not None, record
        assert record.get("delivery_id") == run["delivery_id"], record
    stages = {r.get("stage") for r in job_records}
    assert {"downloading", "scanning", "reporting"} <= stages
    [received] = [r for r in records if r["message"].startswith(f"delivery {run['delivery_id']}")]
    assert received["delivery_id"] == run["delivery_id"] and received["outcome"] == "queued"
    github_calls = [r for r in job_records if r["logger"].startswith("bot.github")]
    assert github_calls, "the GitHub layer logged at DEBUG inside the job"


@pytest.mark.asyncio
async def test_metrics_of_the_same_run(
    ghdouble: GitHubDouble, tmp_path: Path, log_buffer: io.StringIO
) -> None:
    run = await _full_run(ghdouble, tmp_path, log_buffer)
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(run["metrics"]):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def get(name: str, **labels: str) -> float | None:
        return found.get((name, frozenset(labels.items())))

    def total(name: str, **labels: str) -> float:
        wanted = set(labels.items())
        return sum(v for (n, ls), v in found.items() if n == name and wanted <= ls)

    assert get("release_guard_deliveries_total", event="pull_request", outcome="queued") == 1
    assert total("release_guard_jobs_total", state="done", conclusion="failure") == 1
    assert total("release_guard_findings_total", rule="sourcemap/embedded-sources") >= 1
    for stage in ("downloading", "scanning", "reporting"):
        assert total("release_guard_job_stages_total", stage=stage) >= 1
        assert total("release_guard_job_stage_duration_seconds_count", stage=stage) >= 1
    installation = str(run["installation_id"])
    assert total("release_guard_github_requests_total", installation=installation) >= 3
    assert total("release_guard_github_requests_total", installation="app", status="201") == 1
    assert total("release_guard_github_requests_total", installation="storage") >= 1
    remaining = get(
        "release_guard_github_rate_limit_remaining", installation=installation, resource="core"
    )
    assert remaining is not None and remaining < 5000
