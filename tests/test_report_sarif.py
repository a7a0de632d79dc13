"""SARIF 2.1.0 output, validated against the official OASIS schema (tests/schemas/)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bot
from bot.engine.model import (
    DEFAULT_SEVERITY,
    RULE_SUMMARY,
    ArtifactReport,
    Finding,
    Report,
    Rule,
    Severity,
)
from bot.report import sarif
from bot.report.sarif import artifact_location, render_sarif, sarif_document

SCHEMA_PATH = Path(__file__).parent / "schemas" / "sarif-schema-2.1.0.json"
SCHEMA_SHA256 = "c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
SHA = "ab" * 32
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)

# RFC 3986: the characters a URI may hold, percent-escapes, and a scheme.
_URI_CHARS = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def _is_uri_reference(value: object) -> bool:
    """Check RFC 3986 URI-reference syntax (jsonschema needs an extra package for it)."""
    if not isinstance(value, str):
        return True
    if not _URI_CHARS.fullmatch(value):
        return False
    if _SCHEME.match(value):
        return True
    # A relative reference: its first segment must not contain ":" (it would read as a scheme).
    return ":" not in value.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]


def _is_uri(value: object) -> bool:
    return not isinstance(value, str) or (_is_uri_reference(value) and bool(_SCHEME.match(value)))


FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("uri")(_is_uri)
FORMATS.checks("uri-reference")(_is_uri_reference)
# The file declares draft-04; validating with draft-07 as well costs nothing (its refs are local).
VALIDATORS = [
    jsonschema.validators.validator_for(SCHEMA)(SCHEMA, format_checker=FORMATS),
    jsonschema.Draft7Validator(SCHEMA, format_checker=FORMATS),
]


def assert_valid(text: str) -> dict[str, Any]:
    text.encode("utf-8")
    document: dict[str, Any] = json.loads(text)
    for validator in VALIDATORS:
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]
    return document


def one_result(report: Report) -> dict[str, Any]:
    (result,) = assert_valid(render_sarif(report))["runs"][0]["results"]
    assert isinstance(result, dict)
    return result


def single(finding: Finding, *, name: str = "pkg-1.0.0.tgz", path: str = "") -> Report:
    return Report([ArtifactReport(name, path or f"dist/{name}", SHA, 100, 3, [finding])])


def sample_report() -> Report:
    return Report(
        [
            ArtifactReport(
                "pkg-1.0.0.tgz",
                "dist/pkg-1.0.0.tgz",
                SHA,
                1234,
                4,
                [
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
                    Finding(
                        Rule.LOCAL_PATH,
                        Severity.WARNING,
                        "pkg-1.0.0.tgz!/package/vendor.zip!/lib/x.js.map",
                        "sources reveal /home/dev/src.",
                    ),
                ],
            ),
            ArtifactReport(
                "app.js",
                "./build/app.js",
                None,
                10,
                1,
                [Finding(Rule.INLINE_MAP, Severity.WARNING, "app.js", "inline map", line=3)],
            ),
        ]
    )


def test_vendored_schema_is_the_recorded_official_file() -> None:
    assert hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert SCHEMA["id"].endswith("/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json")
    for validator in VALIDATORS:
        type(validator).check_schema(SCHEMA)


def test_the_validator_catches_what_code_scanning_would_reject() -> None:
    bad_level = sarif_document(sample_report())
    bad_level["runs"][0]["results"][0]["level"] = "notice"
    with pytest.raises(AssertionError, match="'notice' is not one of"):
        assert_valid(json.dumps(bad_level))
    bad_uri = sarif_document(sample_report())
    location = bad_uri["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    location["artifactLocation"]["uri"] = "a b.tgz!/x"
    with pytest.raises(AssertionError, match="uri-reference"):
        assert_valid(json.dumps(bad_uri))


def test_sample_report_is_valid_and_complete() -> None:
    document = assert_valid(render_sarif(sample_report()))
    assert document["version"] == "2.1.0"
    assert document["$schema"] == sarif.SARIF_SCHEMA_URI
    (run,) = document["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "release-guard"
    assert driver["version"] == bot.__version__
    assert len(run["results"]) == 4
    assert run["invocations"] == [
        {
            "executionSuccessful": True,
            "properties": {
                "conclusion": "failure",
                "summary": {"error": 1, "warning": 2, "notice": 1},
            },
        }
    ]
    assert [a["location"]["uri"] for a in run["artifacts"]] == [
        "dist/pkg-1.0.0.tgz",
        "build/app.js",
    ]
    assert run["artifacts"][0]["hashes"] == {"sha-256": SHA}
    assert "hashes" not in run["artifacts"][1]


def test_rules_list_every_rule_with_its_default_level() -> None:
    rules = sarif_document(Report())["runs"][0]["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [rule.value for rule in Rule]
    expected_level = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.NOTICE: "note"}
    for descriptor, rule in zip(rules, Rule, strict=True):
        assert descriptor["shortDescription"]["text"] == RULE_SUMMARY[rule]
        assert descriptor["defaultConfiguration"]["level"] == expected_level[DEFAULT_SEVERITY[rule]]
        assert descriptor["fullDescription"]["text"].startswith(RULE_SUMMARY[rule])
        assert descriptor["help"]["text"]
        assert len(descriptor["shortDescription"]["text"]) <= 1024


@pytest.mark.parametrize(
    ("severity", "level"),
    [(Severity.ERROR, "error"), (Severity.WARNING, "warning"), (Severity.NOTICE, "note")],
)
def test_each_severity_maps_to_a_level_and_rule_index(severity: Severity, level: str) -> None:
    document = sarif_document(
        single(Finding(Rule.UNSAFE_PATH, severity, "pkg-1.0.0.tgz!/../x", "parent traversal"))
    )
    (result,) = document["runs"][0]["results"]
    assert result["level"] == level
    rules = document["runs"][0]["tool"]["driver"]["rules"]
    assert rules[result["ruleIndex"]]["id"] == result["ruleId"] == "archive/unsafe-path"


def test_member_of_an_archive_points_at_the_archive_file() -> None:
    result = one_result(
        single(
            Finding(
                Rule.EMBEDDED_SOURCES,
                Severity.ERROR,
                "pkg-1.0.0.tgz!/package/cli.js.map",
                "3 sources, all with sourcesContent.",
            )
        )
    )
    (location,) = result["locations"]
    assert location["physicalLocation"] == {
        "artifactLocation": {"uri": "dist/pkg-1.0.0.tgz", "uriBaseId": "%SRCROOT%"}
    }
    assert location["logicalLocations"] == [
        {"name": "package/cli.js.map", "fullyQualifiedName": "pkg-1.0.0.tgz!/package/cli.js.map"}
    ]
    assert result["message"]["text"] == "package/cli.js.map: 3 sources, all with sourcesContent."
    assert result["properties"]["member"] == "package/cli.js.map"
    assert "line" not in result["properties"]


def test_a_line_inside_a_member_is_not_a_line_of_the_archive() -> None:
    result = one_result(
        single(
            Finding(
                Rule.REFERENCE,
                Severity.NOTICE,
                "pkg-1.0.0.tgz!/package/inner.zip!/dist/index.js",
                "sourceMappingURL=index.js.map: missing.",
                line=54,
            )
        )
    )
    physical = result["locations"][0]["physicalLocation"]
    assert "region" not in physical
    assert physical["artifactLocation"]["uri"] == "dist/pkg-1.0.0.tgz"
    assert result["message"]["text"].startswith("package/inner.zip!/dist/index.js:54: ")
    assert result["properties"]["line"] == 54


def test_a_file_on_disk_gets_a_region_only_with_a_known_line() -> None:
    with_line = one_result(
        single(Finding(Rule.INLINE_MAP, Severity.WARNING, "app.js", "inline", 3), name="app.js")
    )
    physical = with_line["locations"][0]["physicalLocation"]
    assert physical["region"] == {"startLine": 3}
    assert physical["artifactLocation"]["uri"] == "dist/app.js"
    assert "logicalLocations" not in with_line["locations"][0]
    assert with_line["message"]["text"] == "inline"

    for line in (None, 0, -1):
        result = one_result(
            single(
                Finding(Rule.MAP_FILE, Severity.WARNING, "a.js.map", "map", line), name="a.js.map"
            )
        )
        assert "region" not in result["locations"][0]["physicalLocation"]


def test_member_of_a_directory_artifact_is_its_own_file() -> None:
    finding = Finding(Rule.MAP_FILE, Severity.WARNING, "dist/js/app.js.map", "map file", 1)
    report = Report([ArtifactReport("dist", "build/dist", None, 5, 2, [finding])])
    physical = one_result(report)["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"]["uri"] == "build/dist/js/app.js.map"
    assert physical["region"] == {"startLine": 1}


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("dist/pkg-1.0.0.tgz", {"uri": "dist/pkg-1.0.0.tgz", "uriBaseId": "%SRCROOT%"}),
        ("dist/a b#c?d%e.tgz", {"uri": "dist/a%20b%23c%3Fd%25e.tgz", "uriBaseId": "%SRCROOT%"}),
        ("c:x.tgz", {"uri": "c%3Ax.tgz", "uriBaseId": "%SRCROOT%"}),
        ("café.zip", {"uri": "caf%C3%A9.zip", "uriBaseId": "%SRCROOT%"}),
        ("caf\udce9.zip", {"uri": "caf%E9.zip", "uriBaseId": "%SRCROOT%"}),
        ("/srv/out/pkg.tgz", {"uri": "file:///srv/out/pkg.tgz"}),
        ("C:/work/pkg.tgz", {"uri": "file:///C:/work/pkg.tgz"}),
        ("", {"uri": ".", "uriBaseId": "%SRCROOT%"}),
    ],
)
def test_artifact_locations_are_uri_references(path: str, expected: dict[str, str]) -> None:
    location = artifact_location(path)
    assert location == expected
    assert _is_uri_reference(location["uri"])


def test_hostile_names_give_valid_sarif_and_visible_text() -> None:
    hostile = "x::error::pwned\n::warning::y\r\x1b[2J%0A\u202e\udcff,a:b.js"
    finding = Finding(Rule.FORBIDDEN, Severity.ERROR, f"p\ttgz!/{hostile}", f"msg {hostile}", 7)
    report = Report([ArtifactReport("p\ttgz", f"out/{hostile}/p\ttgz", SHA, 1, 1, [finding])])
    document = assert_valid(render_sarif(report))
    (result,) = document["runs"][0]["results"]
    text = result["message"]["text"]
    assert "\x1b" not in text and "\u202e" not in text and "\r" not in text
    assert "\\x1b[2J" in text and "\\u202e" in text and "\\udcff" in text
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri.startswith("out/x%3A%3Aerror%3A%3Apwned%0A") and uri.endswith("/p%09tgz")


def test_an_empty_message_falls_back_to_the_rule_summary() -> None:
    result = one_result(single(Finding(Rule.INVALID_MAP, Severity.WARNING, "pkg-1.0.0.tgz", "")))
    assert result["message"]["text"] == RULE_SUMMARY[Rule.INVALID_MAP]


def _fingerprints(report: Report) -> list[str]:
    return [
        r["partialFingerprints"]["primaryLocationLineHash"]
        for r in sarif_document(report)["runs"][0]["results"]
    ]


def test_fingerprints_are_stable_and_ignore_line_and_message() -> None:
    first = _fingerprints(single(Finding(Rule.REFERENCE, Severity.NOTICE, "p!/a.js", "x", 54)))
    again = _fingerprints(single(Finding(Rule.REFERENCE, Severity.NOTICE, "p!/a.js", "y", 99)))
    assert first == again
    assert re.fullmatch(r"[0-9a-f]{32}:1", first[0])
    other_rule = _fingerprints(single(Finding(Rule.INLINE_MAP, Severity.NOTICE, "p!/a.js", "x")))
    other_path = _fingerprints(single(Finding(Rule.REFERENCE, Severity.NOTICE, "p!/b.js", "x")))
    assert len({first[0], other_rule[0], other_path[0]}) == 3


def test_repeated_rule_and_path_are_numbered_in_display_order() -> None:
    findings = [
        Finding(Rule.LOCAL_PATH, Severity.WARNING, "p!/a.js.map", "/home/b", 2),
        Finding(Rule.LOCAL_PATH, Severity.WARNING, "p!/a.js.map", "/home/a", 1),
        Finding(Rule.MAP_FILE, Severity.WARNING, "p!/a.js.map", "map"),
    ]
    results = sarif_document(Report([ArtifactReport("p", "p", SHA, 1, 1, findings)]))["runs"][0][
        "results"
    ]
    prints = {
        r["message"]["text"]: r["partialFingerprints"]["primaryLocationLineHash"].rsplit(":", 1)
        for r in results
    }
    first, second, other = (
        prints["a.js.map:1: /home/a"],
        prints["a.js.map:2: /home/b"],
        prints["a.js.map: map"],
    )
    assert first[0] == second[0] != other[0]
    assert (first[1], second[1], other[1]) == ("1", "2", "1")


def test_empty_and_unscanned_reports_are_valid_and_say_so() -> None:
    empty = assert_valid(render_sarif(Report()))["runs"][0]
    assert empty["results"] == []
    assert "artifacts" not in empty
    (invocation,) = empty["invocations"]
    assert invocation["executionSuccessful"] is True
    assert invocation["properties"]["conclusion"] == "neutral"
    assert invocation["toolExecutionNotifications"][0]["level"] == "warning"

    unscanned = ArtifactReport("blob.bin", "blob.bin", SHA, 3, 0, scanned=False)
    run = assert_valid(render_sarif(Report([unscanned])))["runs"][0]
    (notification,) = run["invocations"][0]["toolExecutionNotifications"]
    assert notification["message"]["text"] == "blob.bin: nothing could be scanned"
    assert run["invocations"][0]["properties"]["conclusion"] == "neutral"


def test_the_same_artifact_twice_is_described_once() -> None:
    artifact = ArtifactReport("a.tgz", "a.tgz", SHA, 1, 1)
    run = assert_valid(render_sarif(Report([artifact, artifact])))["runs"][0]
    assert len(run["artifacts"]) == 1


def test_information_uri_is_used_when_the_distribution_declares_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    found = sarif.information_uri()
    assert found is None or found.startswith(("https://", "http://"))
    monkeypatch.setattr(sarif, "information_uri", lambda: "https://example.org/release-guard")
    document = assert_valid(render_sarif(Report()))
    assert document["runs"][0]["tool"]["driver"]["informationUri"] == (
        "https://example.org/release-guard"
    )


@settings(max_examples=100, deadline=None)
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
def test_any_strings_give_schema_valid_sarif(
    findings: list[tuple[Rule, Severity, str, str, int | None]], name: str, path: str
) -> None:
    report = Report(
        [ArtifactReport(name, path, None, 0, 1, [Finding(*fields) for fields in findings])]
    )
    document = assert_valid(render_sarif(report))
    results = document["runs"][0]["results"]
    assert len(results) == len(findings)
    for result in results:
        assert result["message"]["text"]
        assert result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
