"""`release-guard scan`'s progress: the engine's callback (bytes of the artifact read, at most
about ten reports a second, the last one always), the line drawn on a terminal, and nothing
when stderr is not a terminal."""

from __future__ import annotations

import gzip
import io
import json
import os
import pty
import random
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from bot.cli.progress import ProgressBar, render_line
from bot.engine.archive import ProgressMeter
from bot.engine.policy import Policy
from bot.engine.scan import scan_path

REAL = Path(__file__).parent / "fixtures" / "real"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- the meter ------------------------------------------------------------------------------


def test_the_meter_reports_at_most_once_per_interval_and_always_at_the_end() -> None:
    clock, calls = Clock(), []
    meter = ProgressMeter(lambda d, t: calls.append((d, t)), 1000, interval=0.1, clock=clock)
    meter.update(10)  # the first report is immediate
    for done in range(20, 500, 10):
        meter.update(done)  # no time passes: no report
    clock.now += 0.1
    meter.update(600)
    meter.update(550)  # never backwards
    clock.now += 0.2
    meter.advance(100)
    meter.finish()
    assert calls == [(10, 1000), (600, 1000), (700, 1000), (1000, 1000)]


def test_the_meter_never_passes_the_total() -> None:
    calls: list[tuple[int, int]] = []
    meter = ProgressMeter(lambda d, t: calls.append((d, t)), 10, interval=0.0)
    meter.update(25)
    assert calls == [(10, 10)]


# -- scan_path --------------------------------------------------------------------------------


def _noise(size: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(size)


def _tgz(path: Path, size: int) -> Path:
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        for n in range(4):
            data = _noise(size // 4, seed=n)
            info = tarfile.TarInfo(f"package/blob{n}.bin")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _zip(path: Path, size: int) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for n in range(4):
            archive.writestr(f"dist/blob{n}.bin", _noise(size // 4, seed=n))
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: _tgz(tmp / "big.tgz", 4 << 20),
        lambda tmp: _zip(tmp / "big.zip", 4 << 20),
        lambda tmp: REAL / "leaky-esbuild-1.0.0.tgz",
        lambda tmp: REAL / "actions-artifact-leaky.zip",
        lambda tmp: REAL / "src",
        lambda tmp: REAL / "src" / "styles" / "main.css",
    ],
    ids=["large-tgz", "large-zip", "tgz", "zip", "directory", "plain-file"],
)
def test_scan_path_reports_bytes_read_up_to_the_size(make: object, tmp_path: Path) -> None:
    path: Path = make(tmp_path)  # type: ignore[operator]
    calls: list[tuple[int, int]] = []
    plain = scan_path(path, policy=Policy())
    report = scan_path(path, policy=Policy(), progress=lambda d, t: calls.append((d, t)))
    assert report.findings == plain.findings and report.files == plain.files
    assert calls, "at least the final report"
    totals = {total for _, total in calls}
    assert totals == {report.size}
    done = [d for d, _ in calls]
    assert done == sorted(done), "never backwards"
    assert done[-1] == report.size


def test_a_gzip_member_reports_compressed_bytes(tmp_path: Path) -> None:
    path = tmp_path / "data.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"k": "v" * 100_000}).encode()))
    calls: list[tuple[int, int]] = []
    scan_path(path, policy=Policy(), progress=lambda d, t: calls.append((d, t)))
    assert calls[-1] == (path.stat().st_size, path.stat().st_size)


# -- the terminal line ------------------------------------------------------------------------


def test_the_line_fits_the_terminal() -> None:
    line = render_line(2, 3, "dist-1.0.0.tgz", 12 << 20, 25 << 20, width=80)
    assert line.startswith("[2/3] dist-1.0.0.tgz") and line.endswith(" 48%  12.0/25.0 MiB")
    assert "[" + "#" * 12 in line and len(line) <= 79
    for width in (200, 60, 30, 12, 1):
        assert len(render_line(1, 1, "a" * 100, 5, 10, width=width)) <= max(width - 1, 1)
    assert "100%" in render_line(1, 1, "empty", 0, 0, width=80)
    assert render_line(1, 1, "k", 2048, 4096, width=80).endswith("2/4 KiB")
    assert render_line(1, 1, "b", 3, 9, width=80).endswith("3/9 B")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_draws_in_place_and_clears() -> None:
    stream = FakeTerminal()
    bar = ProgressBar(stream, width=lambda: 60)
    show = bar.tracker(1, 2, "a.tgz")
    show(5, 10)
    show(10, 10)
    bar.clear()
    text = stream.getvalue()
    assert text.count("\r\x1b[K") == 3 and text.endswith("\r\x1b[K")
    assert "[1/2] a.tgz" in text and "100%" in text
    assert ProgressBar.for_stream(io.StringIO()) is None
    assert isinstance(ProgressBar.for_stream(FakeTerminal()), ProgressBar)


def _scan_with_stderr(stderr: int | None, *paths: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "scan", "--format", "json", *map(str, paths)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        env={**os.environ, "COLUMNS": "100"},
        timeout=60,
        check=False,
    )


def test_scan_on_a_terminal_shows_progress_on_stderr(tmp_path: Path) -> None:
    big = _tgz(tmp_path / "big.tgz", 2 << 20)
    leader, follower = pty.openpty()
    try:
        done = _scan_with_stderr(follower, big, REAL / "leaky-esbuild-1.0.0.tgz")
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the other side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    shown = b"".join(chunks).decode()
    assert "[1/2] big.tgz" in shown and "[2/2] leaky-esbuild-1.0.0.tgz" in shown
    assert "100%" in shown
    assert shown.endswith("\r\x1b[K"), "the line is erased at the end"
    report = json.loads(done.stdout)  # stdout holds the report only
    assert [a["name"] for a in report["artifacts"]] == ["big.tgz", "leaky-esbuild-1.0.0.tgz"]


def test_scan_without_a_terminal_shows_nothing(tmp_path: Path) -> None:
    done = _scan_with_stderr(subprocess.PIPE, REAL / "leaky-esbuild-1.0.0.tgz")
    assert done.stderr == b""
    assert json.loads(done.stdout)["conclusion"] == "failure"
