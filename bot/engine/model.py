"""Rules, severities, findings and reports: the engine's vocabulary (see CONTRACT.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Severity(StrEnum):
    """How serious a finding is; `error` fails the scan."""

    ERROR = "error"
    WARNING = "warning"
    NOTICE = "notice"


class Conclusion(StrEnum):
    """The verdict of a whole scan."""

    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"


class Rule(StrEnum):
    """The stable rule ids. Their default severities are in DEFAULT_SEVERITY."""

    EMBEDDED_SOURCES = "sourcemap/embedded-sources"
    MAP_FILE = "sourcemap/map-file"
    INLINE_MAP = "sourcemap/inline-map"
    REFERENCE = "sourcemap/reference"
    LOCAL_PATH = "sourcemap/local-path"
    INVALID_MAP = "sourcemap/invalid"
    NOT_ALLOWED = "files/not-allowed"
    FORBIDDEN = "files/forbidden"
    ARCHIVE_LIMIT = "archive/limit"
    UNSAFE_PATH = "archive/unsafe-path"


DEFAULT_SEVERITY: dict[Rule, Severity] = {
    Rule.EMBEDDED_SOURCES: Severity.ERROR,
    Rule.MAP_FILE: Severity.WARNING,
    Rule.INLINE_MAP: Severity.WARNING,
    Rule.REFERENCE: Severity.NOTICE,
    Rule.LOCAL_PATH: Severity.WARNING,
    Rule.INVALID_MAP: Severity.WARNING,
    Rule.NOT_ALLOWED: Severity.ERROR,
    Rule.FORBIDDEN: Severity.ERROR,
    Rule.ARCHIVE_LIMIT: Severity.ERROR,
    Rule.UNSAFE_PATH: Severity.ERROR,
}

RULE_SUMMARY: dict[Rule, str] = {
    Rule.EMBEDDED_SOURCES: "A shipped source map embeds original source text (sourcesContent).",
    Rule.MAP_FILE: "A .map file is shipped without embedded sources.",
    Rule.INLINE_MAP: "A JS/CSS file carries an inline data: source map.",
    Rule.REFERENCE: "A sourceMappingURL pragma points at an external map.",
    Rule.LOCAL_PATH: "A source map reveals absolute local paths.",
    Rule.INVALID_MAP: "A source map does not parse.",
    Rule.NOT_ALLOWED: "A file outside the configured allowlist.",
    Rule.FORBIDDEN: "A file on the deny list (env files, keys, credentials, VCS folders).",
    Rule.ARCHIVE_LIMIT: (
        "A safety limit was reached or the archive could not be read: fails closed."
    ),
    Rule.UNSAFE_PATH: "An absolute, parent-traversing, duplicate, device or link entry.",
}


@dataclass(frozen=True, slots=True)
class Observation:
    """What a check saw, before policy gives it a severity (or switches it off).

    `path` is the display path: the artifact's own name, then each nested archive's inner
    path, joined with `!/` (CONTRACT.md). `line` is 1-based when the check knows it.
    """

    rule: Rule
    path: str
    message: str
    line: int | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """An observation with the severity the policy gave its rule."""

    rule: Rule
    severity: Severity
    path: str
    message: str
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.value,
            "severity": self.severity.value,
            "path": self.path,
            "line": self.line,
            "message": self.message,
        }


@dataclass(slots=True)
class ArtifactReport:
    """The findings for one artifact (a file, a directory or a downloaded archive)."""

    name: str
    path: str
    sha256: str | None
    size: int
    files: int
    findings: list[Finding] = field(default_factory=list)
    scanned: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "sha256": self.sha256,
            "size": self.size,
            "files": self.files,
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(slots=True)
class Report:
    """A whole scan: every artifact, the summary counts and the conclusion."""

    artifacts: list[ArtifactReport] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return [f for a in self.artifacts for f in a.findings]

    @property
    def summary(self) -> dict[str, int]:
        counts = {s.value: 0 for s in Severity}
        for f in self.findings:
            counts[f.severity.value] += 1
        return counts

    def findings_by_rule(self) -> dict[str, int]:
        """Count the findings per rule id (what a handler passes in its reporting audit)."""
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.rule.value] = counts.get(finding.rule.value, 0) + 1
        return counts

    @property
    def conclusion(self) -> Conclusion:
        if any(f.severity is Severity.ERROR for f in self.findings):
            return Conclusion.FAILURE
        if not any(a.scanned for a in self.artifacts):
            return Conclusion.NEUTRAL
        return Conclusion.SUCCESS

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "conclusion": self.conclusion.value,
            "summary": self.summary,
            "artifacts": [a.to_dict() for a in self.artifacts],
        }


class ByteStream(Protocol):
    """What the engine reads an entry through: `read(size)` returns at most `size` bytes, b"" at
    the end, and may raise `bot.errors.LimitReached` (which checks must let through)."""

    def read(self, size: int = -1, /) -> bytes: ...


class EntryKind(StrEnum):
    FILE = "file"
    ARCHIVE = "archive"


@dataclass(slots=True)
class Entry:
    """One member that the archive walker found, at any nesting depth.

    - `path`: display path, the artifact's name first: `art.zip!/pkg-1.0.0.tgz!/package/cli.js`.
    - `logical_path`: the same without the artifact's own name: `pkg-1.0.0.tgz!/package/cli.js`
      (for a lone file: its name). Allow and deny lists match against it.
    - `inner_path`: the path inside its innermost container, `/`-separated, normalised:
      `package/cli.js`.
    - `depth`: 0 for members of the artifact itself, 1 inside a nested archive, …
    - `kind`: FILE, or ARCHIVE for a nested archive that the walker descends into right after
      yielding it (its members follow); an ARCHIVE has no stream.
    - `stream`: the member's decompressed bytes, readable once, valid only until the walker is
      asked for its next item. Reading it counts against the limits and may raise
      `LimitReached`; the walker turns that into an `archive/limit` observation.
    """

    path: str
    logical_path: str
    inner_path: str
    depth: int
    kind: EntryKind
    stream: ByteStream | None = None
