"""Scan one artifact: one walk over its members, every check fed from that walk.

The engine is a pure function of bytes and policy: `scan_path` reads a file or a directory
and returns an `ArtifactReport`. It never talks to GitHub, never writes outside the archive
walker's private temporary folder, and never raises for hostile input: every problem is a
finding.
"""

from __future__ import annotations

import hashlib
import posixpath
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from bot.engine.archive import ArtifactWalk, Progress, ProgressMeter
from bot.engine.filerules import FileRules
from bot.engine.model import (
    ArtifactReport,
    ByteStream,
    Entry,
    EntryKind,
    Finding,
    Observation,
    Rule,
    Severity,
)
from bot.engine.policy import Policy
from bot.engine.secrets_scan import SecretScanner, redact
from bot.engine.sourcemaps import (
    MAX_PRAGMAS,
    MapReference,
    check_code_stream,
    check_map_stream,
)
from bot.errors import InputError, LimitReached

MAX_FINDINGS_PER_RULE = 200
_RANK = {Severity.NOTICE: 1, Severity.WARNING: 2, Severity.ERROR: 3}
"""Observations of one rule kept per artifact; the rest are counted in one more, so that no
report (JSON, SARIF, text, check run) grows without bound whatever the artifact holds."""

MAP_SUFFIXES = (".map",)
CODE_SUFFIXES = (".js", ".mjs", ".cjs", ".css")
_HASH_CHUNK = 1 << 20
_READ_CHUNK = 1 << 20


@dataclass(slots=True)
class _PendingReference:
    """A `sourceMappingURL` whose target can only be judged once every member is known."""

    entry_path: str
    logical_path: str
    reference: MapReference


class _Observations:
    """The observations of one artifact, at most `cap` per rule; the rest only counted."""

    def __init__(self, cap: int = MAX_FINDINGS_PER_RULE) -> None:
        self._cap = cap
        self.kept: list[Observation] = []
        self._counts: dict[Rule, int] = {}
        self._dropped_fail_closed: set[Rule] = set()
        self._dropped_uncapped: set[Rule] = set()
        self._dropped_ceiling: dict[Rule, Severity] = {}

    def append(self, observation: Observation) -> None:
        count = self._counts.get(observation.rule, 0) + 1
        self._counts[observation.rule] = count
        if count <= self._cap:
            self.kept.append(observation)
            return
        if observation.fail_closed:
            self._dropped_fail_closed.add(observation.rule)
        ceiling = observation.ceiling
        if ceiling is None:
            self._dropped_uncapped.add(observation.rule)
        else:
            known = self._dropped_ceiling.get(observation.rule)
            if known is None or _RANK[ceiling] > _RANK[known]:
                self._dropped_ceiling[observation.rule] = ceiling

    def _summary_ceiling(self, rule: Rule) -> Severity | None:
        """The count of dropped observations is no more severe than the worst of them (200
        more documented example keys are notices, not an error)."""
        if rule in self._dropped_uncapped:
            return None
        return self._dropped_ceiling.get(rule)

    def extend(self, observations: Iterable[Observation]) -> None:
        for observation in observations:
            self.append(observation)

    def result(self, artifact_name: str) -> list[Observation]:
        """The kept observations, then one per rule that had more, counting the rest."""
        summaries = []
        for rule, count in self._counts.items():
            if count > self._cap:
                more = count - self._cap
                summaries.append(
                    Observation(
                        rule=rule,
                        path=artifact_name,
                        message=(
                            f"{more:,} more {rule.value} findings in this artifact, not listed "
                            f"(a report lists {self._cap} per rule and artifact)."
                        ),
                        ceiling=self._summary_ceiling(rule),
                        fail_closed=rule in self._dropped_fail_closed,
                    )
                )
        return self.kept + summaries


@dataclass(slots=True)
class _ArtifactScan:
    """What one walk collects before policy turns observations into findings."""

    observations: _Observations = field(default_factory=_Observations)
    file_paths: set[str] = field(default_factory=set)
    references: list[_PendingReference] = field(default_factory=list)


