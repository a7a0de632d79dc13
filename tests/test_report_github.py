"""GitHub Actions workflow commands: one annotation per finding, none an attacker can add."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.engine.model import ArtifactReport, Finding, Report, Rule, Severity
from bot.report.github import escape_data, escape_property, render_github, workflow_command
from bot.report.text import neutralize

SHA = "cd" * 32
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)


def _unescape_data(text: str) -> str:
    # What the Actions runner does to a command's data.
    return text.replace("%0D", "\r").replace("%0A", "\n").replace("%25", "%")


def _unescape_property(text: str) -> str:
    return (
        text.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
    )


def parse_command(line: str) -> tuple[str, dict[str, str], str] | None:
    """Read `line` the way the Actions runner does; None when it is no command."""
    stripped = line.lstrip()
    if not stripped.startswith("::"):
        return None
    end = stripped.find("::", 2)
    if end < 0:
        return None
    name, _, raw_properties = stripped[2:end].partition(" ")
    properties = {}
    for item in raw_properties.split(","):
        if item:
            key, _, value = item.partition("=")
            properties[key] = _unescape_property(value)
    return name, properties, _unescape_data(stripped[end + 2 :])


def commands(output: str) -> list[tuple[str, dict[str, str], str]]:
    # str.splitlines breaks at more characters than the runner does (\v, \f, \x1c-\x1e, NEL,
    # U+2028, U+2029 as well as CR and LF), so counting its lines is the stricter test.
    parsed = [parse_command(line) for line in output.splitlines()]
    return [command for command in parsed if command is not None]


def single(finding: Finding, *, name: str = "pkg-1.0.0.tgz", path: str = "") -> Report:
    return Report([ArtifactReport(name, path or f"dist/{name}", SHA, 100, 3, [finding])])


def test_escaping_matches_the_actions_toolkit() -> None:
    assert escape_data("100%\r\nx:y,z") == "100%25%0D%0Ax:y,z"
    assert escape_property("100%\r\nx:y,z") == "100%25%0D%0Ax%3Ay%2Cz"
    assert workflow_command("warning", {}, "m") == "::warning::m"
    assert workflow_command("error", {"file": "a,b", "line": "3"}, "m::n") == (
        "::error file=a%2Cb,line=3::m::n"
    )


def test_one_command_per_finding_then_a_summary() -> None:
    report = Report(
        [
            ArtifactReport(
                "pkg-1.0.0.tgz",
                "dist/pkg-1.0.0.tgz",
                SHA,
                100,
                3,
                [
                    Finding(
                        Rule.REFERENCE,
                        Severity.NOTICE,
                        "pkg-1.0.0.tgz!/package/cli.js",
                        "sourceMappingURL=cli.js.map: in the artifact.",
                        line=54,
                    ),
                    Finding(
                        Rule.EMBEDDED_SOURCES,
                        Severity.ERROR,
                        "pkg-1.0.0.tgz!/package/cli.js.map",
                        "3 sources, all with sourcesContent.",
                    ),
                    Finding(
                        Rule.MAP_FILE,
                        Severity.WARNING,
                        "pkg-1.0.0.tgz!/package/a.zip!/b.js.map",
                        "no sources.",
                    ),
                ],
            ),
            ArtifactReport(
                "app.js",
                "./build/app.js",
                None,
                10,
                1,
                [Finding(Rule.INLINE_MAP, Severity.WARNING, "app.js", "inline map.", line=3)],
            ),
        ]
    )
    assert render_github(report).splitlines() == [
        "::error file=dist/pkg-1.0.0.tgz,title=sourcemap/embedded-sources::"
        "package/cli.js.map: 3 sources, all with sourcesContent.",
        "::warning file=dist/pkg-1.0.0.tgz,title=sourcemap/map-file::"
        "package/a.zip!/b.js.map: no sources.",
        "::notice file=dist/pkg-1.0.0.tgz,title=sourcemap/reference::"
        "package/cli.js:54: sourceMappingURL=cli.js.map: in the artifact.",
        "::warning file=build/app.js,line=3,title=sourcemap/inline-map::inline map.",
        "release-guard: 1 error, 2 warnings, 1 notice — failure",
    ]


def test_a_line_is_given_only_for_a_file_on_disk() -> None:
    ((_, on_disk, _),) = commands(
        render_github(
            single(Finding(Rule.MAP_FILE, Severity.WARNING, "x.map", "m", 5), name="x.map")
        )
    )
    assert on_disk == {"file": "dist/x.map", "line": "5", "title": "sourcemap/map-file"}
    ((_, nested, data),) = commands(
        render_github(single(Finding(Rule.MAP_FILE, Severity.WARNING, "pkg-1.0.0.tgz!/x", "m", 5)))
    )
    assert "line" not in nested and data == "x:5: m"
    for line in (None, 0):
        ((_, properties, _),) = commands(
            render_github(
                single(Finding(Rule.MAP_FILE, Severity.WARNING, "a", "m", line), name="a")
            )
        )
        assert "line" not in properties


def test_empty_report_is_a_summary_line_alone() -> None:
    assert render_github(Report()) == "release-guard: 0 errors, 0 warnings, 0 notices — neutral\n"


@pytest.mark.parametrize(
    "hostile",
    [
        "x::error::pwned",
        "a\n::error::pwned",
        "a\r::error::pwned",
        "a\r\n::stop-commands::tok",
        "::stop-commands::tok",
        "100%0A::error::x",
        "a,line=1,title=x:y",
        "\x1b[2J\u202e\u2028::error::x\x85::error::y\x0b::error::z",
        "caf\udce9::set-output name=x::y",
    ],
)
def test_hostile_names_and_messages_cannot_add_commands(hostile: str) -> None:
    finding = Finding(Rule.FORBIDDEN, Severity.ERROR, f"{hostile}!/{hostile}", hostile, 2)
    report = Report([ArtifactReport(hostile, hostile, SHA, 1, 1, [finding])])
    output = render_github(report)
    output.encode("utf-8")
    lines = output.splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("release-guard: ")
    ((name, properties, data),) = commands(output)
    assert name == "error"
    assert properties["title"] == "files/forbidden"
    assert properties["file"] == neutralize(hostile)
    assert set(properties) == {"file", "title"}
    assert data == f"{neutralize(hostile)}:2: {neutralize(hostile, keep=chr(13) + chr(10))}"


def test_message_line_breaks_are_encoded_not_written() -> None:
    finding = Finding(Rule.INVALID_MAP, Severity.WARNING, "a.map", "line one\nline two", None)
    output = render_github(single(finding, name="a.map"))
    assert "::line one%0Aline two\n" in output
    ((_, _, data),) = commands(output)
    assert data == "line one\nline two"


@settings(max_examples=150, deadline=None)
@given(
    findings=st.lists(
        st.tuples(
            st.sampled_from(Rule),
            st.sampled_from(Severity),
            ANY_TEXT,
            ANY_TEXT,
            st.none() | st.integers(min_value=-3, max_value=10**6),
        ),
        max_size=4,
    ),
    name=ANY_TEXT,
    path=ANY_TEXT,
)
def test_any_strings_give_exactly_one_command_line_per_finding(
    findings: list[tuple[Rule, Severity, str, str, int | None]], name: str, path: str
) -> None:
    report = Report(
        [ArtifactReport(name, path, None, 0, 1, [Finding(*fields) for fields in findings])]
    )
    output = render_github(report)
    output.encode("utf-8")
    lines = output.splitlines()
    assert len(lines) == len(findings) + 1
    assert output.endswith("\n")
    parsed = commands(output)
    assert len(parsed) == len(findings)
    for line, (command, properties, _) in zip(lines, parsed, strict=False):
        assert line.startswith(f"::{command} ")
        assert command in {"error", "warning", "notice"}
        assert properties["title"] in {rule.value for rule in Rule}
        assert set(properties) <= {"file", "line", "title"}
    assert not lines[-1].lstrip().startswith("::")
