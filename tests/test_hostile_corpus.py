"""Issue 16's hostile corpus, each case through a real `release-guard scan` subprocess.

Every case (built on demand by `tests/hostile.py`, nothing committed) must end with an
error-level finding or exit 2, within its budget: `TIME_BUDGET` seconds, after which the
scan is killed and the test fails, and `RSS_BUDGET` bytes of peak resident memory, read from
the child's `VmHWM` in /proc as it runs (its rusage would also count the test process's
memory, which a forked child inherits as its high-water mark). Its report must list a bounded
number of findings, and its private temporary folder (its TMPDIR) must be left empty.
SIGTERM and SIGINT in the middle of spooling a nested zip leave it empty too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.engine.scan import MAX_FINDINGS_PER_RULE
from tests import hostile

TIME_BUDGET = 60.0
"""Seconds a case may run before it is killed (a hang guard, not a benchmark)."""
RSS_BUDGET = 300 * 1024 * 1024
"""Peak resident bytes a case may reach."""

ROOT = Path(__file__).resolve().parent.parent

EXPECTED: dict[str, set[str]] = {
    "deep-map": {"sourcemap/embedded-sources"},
    "deep-index-map": {"sourcemap/invalid"},
    "utf8-key": {"sourcemap/embedded-sources"},
    "utf8-source": {"sourcemap/embedded-sources"},
    "long-number": {"sourcemap/embedded-sources"},
    "pragmas": {"sourcemap/embedded-sources"},
    "zip-short-size": {"archive/limit"},
    "zip-overlap": {"archive/unsafe-path"},
    "tar-zip-polyglot": {
        "archive/unsafe-path",
        "files/forbidden",
        "sourcemap/embedded-sources",
    },
    "tar-long-pax-path": {"archive/limit"},
    "zip-long-name": {"archive/limit"},
    "zip-million": {"archive/limit"},
    "zip-unicode-names": {"archive/limit"},
    "zip-unsafe-cjk": {"archive/unsafe-path"},
    "zip-long-unsafe": {"archive/unsafe-path"},
    "zip-nul-name": {"archive/unsafe-path"},
    "zip-local-differs": {"archive/limit"},
    "zip-name-encoding": {"archive/unsafe-path"},
}
"""The rules each case must raise at error level."""


@dataclass
class Run:
    code: int
    stdout: bytes
    seconds: float
    peak_rss: int
    killed: bool


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile-corpus")


def _scan(path: Path, tmpdir: Path, *args: str, signal_when_spooling: int | None = None) -> Run:
    """Run `release-guard scan` on `path` with its own TMPDIR; measure it from rusage."""
    tmpdir.mkdir(exist_ok=True)
    out = tmpdir.parent / f"{tmpdir.name}.out"
    env = dict(os.environ, TMPDIR=str(tmpdir))
    env.pop("COLUMNS", None)
    with out.open("wb") as stdout:
        start = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "scan", str(path), *args],
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
        )
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            process.kill()

        timer = threading.Timer(TIME_BUDGET, kill)
        timer.start()
        peak = _PeakMemory(process.pid)
        try:
            if signal_when_spooling is not None:
                _signal_while_spooling(process, tmpdir, signal_when_spooling)
            _, status, _ = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
            peak.stop()
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
    return Run(
        code=process.returncode,
        stdout=out.read_bytes(),
        seconds=seconds,
        peak_rss=peak.value,
        killed=killed.is_set(),
    )


class _PeakMemory:
    """Sample a process's `VmHWM` (its peak resident set) every few milliseconds.

    The high-water mark only grows, so the last sample before the process exits is its peak
    up to then; the few milliseconds after the last sample are all that can be missed.
    """

    def __init__(self, pid: int) -> None:
        self._status = Path(f"/proc/{pid}/status")
        self.value = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(0.005)

    def _sample(self) -> None:
        try:
            text = self._status.read_text()
        except OSError:
            return
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                self.value = max(self.value, int(line.split()[1]) * 1024)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _signal_while_spooling(process: subprocess.Popen[bytes], tmpdir: Path, signum: int) -> None:
    """Send `signum` once the scan has started spooling a nested zip into `tmpdir`."""
    deadline = time.monotonic() + TIME_BUDGET
    while time.monotonic() < deadline and process.poll() is None:
        if any(tmpdir.glob("release-guard-*/*.zip")):
            process.send_signal(signum)
            return
        time.sleep(0.005)
    pytest.fail("the scan never spooled the nested zip")


def _error_rules(run: Run) -> set[str]:
    report = json.loads(run.stdout)
    return {
        finding["rule"]
        for artifact in report["artifacts"]
        for finding in artifact["findings"]
        if finding["severity"] == "error"
    }


def _check_budget(run: Run, tmpdir: Path, label: str) -> None:
    print(f"{label}: exit {run.code}, {run.seconds:.2f} s, peak RSS {run.peak_rss / 2**20:.0f} MiB")
    assert not run.killed, f"{label}: still running after {TIME_BUDGET:g} s"
    assert run.peak_rss < RSS_BUDGET, f"{label}: peak RSS {run.peak_rss:,} bytes"
    assert list(tmpdir.iterdir()) == [], f"{label}: left files in its temporary folder"


@pytest.mark.parametrize("name", list(EXPECTED))
def test_a_hostile_case_fails_closed_within_budget(name: str, corpus: Path, tmp_path: Path) -> None:
    path = hostile.build(name, corpus)
    tmpdir = tmp_path / "tmp"
    run = _scan(path, tmpdir, "--format", "json")
    _check_budget(run, tmpdir, name)
    assert run.code == 1, run.stdout[-2000:]
    assert EXPECTED[name] <= _error_rules(run)
    report = json.loads(run.stdout)
    for artifact in report["artifacts"]:
        per_rule = Counter(finding["rule"] for finding in artifact["findings"])
        assert max(per_rule.values()) <= MAX_FINDINGS_PER_RULE + 1


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("zip-long-unsafe", "sarif"),
        ("zip-long-unsafe", "text"),
        ("zip-long-unsafe", "github"),
        ("zip-unsafe-cjk", "sarif"),  # the biggest report (its text is as long as its JSON)
    ],
)
def test_every_renderer_stays_within_budget(
    name: str, fmt: str, corpus: Path, tmp_path: Path
) -> None:
    path = hostile.build(name, corpus)
    tmpdir = tmp_path / "tmp"
    run = _scan(path, tmpdir, "--format", fmt)
    _check_budget(run, tmpdir, f"{name} ({fmt})")
    assert run.code == 1
    assert b"unsafe-path" in run.stdout
    assert len(run.stdout) < 16 * 1024 * 1024


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_spooling_leaves_nothing_behind(
    signum: int, corpus: Path, tmp_path: Path
) -> None:
    path = hostile.build("zip-nested-big", corpus)
    tmpdir = tmp_path / "tmp"
    run = _scan(path, tmpdir, "--format", "json", signal_when_spooling=signum)
    _check_budget(run, tmpdir, f"zip-nested-big ({signal.Signals(signum).name})")
    assert run.code == 128 + signum


def test_a_long_name_allowed_by_the_config_is_judged_in_linear_time(
    corpus: Path, tmp_path: Path
) -> None:
    """With `max_path_length` at its ceiling the 65,535-byte name reaches the deny list (it
    once took 217 s there: the folder search was quadratic in the path's length)."""
    path = hostile.build("zip-long-name", corpus)
    config = tmp_path / "release-guard.yml"
    config.write_text("limits:\n  max_path_length: 65535\n")
    tmpdir = tmp_path / "tmp"
    run = _scan(path, tmpdir, "--format", "json", "--config", str(config))
    _check_budget(run, tmpdir, "zip-long-name (max_path_length 65535)")
    assert run.code == 1
    assert "files/forbidden" in _error_rules(run)