class _FileDigest:
    """SHA-256 and size of a file, computed on a side thread while the walk runs.

    hashlib releases the GIL on large buffers, so hashing overlaps the scan instead of
    adding a second pass over the artifact's bytes.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self.sha256: str | None = None
        self.size = 0
        self._error: OSError | None = None
        self._thread = threading.Thread(target=self._run, name="release-guard-digest", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        digest = hashlib.sha256()
        size = 0
        try:
            with self._path.open("rb") as handle:
                while chunk := handle.read(_HASH_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
        except OSError as exc:
            self._error = exc
            return
        self.sha256 = digest.hexdigest()
        self.size = size

    def result(self) -> tuple[str | None, int]:
        self._thread.join()
        if self._error is not None:
            raise InputError(f"{self._path}: cannot read: {self._error.strerror}") from self._error
        return self.sha256, self.size


def _size_for_progress(path: Path) -> int:
    try:
        return _directory_size(path) if path.is_dir() else path.stat().st_size
    except OSError:
        return 0


def _directory_size(path: Path) -> int:
    total = 0
    for child in path.rglob("*"):
        if child.is_file() and not child.is_symlink():
            total += child.stat().st_size
    return total


def check_readable(path: Path) -> None:
    """Raise InputError unless `path` is a readable regular file or directory."""
    try:
        if path.is_dir():
            next(path.iterdir(), None)
            return
        if not path.is_file():
            if path.exists() or path.is_symlink():
                raise InputError(f"{path}: not a regular file or directory")
            raise InputError(f"{path}: no such file or directory")
        with path.open("rb"):
            pass
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from exc


def scan_path(
    path: Path,
    *,
    policy: Policy,
    name: str | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
) -> ArtifactReport:
    """Scan the file or directory at `path` as one artifact called `name` (default: its name).

    Raises InputError only when `path` itself cannot be read; anything wrong inside it is a
    finding. `progress`, when given, is told `(bytes read, size)` of the artifact about ten
    times a second, and once at the end (possibly from a read-ahead thread). Once `cancel`
    is set (from another thread), the walk stops at its next read with an `archive/limit`
    finding and removes its temporary files.
    """
    check_readable(path)
    artifact_name = name or path.name or str(path)
    digest = None if path.is_dir() else _FileDigest(path)
    meter = None
    if progress is not None:
        meter = ProgressMeter(progress, _size_for_progress(path))
    walk = ArtifactWalk(
        path, name=artifact_name, limits=policy.limits, progress=meter, cancel=cancel
    )
    collected = _walk_and_check(walk, policy=policy, artifact_name=artifact_name)
    collected.observations.extend(_judge_references(collected))
    if digest is None:
        sha256, size = None, _directory_size(path)
    else:
        sha256, size = digest.result()
    findings = apply_policy(collected.observations.result(artifact_name), policy)
    return ArtifactReport(
        name=artifact_name,
        path=str(path),
        sha256=sha256,
        size=size,
        files=walk.files,
        findings=findings,
        scanned=walk.files > 0 or bool(findings),
    )


def _walk_and_check(walk: ArtifactWalk, *, policy: Policy, artifact_name: str) -> _ArtifactScan:
    """Run every check over one walk: path rules on each member, content rules on maps and code."""
    file_rules = FileRules(policy, artifact_name)
    collected = _ArtifactScan()
    for item in walk:
        if isinstance(item, Observation):
            collected.observations.append(item)
            continue
        collected.observations.extend(file_rules.check(item))
        if item.kind is EntryKind.FILE:
            collected.file_paths.add(item.logical_path)
            _check_content(item, collected, policy)
    return collected


class _SecretTap:
    """A member's stream that shows every byte read to the secret scanner on the way.

    Every file is read whole through it: the name-based checks read what they need, then
    `drain` reads the rest, so each byte is decompressed and searched exactly once.
    """

    def __init__(self, stream: ByteStream, scanner: SecretScanner) -> None:
        self._stream = stream
        self._scanner = scanner

    def read(self, size: int = -1, /) -> bytes:
        data = self._stream.read(size)
        self._scanner.feed(data)
        return data

    def drain(self) -> None:
        while self.read(_READ_CHUNK):
            pass


class _InlineMapSecrets:
    """Secret scanners for the decoded inline `data:` maps of one code file, one per pragma."""

    def __init__(self, path: str, allow: frozenset[str]) -> None:
        self._path = path
        self._allow = allow
        self._scanners: dict[int | None, SecretScanner] = {}

    def feed(self, line: int | None, data: bytes) -> None:
        scanner = self._scanners.get(line)
        if scanner is None:
            where = " (in the decoded inline source map of this line)"
            scanner = SecretScanner(self._path, self._allow, line=line, where=where)
            self._scanners[line] = scanner
        scanner.feed(data)

    def close(self) -> list[Observation]:
        return [obs for scanner in self._scanners.values() for obs in scanner.close()]


def _check_content(entry: Entry, collected: _ArtifactScan, policy: Policy) -> None:
    """Feed a member's bytes to the check its name calls for, and all of them to `secrets/*`."""
    if entry.stream is None:
        return
    lowered = entry.inner_path.lower()
    secrets = SecretScanner(entry.path, policy.secret_allow)
    inline = _InlineMapSecrets(entry.path, policy.secret_allow)
    tap = _SecretTap(entry.stream, secrets)
    try:
        if lowered.endswith(MAP_SUFFIXES):
            collected.observations.extend(check_map_stream(tap, path=entry.path))
        elif lowered.endswith(CODE_SUFFIXES):
            code = check_code_stream(tap, path=entry.path, inline_tap=inline.feed)
            collected.observations.extend(code.observations)
            collected.references.extend(
                _PendingReference(entry.path, entry.logical_path, ref) for ref in code.references
            )
            if code.more_references:
                collected.observations.append(
                    Observation(
                        rule=Rule.REFERENCE,
                        path=entry.path,
                        message=(
                            f"{code.more_references:,} more sourceMappingURL pragmas pointing at "
                            f"external maps (the first {MAX_PRAGMAS} are listed)."
                        ),
                    )
                )
        tap.drain()
    except LimitReached:
        # The walker saw the limit too and reports it as archive/limit when it resumes; what
        # was read before it is still searched for secrets (below).
        pass
    collected.observations.extend(secrets.close())
    collected.observations.extend(inline.close())


