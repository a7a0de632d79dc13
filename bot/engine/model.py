"""Rules, severities, findings and reports: the engine's vocabulary (see CONTRACT.md)."""

from __future__ import annotations

from collections.abc import Mapping
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
    SECRET_GITHUB = "secrets/github-token"
    SECRET_NPM = "secrets/npm-token"
    SECRET_AWS = "secrets/aws-access-key"
    SECRET_PRIVATE_KEY = "secrets/private-key"
    SECRET_SLACK = "secrets/slack-token"
    SECRET_STRIPE = "secrets/stripe-key"
    SECRET_GOOGLE = "secrets/google-api-key"
    SECRET_OPENAI = "secrets/openai-key"
    SECRET_ANTHROPIC = "secrets/anthropic-key"
    SECRET_GITLAB = "secrets/gitlab-token"
    SECRET_PYPI = "secrets/pypi-token"
    SECRET_SENDGRID = "secrets/sendgrid-key"
    SECRET_SHOPIFY = "secrets/shopify-token"
    SECRET_HUGGINGFACE = "secrets/huggingface-token"

    @property
    def is_secret(self) -> bool:
        return self.value.startswith("secrets/")


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
    **{rule: Severity.ERROR for rule in Rule if rule.is_secret},
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
    Rule.SECRET_GITHUB: "A GitHub token (ghp_, gho_, ghu_, ghs_, ghr_, github_pat_) in a file.",
    Rule.SECRET_NPM: "An npm access token (npm_) in a file.",
    Rule.SECRET_AWS: "An AWS access key id with its secret access key in a file.",
    Rule.SECRET_PRIVATE_KEY: "A PEM or OpenSSH private key block in a file.",
    Rule.SECRET_SLACK: "A Slack token or incoming webhook URL in a file.",
    Rule.SECRET_STRIPE: "A Stripe live secret or restricted key in a file.",
    Rule.SECRET_GOOGLE: "A Google API key or OAuth client secret in a file.",
    Rule.SECRET_OPENAI: "An OpenAI API key in a file.",
    Rule.SECRET_ANTHROPIC: "An Anthropic API key in a file.",
    Rule.SECRET_GITLAB: "A GitLab token (glpat-, gldt-, glrt-) in a file.",
    Rule.SECRET_PYPI: "A PyPI API token in a file.",
    Rule.SECRET_SENDGRID: "A SendGrid API key in a file.",
    Rule.SECRET_SHOPIFY: "A Shopify access token or shared secret in a file.",
    Rule.SECRET_HUGGINGFACE: "A Hugging Face access token in a file.",
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
    ceiling: Severity | None = None
    """The most severe the finding may be, whatever the rule's severity (a documented example
    secret is at most a notice); None leaves the rule's severity."""
    fail_closed: bool = False
    """An error whatever severity the policy gives the rule: the check could not rule out
    what the rule guards against (a map that may carry sources it could not read)."""


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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArtifactReport:
        """The report `to_dict` gave (plus `scanned`); ValueError, KeyError or TypeError for
        anything else."""
        findings = [
            Finding(
                rule=Rule(f["rule"]),
                severity=Severity(f["severity"]),
                path=str(f["path"]),
                message=str(f["message"]),
                line=None if f.get("line") is None else int(f["line"]),
            )
            for f in data["findings"]
        ]
        sha256 = data["sha256"]
        return cls(
            name=str(data["name"]),
            path=str(data["path"]),
            sha256=None if sha256 is None else str(sha256),
            size=int(data["size"]),
            files=int(data["files"]),
            findings=findings,
            scanned=bool(data.get("scanned", True)),
        )


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
