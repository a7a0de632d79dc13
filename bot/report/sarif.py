"""Render the scan report as SARIF 2.1.0 for GitHub code scanning.

What GitHub reads is documented in "SARIF support for code scanning" (docs.github.com); the
choices below follow it.

Locations. A finding inside an archive (``dist/pkg.tgz`` → ``pkg.tgz!/package/cli.js.map``)
has no file of its own that code scanning could open, and ``!/`` is no URI syntax it
understands. So:

- ``physicalLocation.artifactLocation.uri`` is the file on disk: the artifact's path as given on
  the command line, re-rooted for members of a directory artifact (`bot.report.locations`). A
  relative path is written as a percent-encoded relative URI with ``uriBaseId`` ``%SRCROOT%``:
  code scanning resolves relative URIs against the repository root, which is where a workflow
  runs ``release-guard scan``. An absolute path becomes a ``file://`` URI, which code scanning
  turns into a repository path using the checkout path.
- The member path goes into the message text (``package/cli.js.map: …``, first, because code
  scanning shows only the first sentence when space is short), into
  ``locations[0].logicalLocations`` (``name`` the member path, ``fullyQualifiedName`` the whole
  display path) and into the result's ``properties`` bag.
- ``region.startLine`` is given only when the line is a line of that file on disk. A line in an
  archive member is a line of the member, not of the archive, so it goes into the message
  (``package/cli.js:54: …``) and ``properties.line`` instead.

Fingerprints. ``partialFingerprints.primaryLocationLineHash`` (the only key code scanning uses)
is a hash of the rule id and the display path, plus ``:N`` counting repeats of the same pair,
as GitHub's upload action does for its own hashes. The line number is left out on purpose: a
``sourceMappingURL`` pragma or a config error moves from build to build, and the same problem
should stay one alert.

Text. Messages and paths come from the archives being scanned, so everything shown as text
goes through `neutralize`; the URI is percent-encoded from the name's original bytes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import re
from collections import Counter
from typing import Any, Final
from urllib.parse import quote

from bot import __version__
from bot.engine.model import (
    DEFAULT_SEVERITY,
    RULE_SUMMARY,
    ArtifactReport,
    Finding,
    Report,
    Rule,
    Severity,
)
from bot.report.json_report import json_text
from bot.report.locations import FindingLocation, locate, tidy_path
from bot.report.text import neutralize, ordered_findings

SARIF_VERSION: Final = "2.1.0"
SARIF_SCHEMA_URI: Final = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
TOOL_NAME: Final = "release-guard"
SOURCE_ROOT: Final = "%SRCROOT%"
"""The ``uriBaseId`` of relative URIs: the root of the checked-out repository."""
DISTRIBUTION: Final = "release-guard"

LEVEL: Final[dict[Severity, str]] = {
    Severity.ERROR: "error",
    Severity.WARNING: "warning",
    Severity.NOTICE: "note",
}
RULES: Final[tuple[Rule, ...]] = tuple(Rule)
"""``tool.driver.rules`` in this order; a result's ``ruleIndex`` points into it."""
_RULE_INDEX: Final = {rule: index for index, rule in enumerate(RULES)}

_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")
_FINGERPRINT_HEX = 32


