"""The GitHub Action (`action.yml`): its metadata against GitHub's published schema, and its
steps run here with a simulated Actions environment (`tests/actions_harness.py`) on a leaky
and a clean npm package from `tests/fixtures/real/`.

The package index is the one thing played by a double: installing release-guard's
dependencies would reach PyPI, and no test reaches the internet. A `python3` on PATH stands
for the runner's Python; the virtual environment it makes records what pip was asked to
install (the action's own checkout, by path) and otherwise runs this checkout's release-guard,
which is that same directory. Everything else (the install step's checks, the scan, the
annotations, SARIF, the step summary and outputs, the conditions of the upload step) runs as
written in action.yml.
"""

from __future__ import annotations

import json
import shutil
import stat
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from bot.checks.output import render_summary
from bot.cli.action import expand_paths, output_lines, parse_flag, summary_context
from bot.engine.model import Report
from bot.engine.policy import Policy
from bot.engine.scan import scan_path
from tests.actions_harness import (
    ActionRun,
    ExpressionError,
    base_environment,
    evaluate,
    read_outputs,
    run_action,
)

ROOT = Path(__file__).parents[1]
REAL = Path(__file__).parent / "fixtures" / "real"
LEAKY = REAL / "leaky-esbuild-1.0.0.tgz"
CLEAN = REAL / "clean-esbuild-1.0.0.tgz"
SCHEMA = json.loads((Path(__file__).parent / "schemas" / "github-action.json").read_text())
ACTION = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
SARIF_SCHEMA = json.loads(
    (Path(__file__).parent / "schemas" / "sarif-schema-2.1.0.json").read_text()
)
GITHUB_ENV = {
    "GITHUB_SERVER_URL": "https://github.com",
    "GITHUB_REPOSITORY": "octo-org/leaky-cli",
    "GITHUB_RUN_ID": "4242",
    "GITHUB_WORKFLOW": "release",
    "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
    "GITHUB_REF": "refs/tags/v1.0.0",
    "GITHUB_EVENT_NAME": "release",
}


# -- the metadata ---------------------------------------------------------------------------------


def test_action_yml_is_valid_against_schemastores_schema() -> None:
    validator = jsonschema.Draft7Validator(SCHEMA)
    errors = sorted(validator.iter_errors(ACTION), key=lambda e: list(e.path))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    assert SCHEMA["$id"] == "https://json.schemastore.org/github-action.json"


def test_the_schema_catches_what_github_rejects() -> None:
    """The vendored schema is not a blank check: broken metadata fails it."""
    validator = jsonschema.Draft7Validator(SCHEMA)
    broken: list[dict[str, object]] = [
        {**ACTION, "runs": {"using": "composite"}},  # no steps
        {**ACTION, "runs": {"using": "composite", "steps": [{"run": "true"}]}},  # no shell
        {**ACTION, "inputs": {"paths": {"required": True}}},  # no description
        {k: v for k, v in ACTION.items() if k != "description"},
        {**ACTION, "outputs": {"conclusion": {"description": "x"}}},  # composite: no value
    ]
    for document in broken:
        assert list(validator.iter_errors(document)), document


def test_inputs_outputs_and_steps() -> None:
    assert set(ACTION["inputs"]) == {"paths", "config", "upload-sarif", "fail-on-findings"}
    assert ACTION["inputs"]["paths"]["required"] is True
    assert ACTION["inputs"]["upload-sarif"]["default"] == "false"
    assert ACTION["inputs"]["fail-on-findings"]["default"] == "true"
    assert set(ACTION["outputs"]) == {"conclusion", "errors", "warnings", "notices", "sarif-file"}
    steps = ACTION["runs"]["steps"]
    for step in steps:
        if "run" in step:
            assert step["shell"] == "bash"
            # Inputs reach a script through env: only, never pasted into its text.
            assert "${{" not in step["run"], step["name"]
    [upload] = [s for s in steps if "uses" in s]
    assert upload["uses"] == "github/codeql-action/upload-sarif@v4"
    install = steps[0]["run"]
    assert 'pip install --quiet --disable-pip-version-check "$GITHUB_ACTION_PATH"' in install
    assert "--index-url" not in install and "release-guard==" not in install


# -- the steps, run ----------------------------------------------------------------------------