def resolve_reference(logical_path: str, url: str) -> str | None:
    """Return the logical path a relative `sourceMappingURL` points at, or None.

    None means the URL leaves the artifact: it has a scheme or a host, or it is
    root-relative (its meaning depends on the web server that serves the file).
    """
    parts = urlsplit(url)
    if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
        return None
    directory = posixpath.dirname(logical_path)
    joined = posixpath.normpath(posixpath.join(directory, unquote(parts.path)))
    # A reference must not climb out of the container the referring file lives in.
    container = logical_path.rsplit("!/", 1)[0] + "!/" if "!/" in logical_path else ""
    if joined.startswith("../") or joined == ".." or not joined.startswith(container):
        return None
    return joined


def _judge_references(collected: _ArtifactScan) -> list[Observation]:
    observations = []
    for pending in collected.references:
        url = pending.reference.url
        target = resolve_reference(pending.logical_path, url)
        shown_url = url if len(url) <= 200 else url[:200] + "…"
        if target is None:
            where = "it points outside the artifact, so the map is not in it"
        elif target in collected.file_paths:
            where = f"the map is in the artifact ({target})"
        else:
            where = f"the map ({target}) is not in the artifact"
        observations.append(
            Observation(
                rule=Rule.REFERENCE,
                path=pending.entry_path,
                line=pending.reference.line,
                message=f"sourceMappingURL={shown_url}: {where}.",
            )
        )
    return observations


def apply_policy(observations: list[Observation], policy: Policy) -> list[Finding]:
    """Give each observation its rule's severity (at most its ceiling); drop those whose rule
    is off. Every path and message passes `redact`, so no secret reaches a report whole.

    A fail-closed observation is an error whatever the policy says (CONTRACT.md:
    `sourcemap/invalid` is an error when the map may carry sources that cannot be ruled out).
    """
    findings = []
    for obs in observations:
        severity = Severity.ERROR if obs.fail_closed else policy.severity(obs.rule)
        if severity is None:
            continue
        if obs.ceiling is not None and _RANK[obs.ceiling] < _RANK[severity]:
            severity = obs.ceiling
        findings.append(
            Finding(
                rule=obs.rule,
                severity=severity,
                path=redact(obs.path),
                message=redact(obs.message),
                line=obs.line,
            )
        )
    return findings