@functools.cache
def information_uri() -> str | None:
    """Return the project's home page from the installed distribution's metadata, if any.

    SARIF wants an absolute URI here, and the right one is wherever the project is published:
    `pyproject.toml`'s ``[project.urls]`` says so, not this module. Without one (a source
    checkout that is not installed, or no URL declared) the property is left out.
    """
    try:
        metadata = importlib.metadata.metadata(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    # "Project-URL: Homepage, https://…" entries first, then the older "Home-page" field.
    candidates = [str(entry).partition(",")[2] for entry in metadata.get_all("Project-URL") or []]
    candidates.extend(str(entry) for entry in metadata.get_all("Home-page") or [])
    for candidate in candidates:
        url = candidate.strip()
        if url.startswith(("https://", "http://")):
            return url
    return None


def _pascal_case(identifier: str) -> str:
    return "".join(part.capitalize() for part in identifier.lower().split("_"))


def _rule_descriptor(rule: Rule) -> dict[str, Any]:
    summary = RULE_SUMMARY[rule]
    default = DEFAULT_SEVERITY[rule]
    configure = (
        f"release-guard reports it as {default.value} by default; a repository can change its "
        "severity or switch it off in .github/release-guard.yml."
    )
    return {
        "id": rule.value,
        "name": _pascal_case(rule.name),
        "shortDescription": {"text": summary},
        "fullDescription": {"text": f"{summary} {configure}"},
        "help": {"text": f"{rule.value}: {summary}\n\n{configure}"},
        "defaultConfiguration": {"level": LEVEL[default]},
        "properties": {"tags": ["security", rule.value.partition("/")[0]]},
    }


def _uri_bytes(text: str) -> bytes:
    """Encode `text` as UTF-8, giving lone surrogates back the bytes they stand for.

    A name that was not valid UTF-8 was decoded with ``surrogateescape`` (U+DC80 to U+DCFF for the
    bytes 0x80 to 0xFF); encoding it back the same way restores the original bytes. Any other lone
    surrogate can only be written in its (ill-formed) UTF-8 form.
    """
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return b"".join(
            char.encode(
                "utf-8", "surrogateescape" if "\udc80" <= char <= "\udcff" else "surrogatepass"
            )
            for char in text
        )


def artifact_location(file: str) -> dict[str, str]:
    """Return the SARIF ``artifactLocation`` of a ``/``-separated path on disk.

    See the module docstring; `bot.report.locations.locate` gives such paths.
    """
    if _WINDOWS_DRIVE.match(file):
        return {"uri": "file:///" + quote(_uri_bytes(file.replace("\\", "/")), safe="/:")}
    if file.startswith("/"):
        return {"uri": "file://" + quote(_uri_bytes(file), safe="/")}
    # `safe="/"` also percent-encodes ":", so a first segment such as "c:x" cannot be read as
    # a URI scheme.
    return {"uri": quote(_uri_bytes(file or "."), safe="/"), "uriBaseId": SOURCE_ROOT}


def _fingerprint_base(finding: Finding) -> str:
    digest = hashlib.sha256()
    for part in (finding.rule.value, finding.path):
        digest.update(part.encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()[:_FINGERPRINT_HEX]


def _message(finding: Finding, where: FindingLocation) -> str:
    message = neutralize(finding.message, keep="\n") or RULE_SUMMARY[finding.rule]
    label = where.member_label
    return message if label is None else f"{neutralize(label)}: {message}"


def _result(artifact: ArtifactReport, finding: Finding, fingerprint: str) -> dict[str, Any]:
    where = locate(artifact, finding)
    physical: dict[str, Any] = {"artifactLocation": artifact_location(where.file)}
    if where.file_line is not None:
        physical["region"] = {"startLine": where.file_line}
    location: dict[str, Any] = {"physicalLocation": physical}
    properties: dict[str, Any] = {
        "path": neutralize(finding.path),
        "artifact": neutralize(artifact.name),
    }
    if where.member is not None:
        location["logicalLocations"] = [
            {"name": neutralize(where.member), "fullyQualifiedName": neutralize(finding.path)}
        ]
        properties["member"] = neutralize(where.member)
        if where.line is not None:
            properties["line"] = where.line
    return {
        "ruleId": finding.rule.value,
        "ruleIndex": _RULE_INDEX[finding.rule],
        "level": LEVEL[finding.severity],
        "message": {"text": _message(finding, where)},
        "locations": [location],
        "partialFingerprints": {"primaryLocationLineHash": fingerprint},
        "properties": properties,
    }


def _results(report: Report) -> list[dict[str, Any]]:
    seen: Counter[str] = Counter()
    results = []
    for artifact in report.artifacts:
        for finding in ordered_findings(artifact):
            base = _fingerprint_base(finding)
            seen[base] += 1
            results.append(_result(artifact, finding, f"{base}:{seen[base]}"))
    return results


def _artifacts(report: Report) -> list[dict[str, Any]]:
    """Describe each scanned artifact once (the schema wants `run.artifacts` unique)."""
    described: dict[str, dict[str, Any]] = {}
    for artifact in report.artifacts:
        location = artifact_location(tidy_path(artifact.path or artifact.name))
        entry: dict[str, Any] = {
            "location": location,
            "length": artifact.size,
            "roles": ["analysisTarget"],
        }
        if artifact.sha256:
            entry["hashes"] = {"sha-256": artifact.sha256}
        described.setdefault(location["uri"], entry)
    return list(described.values())


def _invocation(report: Report) -> dict[str, Any]:
    """The scan ran to the end (input it could not read stops the CLI before any report).

    An artifact with nothing in it that could be scanned is a tool notification, and the
    report's own verdict is kept in the properties bag.
    """
    invocation: dict[str, Any] = {"executionSuccessful": True}
    notifications = [
        {
            "level": "warning",
            "message": {"text": f"{neutralize(artifact.name)}: nothing could be scanned"},
        }
        for artifact in report.artifacts
        if not artifact.scanned
    ]
    if not report.artifacts:
        notifications.append({"level": "warning", "message": {"text": "no artifacts"}})
    if notifications:
        invocation["toolExecutionNotifications"] = notifications
    invocation["properties"] = {
        "conclusion": report.conclusion.value,
        "summary": report.summary,
    }
    return invocation


def sarif_document(report: Report) -> dict[str, Any]:
    """Return `report` as a SARIF 2.1.0 log: one run, every rule, one result per finding."""
    driver: dict[str, Any] = {"name": TOOL_NAME, "version": __version__}
    uri = information_uri()
    if uri is not None:
        driver["informationUri"] = uri
    driver["rules"] = [_rule_descriptor(rule) for rule in RULES]
    run: dict[str, Any] = {
        "tool": {"driver": driver},
        "invocations": [_invocation(report)],
        "artifacts": _artifacts(report),
        "results": _results(report),
    }
    if not run["artifacts"]:
        del run["artifacts"]
    return {"$schema": SARIF_SCHEMA_URI, "version": SARIF_VERSION, "runs": [run]}


def render_sarif(report: Report) -> str:
    """Render `report` as SARIF 2.1.0 JSON text for GitHub code scanning."""
    return json_text(sarif_document(report))
