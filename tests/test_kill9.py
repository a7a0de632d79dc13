"""Crash recovery for real: `serve` killed with SIGKILL mid-job resumes the job once restarted.

Runs the real command line in subprocesses (tests/kill9_serve.py swaps in a test handler) on
loopback, with SQLite under a temporary DATA_DIR.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.apphelpers import new_secret, pull_request_payload
from tests.processes import ROOT, TIMEOUT, App, new_pem


class Server(App):
    """One `serve` subprocess (tests/kill9_serve.py: the real CLI with a test job handler)."""

    def __init__(self, workdir: Path, env: dict[str, str], name: str) -> None:
        super().__init__(workdir, env, name, ["serve", "--host", "127.0.0.1", "--port", "0"])
        self.wait_for_port()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "notes").mkdir()
    return tmp_path


@pytest.fixture
def secret() -> str:
    return new_secret()


def environment(workdir: Path, secret: str, mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(
        PYTHONPATH=str(ROOT),
        APP_ID="1",
        PRIVATE_KEY=new_pem(),
        WEBHOOK_SECRET=secret,
        DATA_DIR=str(workdir / "data"),
        LOG_FORMAT="json",
        LOG_LEVEL="info",
        KILL9_DIR=str(workdir / "notes"),
        KILL9_MODE=mode,
        RECOVERY_INTERVAL="off",  # GITHUB_API_URL is GitHub's own here: never call it
    )
    return env


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def wait_for(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def job_row(workdir: Path, job_id: int) -> dict[str, Any]:
    connection = sqlite3.connect(workdir / "data" / "release-guard.sqlite3")
    connection.row_factory = sqlite3.Row
    try:
        row = connection.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return dict(row)
    finally:
        connection.close()


def trail(workdir: Path, job_id: int) -> list[str]:
    connection = sqlite3.connect(workdir / "data" / "release-guard.sqlite3")
    try:
        rows = connection.execute(
            "SELECT stage FROM audit_events WHERE job_id = ? ORDER BY id", (job_id,)
        ).fetchall()
        return [stage for (stage,) in rows]
    finally:
        connection.close()


def test_kill_9_mid_job_then_restart_finishes_the_job_once(
    workdir: Path, secret: str, servers: list[Server]
) -> None:
    notes = workdir / "notes"
    env = environment(workdir, secret, "block-first")
    first = Server(workdir, env, "first")
    servers.append(first)
    delivery = str(uuid.uuid4())
    assert first.post(secret, pull_request_payload(), delivery) == 202
    wait_for(lambda: (notes / f"started-1-1-{first.process.pid}").exists(), "the first attempt")

    os.kill(first.process.pid, signal.SIGKILL)
    assert first.process.wait(10) == -signal.SIGKILL
    killed = job_row(workdir, 1)
    assert killed["state"] == "running" and f"/{first.process.pid}/" in killed["lease_owner"]

    second = Server(workdir, env, "second")
    servers.append(second)
    wait_for(lambda: (notes / "finished").exists(), "the job to finish")
    assert second.post(secret, pull_request_payload(), delivery) == 200  # already recorded

    second.process.send_signal(signal.SIGTERM)
    assert second.process.wait(TIMEOUT) == 0
    finished = (notes / "finished").read_text().splitlines()
    assert finished == [f"1 2 {second.process.pid}"]  # exactly once, by the restarted process
    assert not (notes / "gave_up").exists()
    done = job_row(workdir, 1)
    assert done["state"] == "done" and done["attempts"] == 2 and done["lease_owner"] is None
    assert trail(workdir, 1) == [
        "received",
        "queued",
        "started",
        "scanning",
        "reclaimed",
        "started",
        "scanning",
        "done",
    ]
    messages = [r["message"] for r in second.records()]
    assert any("re-queued 1 job(s)" in m for m in messages)


def test_sigterm_drains_the_running_job_and_exits_0(
    workdir: Path, secret: str, servers: list[Server]
) -> None:
    notes = workdir / "notes"
    server = Server(workdir, environment(workdir, secret, "slow"), "drain")
    servers.append(server)
    assert server.post(secret, pull_request_payload(), str(uuid.uuid4())) == 202
    wait_for(lambda: any(notes.glob("started-1-1-*")), "the job to start")
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(TIMEOUT) == 0
    assert (notes / "finished").read_text().splitlines() == [f"1 1 {server.process.pid}"]
    assert job_row(workdir, 1)["state"] == "done"
    records = server.records()
    assert any(r["message"] == "SIGTERM received: stopping" for r in records)
    delivery_lines = [r for r in records if r.get("outcome") == "queued"]
    assert len(delivery_lines) == 1 and delivery_lines[0]["delivery_id"]
    job_lines = [r for r in records if r.get("job_id") == 1]
    assert job_lines and all(
        r["delivery_id"] == delivery_lines[0]["delivery_id"] for r in job_lines
    )
