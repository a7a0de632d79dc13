"""Real `release-guard` processes for tests: start them, read their JSON logs, kill them.

`App` runs the command line in a subprocess, either the real one (`python -m bot`) or
tests/kill9_serve.py (the real one with a test job handler). A process that listens is found
by its "listening on" log line (it is started with `--port 0`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.apphelpers import sign

ROOT = Path(__file__).resolve().parent.parent
LAUNCHER = ROOT / "tests" / "kill9_serve.py"
TIMEOUT = 30.0


def new_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def base_environment(**values: str) -> dict[str, str]:
    """The parent's PATH and locale, the project on PYTHONPATH, JSON logs, and `values`.

    The recovery sweep is off unless `values` turn it on: a process whose GITHUB_API_URL is
    not a local double must not call GitHub.
    """
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    env.update(PYTHONPATH=str(ROOT), LOG_FORMAT="json", LOG_LEVEL="info", RECOVERY_INTERVAL="off")
    env.update(values)
    return env


class App:
    """One release-guard subprocess and its log file."""

    def __init__(
        self,
        workdir: Path,
        env: dict[str, str],
        name: str,
        args: list[str],
        *,
        launcher: Path | None = LAUNCHER,
    ) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        command = [sys.executable, str(launcher)] if launcher else [sys.executable, "-m", "bot"]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [*command, *args], cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        self.port: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def records(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name} exited early:\n{self.log.read_text()}")

    def logged(self, start: str) -> bool:
        """Whether the process logged a line starting with `start` (alive or not)."""
        return any(r["message"].startswith(start) for r in self.records())

    def _logged(self, message: str) -> dict[str, Any] | None:
        """The first log record whose message starts with `message`; fail if the process died."""
        for record in self.records():
            if record["message"].startswith(message):
                if "port" in record:
                    self.port = int(record["port"])
                return record
        self._check_alive()
        return None

    def wait_for_port(self) -> int:
        """Wait (blocking) until the process listens; return its port."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self._logged("listening on") is not None and self.port is not None:
                return self.port
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not start:\n{self.log.read_text()}")

    async def started(self, message: str = "listening on") -> None:
        """Wait (without blocking the loop) until the process logs a line starting so."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self._logged(message) is not None:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name} did not log {message!r}:\n{self.log.read_text()}")

    def post(
        self, secret: str, payload: dict[str, Any], delivery: str, event: str = "pull_request"
    ) -> int:
        body = json.dumps(payload).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/github/webhooks",
            data=body,
            headers={
                "X-GitHub-Event": event,
                "X-GitHub-Delivery": delivery,
                "X-Hub-Signature-256": sign(secret, body),
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    def kill9(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(10) == -signal.SIGKILL

    def terminate(self) -> int:
        """SIGTERM, then wait for the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(TIMEOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
