"""Run a composite action's steps on this machine, as a GitHub runner would, for the tests.

What the runner does that matters here (docs.github.com/actions: "Metadata syntax for GitHub
Actions", "Workflow commands for GitHub Actions", "Store information in variables"):

- each step's `env:` values and `if:` conditions are expressions over the `inputs`, `steps`,
  `github` and `runner` contexts; a step without `if:` runs only while every step before it
  succeeded (`success()`), `always()` runs it regardless;
- a `run:` step with `shell: bash` runs as ``bash --noprofile --norc -eo pipefail FILE``, with
  the default variables (`GITHUB_ACTION_PATH`, `GITHUB_WORKSPACE`, `RUNNER_TEMP`…) and a fresh
  `GITHUB_OUTPUT` and `GITHUB_STEP_SUMMARY` file of its own; what it writes to `GITHUB_OUTPUT`
  becomes `steps.<id>.outputs`, and the step summaries are shown one after the other;
- a `uses:` step runs another action: here it is recorded with its evaluated `with:` (the
  tests check what it would have been given), never run.

The expression language is implemented only as far as an action of this repository uses it:
literals, context properties, `==`, `!=`, `!`, `&&`, `||`, parentheses and the status
functions. Anything else raises, so that a new construct in action.yml fails the test instead
of being read wrongly.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||[!()])"
    r"|(?P<call>[A-Za-z_]+\(\))|(?P<name>[A-Za-z_][A-Za-z0-9_.-]*))"
)
_EMBEDDED = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)


class ExpressionError(ValueError):
    """An expression the harness does not implement (or that is malformed)."""


@dataclass
class StepResult:
    """One step: whether it ran, how it ended, what it wrote."""

    name: str
    ran: bool
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    summary: str = ""
    uses: str | None = None
    with_: dict[str, str] = field(default_factory=dict)


@dataclass
class ActionRun:
    """The whole action: its steps, its outputs and whether it failed."""

    steps: list[StepResult]
    outputs: dict[str, str]
    failed: bool

    def step(self, name_prefix: str) -> StepResult:
        [found] = [s for s in self.steps if s.name.startswith(name_prefix)]
        return found

    @property
    def summary(self) -> str:
        return "".join(s.summary for s in self.steps)


class _Evaluator:
    def __init__(self, contexts: Mapping[str, Any], *, failed: bool) -> None:
        self.contexts = contexts
        self.failed = failed
        self.tokens: list[tuple[str, str]] = []

    def evaluate(self, text: str) -> Any:
        self.tokens = self._tokenize(text)
        value = self._or()
        if self.tokens:
            raise ExpressionError(f"unexpected {self.tokens[0][1]!r} in {text!r}")
        return value

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str]]:
        tokens: list[tuple[str, str]] = []
        position = 0
        while position < len(text.rstrip()):
            match = _TOKEN.match(text, position)
            if match is None:
                raise ExpressionError(f"cannot read {text[position:]!r}")
            kind = match.lastgroup
            assert kind is not None
            tokens.append((kind, match.group(kind)))
            position = match.end()
        return tokens

    def _take(self, value: str) -> bool:
        if self.tokens and self.tokens[0] == ("op", value):
            self.tokens.pop(0)
            return True
        return False

    def _or(self) -> Any:
        left = self._and()
        while self._take("||"):
            right = self._and()
            left = left if _truthy(left) else right
        return left

    def _and(self) -> Any:
        left = self._compare()
        while self._take("&&"):
            right = self._compare()
            left = right if _truthy(left) else left
        return left

    def _compare(self) -> Any:
        left = self._unary()
        for op in ("==", "!="):
            if self._take(op):
                right = self._unary()
                equal = _loose(left) == _loose(right)
                return equal if op == "==" else not equal
        return left

    def _unary(self) -> Any:
        if self._take("!"):
            return not _truthy(self._unary())
        if self._take("("):
            value = self._or()
            if not self._take(")"):
                raise ExpressionError("missing )")
            return value
        if not self.tokens:
            raise ExpressionError("expression ends too early")
        kind, text = self.tokens.pop(0)
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind == "call":
            return self._call(text[:-2])
        if kind == "name":
            return self._lookup(text)
        raise ExpressionError(f"unexpected {text!r}")

    def _call(self, name: str) -> bool:
        calls = {"always": True, "success": not self.failed, "failure": self.failed}
        if name not in calls:
            raise ExpressionError(f"function {name}() is not implemented")
        return calls[name]

    def _lookup(self, dotted: str) -> Any:
        if dotted in ("true", "false"):
            return dotted == "true"
        head, *rest = dotted.split(".")
        if head not in self.contexts:
            raise ExpressionError(f"context {head!r} is not implemented")
        value: Any = self.contexts[head]
        for part in rest:
            value = value.get(part) if isinstance(value, Mapping) else None
        return value


def _truthy(value: Any) -> bool:
    return value not in (None, False, "", 0)


def _loose(value: Any) -> Any:
    """GitHub compares strings ignoring case; null reads as the empty string here."""
    if value is None:
        return ""
    return value.lower() if isinstance(value, str) else value


def evaluate(text: str, contexts: Mapping[str, Any], *, failed: bool = False) -> Any:
    """Evaluate `text`, a bare expression or one wrapped in ``${{ }}``."""
    stripped = text.strip()
    if stripped.startswith("${{") and stripped.endswith("}}"):
        stripped = stripped[3:-2]
    return _Evaluator(contexts, failed=failed).evaluate(stripped)


def interpolate(text: str, contexts: Mapping[str, Any], *, failed: bool = False) -> str:
    """Replace each ``${{ … }}`` inside `text` by its value, as a string."""

    def one(match: re.Match[str]) -> str:
        value = evaluate(match.group(1), contexts, failed=failed)
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    return _EMBEDDED.sub(one, text)


def read_outputs(path: Path) -> dict[str, str]:
    """Read a `GITHUB_OUTPUT` file: ``name=value`` lines and ``name<<DELIMITER`` blocks."""
    outputs: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            block: list[str] = []
            while lines[index] != delimiter:
                block.append(lines[index])
                index += 1
            index += 1
            outputs[name] = "\n".join(block)
        elif "=" in line:
            name, value = line.split("=", 1)
            outputs[name] = value
        elif line:
            raise ValueError(f"not an output line: {line!r}")
    return outputs


def run_action(
    action_dir: Path,
    *,
    inputs: Mapping[str, str],
    workspace: Path,
    runner_temp: Path,
    environ: Mapping[str, str],
) -> ActionRun:
    """Run the composite action in `action_dir` with `inputs`, in `workspace`."""
    action = yaml.safe_load((action_dir / "action.yml").read_text(encoding="utf-8"))
    assert action["runs"]["using"] == "composite"
    given = {}
    for name, spec in action.get("inputs", {}).items():
        if name in inputs:
            given[name] = inputs[name]
        elif spec.get("required"):
            raise ValueError(f"input {name} is required")
        else:
            given[name] = str(spec.get("default", ""))
    unknown = set(inputs) - set(given)
    if unknown:
        raise ValueError(f"inputs the action does not declare: {sorted(unknown)}")
    steps_context: dict[str, dict[str, Any]] = {}
    contexts: dict[str, Any] = {
        "inputs": given,
        "steps": steps_context,
        "github": {"action_path": str(action_dir), "workspace": str(workspace)},
        "runner": {"temp": str(runner_temp), "os": "Linux"},
    }
    failed = False
    results: list[StepResult] = []
    for index, step in enumerate(action["runs"]["steps"]):
        name = step.get("name", f"step {index}")
        condition = step.get("if", "success()")
        if not _truthy(evaluate(str(condition), contexts, failed=failed)):
            results.append(StepResult(name=name, ran=False))
            continue
        if "uses" in step:
            with_ = {
                key: interpolate(str(value), contexts, failed=failed)
                for key, value in (step.get("with") or {}).items()
            }
            results.append(StepResult(name=name, ran=True, uses=step["uses"], with_=with_))
            continue
        result = _run_step(
            index, step, name, contexts, failed, action_dir, workspace, runner_temp, environ
        )
        results.append(result)
        if "id" in step:
            steps_context[step["id"]] = {
                "outputs": result.outputs,
                "outcome": "success" if result.exit_code == 0 else "failure",
            }
        failed = failed or result.exit_code != 0
    outputs = {
        name: interpolate(str(spec.get("value", "")), contexts, failed=failed)
        for name, spec in action.get("outputs", {}).items()
    }
    return ActionRun(steps=results, outputs=outputs, failed=failed)


def _run_step(
    index: int,
    step: Mapping[str, Any],
    name: str,
    contexts: Mapping[str, Any],
    failed: bool,
    action_dir: Path,
    workspace: Path,
    runner_temp: Path,
    environ: Mapping[str, str],
) -> StepResult:
    if step.get("shell") != "bash":
        raise ValueError(f"{name}: only `shell: bash` steps are implemented")
    script_text = step["run"]
    if "${{" in script_text:
        raise ValueError(f"{name}: an expression pasted into the script (use env:)")
    folder = Path(tempfile.mkdtemp(prefix=f"_step{index}-", dir=runner_temp))
    output_file, summary_file = folder / "output", folder / "summary"
    output_file.touch()
    summary_file.touch()
    script = folder / "script.sh"
    script.write_text(script_text, encoding="utf-8")
    env = {
        **environ,
        "GITHUB_ACTIONS": "true",
        "CI": "true",
        "GITHUB_ACTION_PATH": str(action_dir),
        "GITHUB_WORKSPACE": str(workspace),
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_OUTPUT": str(output_file),
        "GITHUB_STEP_SUMMARY": str(summary_file),
    }
    for key, value in (step.get("env") or {}).items():
        env[key] = interpolate(str(value), contexts, failed=failed)
    completed = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=step.get("working-directory", workspace),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return StepResult(
        name=name,
        ran=True,
        exit_code=completed.returncode,
        stdout=completed.stdout,
        stderr=completed.stderr,
        outputs=read_outputs(output_file),
        summary=summary_file.read_text(encoding="utf-8"),
    )


def base_environment() -> dict[str, str]:
    """The parts of this process's environment a runner would have too (PATH, HOME, locale)."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    return {key: os.environ[key] for key in keep if key in os.environ}
