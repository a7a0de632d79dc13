"""`release-guard scan`: exit codes, formats, output files and errors (CONTRACT.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli.main import main

REAL = Path(__file__).parent / "fixtures" / "real"
LEAKY = REAL / "actions-artifact-leaky.zip"
CLEAN = REAL / "clean-esbuild-1.0.0.tgz"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_exit_status_follows_error_findings(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "scan", str(CLEAN))[0] == 0
    code, out, _ = run(capsys, "scan", str(LEAKY))
    assert code == 1
    assert "sourcemap/embedded-sources" in out
    assert "failure" in out.splitlines()[-1]


def test_warnings_alone_do_not_fail(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "scan", str(REAL / "maponly-esbuild-1.0.0.tgz"))
    assert code == 0
    assert "sourcemap/map-file" in out


def test_json_report_matches_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "scan", "--format", "json", str(LEAKY), str(CLEAN))
    assert code == 1
    report = json.loads(out)
    assert report["version"] == 1
    assert report["conclusion"] == "failure"
    assert report["summary"] == {"error": 1, "warning": 0, "notice": 1}
    first, second = report["artifacts"]
    assert set(first) == {"name", "path", "sha256", "size", "files", "findings"}
    assert first["name"] == LEAKY.name and first["files"] == 3
    assert second["findings"] == []
    finding = next(f for f in first["findings"] if f["rule"] == "sourcemap/embedded-sources")
    assert set(finding) == {"rule", "severity", "path", "line", "message"}
    assert finding["path"].endswith("leaky-esbuild-1.0.0.tgz!/package/dist/index.js.map")


@pytest.mark.parametrize("fmt", ["text", "json", "sarif", "github"])
def test_every_format_writes_to_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    target = tmp_path / f"report.{fmt}"
    code, out, _ = run(capsys, "scan", "--format", fmt, "--output", str(target), str(LEAKY))
    assert code == 1
    assert out == ""
    text = target.read_text(encoding="utf-8")
    assert "embedded-sources" in text
    if fmt in ("json", "sarif"):
        json.loads(text)
    if fmt == "github":
        assert text.startswith("::error ")
    assert "\x1b[" not in text  # no colour in files


def test_config_changes_severity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "release-guard.yml"
    config.write_text("rules:\n  sourcemap/embedded-sources: warning\n", encoding="utf-8")
    code, out, _ = run(capsys, "scan", "--config", str(config), "--format", "json", str(LEAKY))
    assert code == 0
    assert json.loads(out)["summary"]["warning"] == 1


def test_default_config_is_read_from_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".github").mkdir()
    (tmp_path / ".github" / "release-guard.yml").write_text(
        "rules:\n  sourcemap/embedded-sources: off\n", encoding="utf-8"
    )
    monkeypatch.chdir(tmp_path)
    assert run(capsys, "scan", str(LEAKY))[0] == 0


def test_invalid_config_is_exit_2_with_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.yml"
    config.write_text("rules:\n  sourcemap/embedded-sources: loud\n", encoding="utf-8")
    code, out, err = run(capsys, "scan", "--config", str(config), str(LEAKY))
    assert code == 2
    assert out == ""
    assert f"{config}:2" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["scan", "/nonexistent/x.tgz"], "no such file"),
        (["scan", "--config", "/nonexistent.yml", str(LEAKY)], "config file not found"),
    ],
)
def test_unreadable_input_is_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = run(capsys, *args)
    assert code == 2
    assert message in err


def test_usage_errors_are_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["scan"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["scan", "--format", "xml", str(LEAKY)])
    assert exc.value.code == 2
    capsys.readouterr()


def test_unwritable_output_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "scan", "--output", str(tmp_path / "no" / "such" / "dir.txt"), str(CLEAN)
    )
    assert code == 2
    assert "cannot write" in err


def test_python_dash_m_bot_is_the_same_command(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "scan", "--format", "json", str(LEAKY)],
        capture_output=True,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 1
    assert json.loads(done.stdout)["conclusion"] == "failure"