@pytest.fixture
def runner(tmp_path: Path) -> dict[str, Path]:
    """A workspace, RUNNER_TEMP, and the `python3` double on PATH (see the module docstring)."""
    workspace, temp, tools = tmp_path / "work", tmp_path / "runner-temp", tmp_path / "bin"
    for folder in (workspace, temp, tools):
        folder.mkdir()
    pip_log = tmp_path / "pip-requests"
    python = sys.executable
    venv_python = f"""#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  printf '%s\\n' "$*" >>'{pip_log}'
  exit 0
fi
exec '{python}' "$@"
"""
    _executable(
        tools / "python3",
        f"""#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
  mkdir -p "$3/bin"
  cat >"$3/bin/python" <<'EOF'
{venv_python}EOF
  chmod +x "$3/bin/python"
  exit 0
fi
exec '{python}' "$@"
""",
    )
    return {"workspace": workspace, "temp": temp, "tools": tools, "pip_log": pip_log}


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _run(runner: dict[str, Path], **inputs: str) -> ActionRun:
    environ = base_environment()
    environ["PATH"] = f"{runner['tools']}:{environ.get('PATH', '/usr/bin:/bin')}"
    environ.update(GITHUB_ENV)
    return run_action(
        ROOT,
        inputs=inputs,
        workspace=runner["workspace"],
        runner_temp=runner["temp"],
        environ=environ,
    )


def _report(path: Path) -> Report:
    return Report(artifacts=[scan_path(path, policy=Policy())])


def test_leaky_package_fails_annotates_summarises_and_uploads(runner: dict[str, Path]) -> None:
    shutil.copy(LEAKY, runner["workspace"])
    run = _run(runner, paths="*.tgz", **{"upload-sarif": "true"})

    install = run.step("Install")
    assert install.exit_code == 0, install.stderr
    [request] = runner["pip_log"].read_text().splitlines()
    assert request == f"-m pip install --quiet --disable-pip-version-check {ROOT}"
    assert "release-guard 0.1.0 from " + str(ROOT) in install.stdout

    scan = run.step("Scan")
    assert scan.exit_code == 1 and run.failed
    assert (
        "::error file=leaky-esbuild-1.0.0.tgz,title=sourcemap/embedded-sources::"
        "package/dist/index.js.map: " in scan.stdout
    )
    assert run.outputs["conclusion"] == "failure"
    expected = _report(runner["workspace"] / LEAKY.name).summary
    assert run.outputs["errors"] == str(expected["error"]) != "0"
    assert run.outputs["warnings"] == str(expected["warning"])
    assert run.outputs["notices"] == str(expected["notice"])

    # The step summary is the check run's summary (test below), under its title.
    assert run.summary.startswith("## release-guard: ")
    assert "**❌ Failing:**" in run.summary
    assert "[release](https://github.com/octo-org/leaky-cli/actions/runs/4242)" in run.summary
    assert "`sourcemap/embedded-sources`" in run.summary

    # The upload still runs after the failing scan, and is given a valid SARIF file.
    upload = run.step("Upload")
    assert upload.ran and upload.uses == "github/codeql-action/upload-sarif@v4"
    sarif_file = Path(upload.with_["sarif_file"])
    assert sarif_file == Path(run.outputs["sarif-file"])
    assert sarif_file.parent == runner["temp"]
    sarif = json.loads(sarif_file.read_text())
    jsonschema.validate(sarif, SARIF_SCHEMA)
    assert any(r["ruleId"] == "sourcemap/embedded-sources" for r in sarif["runs"][0]["results"])


