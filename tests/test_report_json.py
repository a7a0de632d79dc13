"""The JSON report: CONTRACT.md's document, written so that no name can break it."""

from __future__ import annotations

import json
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.engine.model import ArtifactReport, Finding, Report, Rule, Severity
from bot.report.json_report import json_text, render_json

SHA = "0" * 63 + "1"
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)
"""Any code points at all, lone surrogates and controls included."""


def contract_example() -> Report:
    return Report(
        artifacts=[
            ArtifactReport(
                name="npm-package",
                path="dist/pkg-1.0.0.tgz",
                sha256=SHA,
                size=123,
                files=20,
                findings=[
                    Finding(
                        Rule.EMBEDDED_SOURCES,
                        Severity.ERROR,
                        "pkg-1.0.0.tgz!/package/cli.js.map",
                        "3 sources, all with sourcesContent.",
                    ),
                    Finding(
                        Rule.REFERENCE,
                        Severity.NOTICE,
                        "pkg-1.0.0.tgz!/package/cli.js",
                        "sourceMappingURL=cli.js.map: in the artifact.",
                        line=54,
                    ),
                ],
            )
        ]
    )


def test_contract_document_shape_and_key_order() -> None:
    text = render_json(contract_example())
    document = json.loads(text)
    assert list(document) == ["version", "conclusion", "summary", "artifacts"]
    assert document["version"] == 1
    assert document["conclusion"] == "failure"
    assert document["summary"] == {"error": 1, "warning": 0, "notice": 1}
    (artifact,) = document["artifacts"]
    assert list(artifact) == ["name", "path", "sha256", "size", "files", "findings"]
    assert artifact["path"] == "dist/pkg-1.0.0.tgz"
    first, second = artifact["findings"]
    assert list(first) == ["rule", "severity", "path", "line", "message"]
    assert first == {
        "rule": "sourcemap/embedded-sources",
        "severity": "error",
        "path": "pkg-1.0.0.tgz!/package/cli.js.map",
        "line": None,
        "message": "3 sources, all with sourcesContent.",
    }
    assert second["line"] == 54
    assert document == contract_example().to_dict()


def test_output_is_indented_and_ends_with_one_newline() -> None:
    text = render_json(contract_example())
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert text.startswith('{\n  "version": 1,\n')


def test_every_severity_is_counted() -> None:
    findings = [
        Finding(Rule.FORBIDDEN, Severity.ERROR, "a.zip!/.env", "forbidden"),
        Finding(Rule.MAP_FILE, Severity.WARNING, "a.zip!/x.js.map", "map"),
        Finding(Rule.LOCAL_PATH, Severity.WARNING, "a.zip!/y.js.map", "local path", line=1),
        Finding(Rule.REFERENCE, Severity.NOTICE, "a.zip!/x.js", "ref", line=9),
    ]
    report = Report([ArtifactReport("a.zip", "a.zip", SHA, 10, 4, findings)])
    document = json.loads(render_json(report))
    assert document["summary"] == {"error": 1, "warning": 2, "notice": 1}
    assert [f["severity"] for f in document["artifacts"][0]["findings"]] == [
        "error",
        "warning",
        "warning",
        "notice",
    ]


def test_empty_report_is_neutral() -> None:
    assert json.loads(render_json(Report())) == {
        "version": 1,
        "conclusion": "neutral",
        "summary": {"error": 0, "warning": 0, "notice": 0},
        "artifacts": [],
    }


def test_nothing_scanned_is_neutral_and_warnings_alone_succeed() -> None:
    unscanned = ArtifactReport("empty.zip", "empty.zip", SHA, 22, 0, scanned=False)
    assert json.loads(render_json(Report([unscanned])))["conclusion"] == "neutral"
    warned = ArtifactReport(
        "a.tgz", "a.tgz", SHA, 1, 1, [Finding(Rule.MAP_FILE, Severity.WARNING, "a.tgz!/m", "m")]
    )
    assert json.loads(render_json(Report([warned])))["conclusion"] == "success"


def test_lone_surrogates_are_escaped_and_round_trip() -> None:
    name = "caf\udce9.js.map"  # b"caf\xe9.js.map" decoded with surrogateescape
    finding = Finding(Rule.MAP_FILE, Severity.WARNING, f"a.zip!/{name}", f"bad \ud800 {name}")
    report = Report([ArtifactReport("a.zip", "a.zip", SHA, 1, 1, [finding])])
    text = render_json(report)
    text.encode("utf-8")  # what the CLI does with it; must not raise
    assert "\\udce9" in text and "\\ud800" in text
    assert json.loads(text) == report.to_dict()


def test_terminal_unsafe_characters_are_escaped_and_round_trip() -> None:
    hostile = "\x1b[2J\x7f\x9b31m\u202egnp.exe\u2028\u2029\x85\ufeff\U000e0001"
    finding = Finding(Rule.FORBIDDEN, Severity.ERROR, f"a.zip!/{hostile}", hostile)
    report = Report([ArtifactReport("a.zip", "a.zip", SHA, 1, 1, [finding])])
    text = render_json(report)
    for char in text:
        assert char == "\n" or unicodedata.category(char) not in {"Cc", "Cf", "Zl", "Zp", "Cs"}
    assert "\\u009b" in text and "\\u202e" in text and "\\udb40\\udc01" in text
    assert json.loads(text) == report.to_dict()


def test_readable_non_ascii_stays_raw() -> None:
    text = json_text({"name": "résumé 日本 🙂", "tab": "a\tb"})
    assert "résumé 日本 🙂" in text
    assert "a\\tb" in text


@settings(max_examples=150, deadline=None)
@given(
    name=ANY_TEXT,
    path=ANY_TEXT,
    message=ANY_TEXT,
    line=st.none() | st.integers(min_value=-5, max_value=10**9),
    severity=st.sampled_from(Severity),
    rule=st.sampled_from(Rule),
)
def test_any_strings_give_valid_json_that_round_trips(
    name: str, path: str, message: str, line: int | None, severity: Severity, rule: Rule
) -> None:
    finding = Finding(rule, severity, path, message, line)
    report = Report([ArtifactReport(name, path, None, 0, 1, [finding])])
    text = render_json(report)
    text.encode("utf-8")
    assert text.endswith("\n")
    # Compared with the stdlib's ASCII-only encoding, not with the dict itself: a high surrogate
    # followed by a low one cannot stay two code points in any JSON text, parsers pair them.
    assert json.loads(text) == json.loads(json.dumps(report.to_dict()))
