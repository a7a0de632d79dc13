"""Test-wide guard: no test reaches the internet.

Every socket connection a test opens must go to a loopback address (the GitHub double, the
App under test, local database servers). Anything else fails the test at once with a clear
message instead of waiting on a network this machine does not have.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import settings

# `pg_url` / `pg_schema_url`: a private PostgreSQL schema per test (tests/pgtest.py).
pytest_plugins = ["tests.pgtest"]

# Property tests: `.ci/run` runs them derandomized (HYPOTHESIS_PROFILE=ci), so CI sees the same
# examples every time; elsewhere each run explores new ones (`explore`: many more of them).
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


def _is_local(address: Any) -> bool:
    if isinstance(address, (str, bytes)):  # a Unix socket path
        return True
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded(original: Any) -> Any:
    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
            raise ConnectionRefusedError(f"tests must not reach the network: {address!r}")
        return original(self, address)

    return connect


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(socket.socket, "connect", _guarded(_original_connect))
    monkeypatch.setattr(socket.socket, "connect_ex", _guarded(_original_connect_ex))
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under `.ci/run` (RELEASE_GUARD_NO_SKIPS=1) a skipped test fails.

    Tests that need a server (PostgreSQL, an S3-compatible store) skip with a reason when its
    URL is not given; CI gives every URL, so a skip there means a test did not run.
    """
    outcome: Any = yield
    report = outcome.get_result()
    if os.environ.get("RELEASE_GUARD_NO_SKIPS") == "1" and report.skipped:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under .ci/run, where every test must run: {reason}"