def test_the_summary_is_the_check_runs_renderer(
    runner: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(LEAKY, runner["workspace"])
    run = _run(runner, paths=LEAKY.name)
    monkeypatch.chdir(runner["workspace"])
    report = _report(Path(LEAKY.name))
    check_run_summary = render_summary(report, context=summary_context(GITHUB_ENV))
    assert run.summary.endswith(check_run_summary + "\n")
    print(run.summary)


def test_clean_package_passes_without_upload(runner: dict[str, Path]) -> None:
    shutil.copy(CLEAN, runner["workspace"])
    run = _run(runner, paths=f"\n  {CLEAN.name}  \n\n")
    assert not run.failed
    assert run.step("Scan").exit_code == 0
    assert run.outputs == {
        "conclusion": "success",
        "errors": "0",
        "warnings": "0",
        "notices": "0",
        "sarif-file": run.step("Scan").outputs["sarif-file"],
    }
    assert "**✅ Passing:** no findings in 1 artifact" in run.summary
    assert not run.step("Upload").ran  # upload-sarif defaults to false
    assert "::error" not in run.step("Scan").stdout


def test_findings_reported_but_not_failing_when_asked(runner: dict[str, Path]) -> None:
    shutil.copy(LEAKY, runner["workspace"])
    run = _run(runner, paths="*.tgz", **{"fail-on-findings": "false"})
    assert not run.failed and run.step("Scan").exit_code == 0
    assert run.outputs["conclusion"] == "failure"
    assert "fail-on-findings is false" in run.step("Scan").stdout
    assert "::error file=leaky-esbuild-1.0.0.tgz" in run.step("Scan").stdout


@pytest.mark.parametrize(
    ("paths", "why"),
    [
        ("dist/*.tgz", "matches nothing"),
        ("missing.tgz", "missing.tgz"),
        ("\n\n", "no path to scan"),
    ],
)
def test_nothing_to_scan_fails_closed(runner: dict[str, Path], paths: str, why: str) -> None:
    run = _run(runner, paths=paths, **{"upload-sarif": "true"})
    scan = run.step("Scan")
    assert scan.exit_code == 2 and run.failed
    assert scan.stdout.startswith("::error title=release-guard::") and why in scan.stdout
    assert "could not scan" in run.summary
    assert run.outputs["conclusion"] == ""
    assert not run.step("Upload").ran  # no SARIF file to upload


def test_an_invalid_config_fails_closed(runner: dict[str, Path]) -> None:
    shutil.copy(CLEAN, runner["workspace"])
    (runner["workspace"] / "guard.yml").write_text("limits: [not, a, mapping\n")
    run = _run(runner, paths=CLEAN.name, config="guard.yml")
    assert run.step("Scan").exit_code == 2
    assert "guard.yml" in run.step("Scan").stdout


def test_bad_boolean_input_is_an_error(runner: dict[str, Path]) -> None:
    shutil.copy(CLEAN, runner["workspace"])
    run = _run(runner, paths=CLEAN.name, **{"fail-on-findings": "maybe"})
    assert run.step("Scan").exit_code == 2
    assert "fail-on-findings" in run.step("Scan").stdout


def test_input_values_never_run_as_shell(runner: dict[str, Path]) -> None:
    marker = runner["workspace"] / "pwned"
    run = _run(runner, paths=f"$(touch {marker})\n`touch {marker}`", config=f"x; touch {marker}")
    assert run.step("Scan").exit_code == 2
    assert not marker.exists()


def test_too_old_a_python_is_explained(runner: dict[str, Path]) -> None:
    _executable(runner["tools"] / "python3", "#!/bin/sh\nexit 1\n")  # any python3 < 3.11
    run = _run(runner, paths="x")
    install = run.step("Install")
    assert install.exit_code == 2
    assert "needs Python 3.11 or later" in install.stdout
    assert not run.step("Scan").ran and not run.step("Upload").ran


# -- the pieces ---------------------------------------------------------------------------------


def test_paths_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dist" / "sub").mkdir(parents=True)
    for name in ("dist/b.whl", "dist/a.tar.gz", "dist/sub/c.tgz"):
        (tmp_path / name).write_bytes(b"")
    assert expand_paths("dist/*") == [Path("dist/a.tar.gz"), Path("dist/b.whl"), Path("dist/sub")]
    assert expand_paths("dist/**/*.tgz\n\nplain file.zip") == [
        Path("dist/sub/c.tgz"),
        Path("plain file.zip"),
    ]


def test_flags_and_outputs() -> None:
    assert parse_flag("x", " TRUE ") is True and parse_flag("x", "false") is False
    assert parse_flag("x", "") is False
    assert output_lines("conclusion", "failure") == "conclusion=failure\n"
    block = output_lines("path", "two\nlines")
    assert block.startswith("path<<ghadelimiter_") and "\ntwo\nlines\n" in block


def test_outputs_read_back(tmp_path: Path) -> None:
    (tmp_path / "out").write_text(output_lines("a", "1") + output_lines("b", "x\ny=z\n"))
    assert read_outputs(tmp_path / "out") == {"a": "1", "b": "x\ny=z\n"}


def test_harness_expressions_fail_closed() -> None:
    contexts = {"inputs": {"upload-sarif": "True"}, "steps": {}}
    assert evaluate("${{ inputs.upload-sarif == 'true' }}", contexts) is True
    assert evaluate("always() && steps.scan.outputs.sarif-file != ''", contexts) is False
    assert evaluate("success() || failure()", contexts, failed=True) is True
    assert evaluate("!(inputs.upload-sarif == 'false')", contexts) is True
    with pytest.raises(ExpressionError):
        evaluate("hashFiles('**')", contexts)
    with pytest.raises(ExpressionError):
        evaluate("secrets.TOKEN", contexts)
