"""Turn a scan report, or the reason there is none, into what the check run shows.

Everything here follows GitHub's REST documents "Create a check run" and "Update a check run"
(docs.github.com/rest/checks/runs), which define the ``output`` object:

- ``title``; ``summary`` and ``text`` in Markdown, each "Maximum length: 65535 characters";
- ``annotations``: "a maximum of 50 per API request. To create more than 50 annotations, you
  have to make multiple requests to the Update a check run endpoint. Each time you update the
  check run, annotations are appended"; each has ``path``, ``start_line``, ``end_line``,
  ``annotation_level`` (``notice``, ``warning`` or ``failure``), ``message`` ("The maximum size
  is 64 KB"), ``title`` ("The maximum size is 255 characters") and ``raw_details`` (64 KB);
  ``start_column``/``end_column`` only "on the same line".

The models validate those limits when they are built, as octomachinery's typed check-run models
do, so a bad value fails here, in a test, rather than as a 422 from GitHub after a scan. Sizes
that GitHub states in characters are also checked in UTF-8 bytes, the strictest reading: the
summary budget counts bytes, so no reading of "65535 characters" can reject it.

Paths, messages and artifact names come from archives an attacker may have built. The summary
is Markdown rendered on a pull request, so every such string goes through `md_escape` (prose)
or `md_code` (names and paths, as code spans): no HTML, no links, no table break-out, no
``@mention`` that notifies anyone and no ``#123`` that links an issue.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from bot.checks.hints import RepoLocation
from bot.config import CONFIG_PATH
from bot.engine.model import ArtifactReport, Conclusion, Finding, Report, Severity
from bot.errors import ConfigError, ReleaseGuardError
from bot.report.text import SEVERITY_ORDER, human_size, neutralize, ordered_findings

logger = logging.getLogger(__name__)

CHECK_NAME: Final = "release-guard"
"""The check run's name (CONTRACT.md)."""

MAX_SUMMARY_CHARS: Final = 65_535
"""``output.summary``: "Maximum length: 65535 characters" (Create a check run)."""
MAX_TEXT_CHARS: Final = 65_535
"""``output.text``: "Maximum length: 65535 characters" (Create a check run)."""
MAX_ANNOTATIONS_PER_REQUEST: Final = 50
"""``output.annotations``: "a maximum of 50 per API request" (Create a check run)."""
MAX_ANNOTATION_TITLE_CHARS: Final = 255
"""``annotations[].title``: "The maximum size is 255 characters" (Create a check run)."""
MAX_ANNOTATION_MESSAGE_BYTES: Final = 64_000
"""``annotations[].message``: "The maximum size is 64 KB" (Create a check run); 64,000 UTF-8
bytes satisfies both the decimal and the binary reading of "KB"."""
MAX_RAW_DETAILS_BYTES: Final = 64_000
"""``annotations[].raw_details``: "The maximum size is 64 KB" (Create a check run)."""
MAX_TITLE_CHARS: Final = 255
"""``output.title`` has no documented limit; release-guard keeps it to one short line."""

AnnotationLevel = Literal["notice", "warning", "failure"]
CheckConclusion = Literal["success", "failure", "neutral"]
CheckStatus = Literal["queued", "in_progress", "completed"]

ANNOTATION_LEVELS: Final[tuple[AnnotationLevel, ...]] = ("notice", "warning", "failure")
LEVEL_FOR: Final[dict[Severity, AnnotationLevel]] = {
    Severity.ERROR: "failure",
    Severity.WARNING: "warning",
    Severity.NOTICE: "notice",
}
_CONCLUSIONS: Final[dict[Conclusion, CheckConclusion]] = {
    Conclusion.SUCCESS: "success",
    Conclusion.FAILURE: "failure",
    Conclusion.NEUTRAL: "neutral",
}


class InvalidCheckOutput(ReleaseGuardError, ValueError):
    """A check-run output or annotation breaks one of GitHub's documented limits."""


def utf8_size(text: str) -> int:
    """The number of bytes `text` takes in UTF-8 (lone surrogates counted as 3)."""
    return len(text.encode("utf-8", "surrogatepass"))


def _check_text(name: str, text: str, *, max_chars: int | None = None, max_bytes: int) -> None:
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidCheckOutput(f"{name} cannot be sent as UTF-8: {exc.reason}") from None
    if max_chars is not None and len(text) > max_chars:
        raise InvalidCheckOutput(f"{name} is {len(text)} characters long; at most {max_chars}")
    if size > max_bytes:
        raise InvalidCheckOutput(f"{name} is {size} bytes in UTF-8; at most {max_bytes}")


def _check_one_line(name: str, text: str, max_chars: int) -> None:
    if not text.strip():
        raise InvalidCheckOutput(f"{name} must not be empty")
    if text != neutralize(text):
        raise InvalidCheckOutput(f"{name} must be one line of printable text: {text!r}")
    _check_text(name, text, max_chars=max_chars, max_bytes=max_chars * 4)


# --- models ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Annotation:
    """One annotation of a check run, validated against "Create a check run"'s limits.

    `path` is a repository path (``.github/release-guard.yml``), not an artifact path: GitHub
    shows annotations on the repository's files, and drops those whose path is not in it.
    """

    path: str
    start_line: int
    end_line: int
    annotation_level: AnnotationLevel
    message: str
    title: str | None = None
    raw_details: str | None = None
    start_column: int | None = None
    end_column: int | None = None

    def __post_init__(self) -> None:
        if not self.path or self.path != self.path.strip() or self.path.startswith("/"):
            raise InvalidCheckOutput(f"annotation path must be a repository path: {self.path!r}")
        if self.path != neutralize(self.path) or "\\" in self.path:
            raise InvalidCheckOutput(f"annotation path has unsafe characters: {self.path!r}")
        if self.start_line < 1 or self.end_line < self.start_line:
            raise InvalidCheckOutput(
                f"annotation lines must satisfy 1 <= start_line <= end_line, "
                f"not {self.start_line}..{self.end_line}"
            )
        if self.annotation_level not in ANNOTATION_LEVELS:
            raise InvalidCheckOutput(
                f"annotation_level must be one of {', '.join(ANNOTATION_LEVELS)}, "
                f"not {self.annotation_level!r}"
            )
        if not self.message.strip():
            raise InvalidCheckOutput("annotation message must not be empty")
        _check_text("annotation message", self.message, max_bytes=MAX_ANNOTATION_MESSAGE_BYTES)
        if self.title is not None:
            _check_one_line("annotation title", self.title, MAX_ANNOTATION_TITLE_CHARS)
        if self.raw_details is not None:
            _check_text("annotation raw_details", self.raw_details, max_bytes=MAX_RAW_DETAILS_BYTES)
        if (self.start_column is None) != (self.end_column is None):
            raise InvalidCheckOutput("start_column and end_column go together")
        if self.start_column is not None and self.end_column is not None:
            if self.start_line != self.end_line:
                raise InvalidCheckOutput("columns are only allowed when start_line == end_line")
            if self.start_column < 1 or self.end_column < self.start_column:
                raise InvalidCheckOutput("columns must satisfy 1 <= start_column <= end_column")

    def to_api(self) -> dict[str, object]:
        """The annotation as the REST API takes it (unset optional fields left out)."""
        body: dict[str, object] = {
            "path": self.path,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "annotation_level": self.annotation_level,
            "message": self.message,
        }
        for key in ("title", "raw_details", "start_column", "end_column"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        return body


@dataclass(frozen=True, slots=True)
class CheckOutput:
    """A check run's ``output``: title, Markdown summary, optional Markdown text."""

    title: str
    summary: str
    text: str | None = None

    def __post_init__(self) -> None:
        _check_one_line("output title", self.title, MAX_TITLE_CHARS)
        if not self.summary.strip():
            raise InvalidCheckOutput("output summary must not be empty")
        _check_text(
            "output summary", self.summary, max_chars=MAX_SUMMARY_CHARS, max_bytes=MAX_SUMMARY_CHARS
        )
        if self.text is not None:
            _check_text(
                "output text", self.text, max_chars=MAX_TEXT_CHARS, max_bytes=MAX_TEXT_CHARS
            )

    def to_api(self, annotations: Sequence[Annotation] = ()) -> dict[str, object]:
        """The ``output`` object, carrying at most 50 `annotations`."""
        if len(annotations) > MAX_ANNOTATIONS_PER_REQUEST:
            raise InvalidCheckOutput(
                f"{len(annotations)} annotations in one request; at most "
                f"{MAX_ANNOTATIONS_PER_REQUEST} (send the rest with further updates)"
            )
        body: dict[str, object] = {"title": self.title, "summary": self.summary}
        if self.text is not None:
            body["text"] = self.text
        if annotations:
            body["annotations"] = [a.to_api() for a in annotations]
        return body


@dataclass(frozen=True, slots=True)
class CheckRunUpdate:
    """Everything the handler sends to the check run for one outcome.

    A ``completed`` update has a conclusion; a ``queued`` or ``in_progress`` one has none.
    `requests` gives the bodies to send, in order.
    """

    status: CheckStatus
    conclusion: CheckConclusion | None
    output: CheckOutput
    annotations: tuple[Annotation, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in ("queued", "in_progress", "completed"):
            raise InvalidCheckOutput(f"unknown check run status {self.status!r}")
        if (self.status == "completed") != (self.conclusion is not None):
            raise InvalidCheckOutput("a conclusion is given exactly when the status is completed")
        if self.conclusion is not None and self.conclusion not in _CONCLUSIONS.values():
            raise InvalidCheckOutput(f"unknown conclusion {self.conclusion!r}")

    def requests(self) -> list[dict[str, object]]:
        """The "Update a check run" bodies: the verdict with the first 50 annotations, then
        the same output with each next 50 (annotations accumulate, "Update a check run").

        The verdict goes first so that the pull request is gated even if a later batch fails.
        """
        chunks = batches(self.annotations) or [()]
        bodies: list[dict[str, object]] = []
        for index, chunk in enumerate(chunks):
            body: dict[str, object] = {}
            if index == 0:
                body["status"] = self.status
                if self.conclusion is not None:
                    body["conclusion"] = self.conclusion
            body["output"] = self.output.to_api(chunk)
            bodies.append(body)
        return bodies


def batches(
    annotations: Sequence[Annotation], size: int = MAX_ANNOTATIONS_PER_REQUEST
) -> list[tuple[Annotation, ...]]:
    """Split `annotations` into request-sized groups of at most `size` (1..50), in order."""
    if not 1 <= size <= MAX_ANNOTATIONS_PER_REQUEST:
        raise ValueError(f"batch size must be between 1 and {MAX_ANNOTATIONS_PER_REQUEST}")
    return [tuple(annotations[i : i + size]) for i in range(0, len(annotations), size)]


# --- Markdown for untrusted text ------------------------------------------------------------

_ASCII_PUNCTUATION: Final = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
"""CommonMark §2.4: "Any ASCII punctuation character may be backslash-escaped"."""
_WORD_JOINER: Final = "\u2060"
# GitHub links mentions (`@name`, `@org/team`), issue references (`#1`, `GH-1`, `owner/repo#1`),
# commit references (`owner/repo@sha`), URLs and `www.` hosts in rendered text, so a backslash
# escape does not stop them. An invisible word joiner after the trigger does: none of those
# patterns accepts it.
_LINK_TRIGGERS: Final = re.compile(r"[@#]|(?<!\w)gh(?=-)|:(?=//)|(?<!\w)www(?=\.)", re.I)
_ELLIPSIS: Final = "…"


def clip(text: str, limit: int, *, keep_end: bool = False) -> str:
    """`text` cut to at most `limit` characters with an ellipsis; `keep_end` keeps the tail
    too (the file name is the informative end of a path)."""
    if len(text) <= limit:
        return text
    if limit <= 1:
        return _ELLIPSIS[:limit]
    if not keep_end:
        return text[: limit - 1] + _ELLIPSIS
    head = (limit - 1) // 3
    tail = limit - 1 - head
    return text[:head] + _ELLIPSIS + text[len(text) - tail :]


def md_escape(text: str, *, limit: int | None = None) -> str:
    """Return `text` as inert Markdown prose, safe in a paragraph, list item or table cell.

    - control, format and separator characters (newlines, bidirectional overrides, ESC…) are
      made visible by `neutralize`, so the text stays on its line and reads in order;
    - every ASCII punctuation character is backslash-escaped: no emphasis, link, image, HTML
      tag (``<img onerror>``), entity, code span, heading, list, table pipe or ``]]>``;
    - mentions, issue and commit references and bare URLs are broken with a word joiner, so
      nobody is notified and nothing links.

    With `limit`, the visible text is cut to that many characters first.
    """
    shown = neutralize(text)
    if limit is not None:
        shown = clip(shown, limit)
    shown = _LINK_TRIGGERS.sub(lambda m: m.group() + _WORD_JOINER, shown)
    return "".join("\\" + c if c in _ASCII_PUNCTUATION else c for c in shown)


_BACKTICKS: Final = re.compile(r"`+")


def md_code(text: str, *, table: bool = False, limit: int | None = None) -> str:
    """Return `text` as a Markdown code span: shown exactly, with nothing interpreted.

    Inside a code span GitHub renders no HTML, emphasis or link and does not process
    mentions or references. The fence is one backtick longer than the longest run inside
    (CommonMark §6.1), padded with a space when the text starts or ends with a backtick or
    both ends are spaces (which a code span would otherwise strip). Characters that would
    end the line are made visible by `neutralize`. In a table (`table`), ``|`` is written
    ``\\|``: GFM splits rows on pipes before reading code spans and removes that backslash
    again (GFM §4.10). `limit` cuts long text, keeping its end.
    """
    shown = neutralize(text)
    if limit is not None:
        shown = clip(shown, limit, keep_end=True)
    if not shown:
        return "*(empty)*"
    if table:
        shown = shown.replace("|", "\\|")
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(shown)), default=0)
    fence = "`" * (longest + 1)
    # CommonMark strips one space from each end when both ends are spaces (and the span is
    # not all spaces): pad exactly when a backtick or such a pair of spaces is at the ends.
    pad = ""
    if shown.strip(" ") and (
        shown[0] == "`" or shown[-1] == "`" or (shown[0] == " " and shown[-1] == " ")
    ):
        pad = " "
    return f"{fence}{pad}{shown}{pad}{fence}"


_SAFE_URL: Final = re.compile(
    r"https://[A-Za-z0-9.-]+(?::\d+)?(?:/[A-Za-z0-9._~%!$&'*+,;=:@/?#-]*)?"
)


def md_link(label: str, url: str | None) -> str:
    """A Markdown link to an ``https://`` URL of plain characters, else the label alone
    followed by the URL as code (never a link the summary's reader did not expect)."""
    text = md_escape(label, limit=200)
    if url is None:
        return text
    if len(url) <= 2000 and _SAFE_URL.fullmatch(url) and "(" not in url and ")" not in url:
        return f"[{text}]({url})"
    return f"{text} ({md_code(url, limit=200)})"


# --- context the handler passes in ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SkippedArtifact:
    """An artifact the handler found but could not scan (expired, too large to download…)."""

    name: str
    reason: str


@dataclass(frozen=True, slots=True)
class WorkflowRun:
    """A workflow run, as the summary mentions it."""

    name: str
    url: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class SummaryContext:
    """Plain facts the handler knows and the report does not; every field is optional.

    - `run`: the workflow run whose artifacts were scanned;
    - `head_sha`: the scanned commit;
    - `job_id`: release-guard's job, for ``release-guard audit JOB``;
    - `retained_id`: where the failing artifacts are kept (``release-guard retained show``);
    - `skipped`: artifacts that were found but not scanned, each with its reason.
    """

    run: WorkflowRun | None = None
    head_sha: str | None = None
    job_id: str | None = None
    retained_id: str | None = None
    skipped: tuple[SkippedArtifact, ...] = ()


# --- a summary that stays within its budget -------------------------------------------------

_NOTE_RESERVE: Final = 1_200
"""Bytes kept free for the note that says what was left out."""


class _Writer:
    """Markdown lines that never exceed a byte budget: a line that does not fit is refused."""

    def __init__(self, limit: int) -> None:
        self.lines: list[str] = []
        self.size = 0
        self.limit = limit

    def fits(self, *lines: str) -> bool:
        return self.size + sum(utf8_size(line) + 1 for line in lines) <= self.limit

    def add(self, *lines: str) -> bool:
        if not self.fits(*lines):
            return False
        for line in lines:
            self.lines.append(line)
            self.size += utf8_size(line) + 1
        return True

    def text(self) -> str:
        return "\n".join(self.lines).rstrip("\n")


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


_SEVERITY_LABEL: Final[dict[Severity, str]] = {
    Severity.ERROR: "❌ error",
    Severity.WARNING: "⚠️ warning",
    Severity.NOTICE: "\N{INFORMATION SOURCE}\N{VARIATION SELECTOR-16} notice",
}
_PATH_CHARS: Final = 300
_MESSAGE_CHARS: Final = 1_000
_NAME_CHARS: Final = 200
_REASON_CHARS: Final = 1_000


def conclusion_for(report: Report) -> CheckConclusion:
    """The check run's conclusion: ``failure`` on any error-level finding, ``neutral`` when
    nothing could be scanned, else ``success`` (the engine's `Report.conclusion`)."""
    return _CONCLUSIONS[report.conclusion]


def title_for(report: Report) -> str:
    """A one-line count: ``2 errors, 1 warning in 1 of 3 artifacts``, ``No findings in 3
    artifacts`` or ``Nothing to scan``."""
    if report.conclusion is Conclusion.NEUTRAL and not report.findings:
        return "Nothing to scan"
    counts = report.summary
    tallies = [_plural(counts[s.value], s.value) for s in Severity if counts[s.value]]
    total = len(report.artifacts)
    if not tallies:
        return f"No findings in {_plural(total, 'artifact')}"
    with_findings = sum(1 for a in report.artifacts if a.findings)
    where = (
        _plural(total, "artifact")
        if with_findings == total
        else f"{with_findings:,} of {_plural(total, 'artifact')}"
    )
    return f"{', '.join(tallies)} in {where}"


def _verdict(report: Report) -> str:
    counts = report.summary
    conclusion = report.conclusion
    if conclusion is Conclusion.FAILURE:
        return (
            f"**❌ Failing:** {_plural(counts['error'], 'error-level finding')} in the build "
            "artifacts of this commit. Fix what each one points at (the annotations show the "
            f"likely line), or adjust `{CONFIG_PATH}` if a finding is expected."
        )
    if conclusion is Conclusion.NEUTRAL:
        if not report.artifacts:
            return "**Nothing was scanned:** no artifacts were found for this commit."
        return "**Nothing was scanned:** the artifacts held no files that release-guard reads."
    if counts["warning"] or counts["notice"]:
        rest = [_plural(counts[s], s) for s in ("warning", "notice") if counts[s]]
        return f"**✅ Passing** with {' and '.join(rest)} to review."
    return (
        f"**✅ Passing:** no findings in {_plural(len(report.artifacts), 'artifact')}: no source "
        "maps with sources and no forbidden files."
    )


def _context_lines(context: SummaryContext | None) -> list[str]:
    if context is None:
        return []
    lines = []
    if context.run is not None:
        lines.append(f"- Workflow run: {md_link(context.run.name, context.run.url)}")
    if context.head_sha:
        lines.append(f"- Commit: {md_code(context.head_sha[:12])}")
    if context.retained_id:
        command = f"release-guard retained show {clip(context.retained_id, 100)}"
        lines.append(f"- Failing artifacts retained as {md_code(command)}")
    if context.job_id:
        lines.append(f"- Audit trail: {md_code(_audit_command(context))}")
    return lines


def _audit_command(context: SummaryContext | None) -> str:
    if context is None or not context.job_id:
        return "release-guard audit JOB"
    return f"release-guard audit {clip(context.job_id, 100)}"


def _worst(artifact: ArtifactReport) -> int:
    ranks = [SEVERITY_ORDER[f.severity] for f in artifact.findings]
    return min(ranks, default=len(SEVERITY_ORDER))


def _tally(artifact: ArtifactReport) -> str:
    counts = {s: 0 for s in Severity}
    for finding in artifact.findings:
        counts[finding.severity] += 1
    parts = [_plural(counts[s], s.value) for s in Severity if counts[s]]
    return ", ".join(parts) if parts else "no findings"


def _overview_row(artifact: ArtifactReport) -> str:
    name = md_code(artifact.name, table=True, limit=_NAME_CHARS)
    if artifact.path and artifact.path != artifact.name:
        name += " " + md_code(artifact.path, table=True, limit=_NAME_CHARS)
    sha = md_code(artifact.sha256[:12], table=True) if artifact.sha256 else "none"
    state = _tally(artifact) if artifact.scanned else "not scanned: nothing readable in it"
    return f"| {name} | {human_size(artifact.size)} | {artifact.files:,} | {sha} | {state} |"


def _finding_row(finding: Finding) -> str:
    path = neutralize(finding.path)
    if finding.line is not None:
        path = f"{clip(path, _PATH_CHARS, keep_end=True)}:{finding.line}"
    return (
        f"| {_SEVERITY_LABEL[finding.severity]} | `{finding.rule.value}` "
        f"| {md_code(path, table=True, limit=_PATH_CHARS + 12)} "
        f"| {md_escape(finding.message, limit=_MESSAGE_CHARS)} |"
    )


_OVERVIEW_HEAD: Final = (
    "| Artifact | Size | Files | sha256 | Findings |",
    "| --- | ---: | ---: | --- | --- |",
)
_FINDINGS_HEAD: Final = ("| Severity | Rule | Path | Message |", "| --- | --- | --- | --- |")


def render_summary(
    report: Report, *, context: SummaryContext | None = None, limit: int = MAX_SUMMARY_CHARS
) -> str:
    """Render `report` as the check run's Markdown summary, at most `limit` UTF-8 bytes.

    A verdict line; the `context` (workflow run, commit, retained artifacts, audit trail);
    a line per artifact that was not scanned; an overview table of the artifacts (size, files,
    short sha256, counts); then, per artifact with findings, a table of severity, rule, path
    and message, most serious first. When the whole would not fit, the tables are cut at a
    row and a closing note says how many findings were left out and where the full report is.
    """
    if limit < 4 * _NOTE_RESERVE:
        raise ValueError(f"a summary needs at least {4 * _NOTE_RESERVE} bytes")
    out = _Writer(limit - _NOTE_RESERVE)
    out.add(_verdict(report), "")
    context_lines = _context_lines(context)
    if context_lines:
        out.add(*context_lines, "")

    _skipped_lines(out, report, context)
    artifacts = sorted(report.artifacts, key=_worst)  # stable: the report's order otherwise
    _overview(out, artifacts)
    shown_findings = 0
    for artifact in artifacts:
        shown, complete = _findings_table(out, artifact)
        shown_findings += shown
        if not complete:
            break

    total = len(report.findings)
    note = _left_out_note(findings=total - shown_findings, total=total, context=context)
    text = out.text()
    if note:
        text += "\n\n" + note
    return text


OVERVIEW_ROWS: Final = 100
"""Artifacts listed in the overview table; the rest are counted on one row."""


def _overview(out: _Writer, artifacts: Sequence[ArtifactReport]) -> None:
    """The table of artifacts: most serious first, at most `OVERVIEW_ROWS` rows."""
    if not artifacts or not out.add("### Artifacts", "", *_OVERVIEW_HEAD):
        return
    for index, artifact in enumerate(artifacts):
        rest = len(artifacts) - index
        more = f"| …and {_plural(rest, 'more artifact')} | | | | |"
        if index >= OVERVIEW_ROWS or not out.fits(_overview_row(artifact), more):
            out.add(more)
            break
        out.add(_overview_row(artifact))


def _findings_table(out: _Writer, artifact: ArtifactReport) -> tuple[int, bool]:
    """An artifact's heading and table of findings; (rows written, whether all fitted)."""
    findings = ordered_findings(artifact)
    if not findings:
        return 0, True
    heading = f"### {md_code(artifact.name, limit=_NAME_CHARS)}: {_tally(artifact)}"
    if not out.add("", heading, "", *_FINDINGS_HEAD, _finding_row(findings[0])):
        return 0, False
    for shown, finding in enumerate(findings[1:], start=1):
        if not out.add(_finding_row(finding)):
            return shown, False
    return len(findings), True


SKIPPED_ROWS: Final = 50
"""Not-scanned artifacts listed one per line; the rest are counted on one line."""


def _bullets(items: Iterable[str], out: _Writer, *, cap: int | None = None) -> None:
    """Add one bullet per item while they fit (at most `cap`), then a line counting the rest."""
    pending = list(items)
    for index, item in enumerate(pending):
        full = cap is not None and index >= cap
        if full or not out.fits(f"- {item}", "- …and 999,999,999 more"):
            out.add(f"- …and {len(pending) - index:,} more")
            return
        out.add(f"- {item}")


def _skipped_lines(out: _Writer, report: Report, context: SummaryContext | None) -> None:
    """A line per artifact that could not be scanned (`SKIPPED_ROWS` at most)."""
    entries = [(s.name, s.reason) for s in (context.skipped if context else ())]
    entries += [
        (a.name, "nothing in it could be read (empty, or no files)")
        for a in report.artifacts
        if not a.scanned
    ]
    if not entries or not out.add("**Not scanned:**", ""):
        return
    _bullets(
        (
            f"{md_code(name, limit=_NAME_CHARS)}: {md_escape(reason, limit=_REASON_CHARS)}"
            for name, reason in entries
        ),
        out,
        cap=SKIPPED_ROWS,
    )
    out.add("")


def _left_out_note(*, findings: int, total: int, context: SummaryContext | None) -> str:
    if not findings:
        return ""
    return (
        f"**Not shown: {findings:,} of {_plural(total, 'finding')}**, to keep this summary "
        f"within GitHub's {MAX_SUMMARY_CHARS:,}-character limit. The full report is in the "
        "JSON or SARIF output (`release-guard scan --format json`) and in the audit trail "
        f"({md_code(_audit_command(context))})."
    )


# --- annotations ----------------------------------------------------------------------------

Locate = Callable[[Finding], RepoLocation | None]


def _global_order(report: Report) -> list[Finding]:
    """Every finding, most serious first across artifacts (then each artifact's order)."""
    indexed = [
        (SEVERITY_ORDER[f.severity], index, position, f)
        for index, artifact in enumerate(report.artifacts)
        for position, f in enumerate(ordered_findings(artifact))
    ]
    indexed.sort(key=lambda item: item[:3])
    return [item[3] for item in indexed]


def fit_bytes(text: str, max_bytes: int) -> str:
    """`text` cut (with an ellipsis) so that it takes at most `max_bytes` UTF-8 bytes."""
    if utf8_size(text) <= max_bytes:
        return text
    room = max_bytes - utf8_size(_ELLIPSIS)
    cut = text.encode("utf-8", "surrogatepass")[: max(room, 0)]
    return cut.decode("utf-8", "ignore") + _ELLIPSIS


def annotation_for(
    finding: Finding, location: RepoLocation | None, *, fallback_path: str, fallback_line: int = 1
) -> Annotation:
    """The annotation of one finding, on `location` or else on the fallback line.

    The message always starts with the finding's artifact path (``a.zip!/pkg.tgz!/…``) and
    line, then the finding's message, then why that repository line is the likely cause.
    """
    where = neutralize(finding.path)
    if finding.line is not None:
        where += f":{finding.line}"
    message = f"{where}: {neutralize(finding.message)}"
    if location is not None:
        why = neutralize(location.why)
        message += "\n\n" + (why if not location.certain else f"Cause: {why}")
        path, line = location.path, location.line
    else:
        message += (
            "\n\nrelease-guard found no line in this repository that explains it; the "
            f"annotation is placed on {fallback_path}."
        )
        path, line = fallback_path, fallback_line
    return Annotation(
        path=path,
        start_line=line,
        end_line=line,
        annotation_level=LEVEL_FOR[finding.severity],
        message=fit_bytes(message, MAX_ANNOTATION_MESSAGE_BYTES),
        title=finding.rule.value,
    )


MAX_ANNOTATIONS: Final = 500
"""Annotations one check run carries at most (ten requests of 50): the most serious findings.
A report is bounded per artifact (`bot.engine.scan.MAX_FINDINGS_PER_RULE`), not per release,
and the summary already counts every finding."""


def annotations_for(
    report: Report,
    *,
    locate: Locate,
    fallback_path: str,
    fallback_line: int = 1,
    limit: int = MAX_ANNOTATIONS,
) -> list[Annotation]:
    """One annotation per finding, most serious first, at most `limit` of them.

    `locate` (usually `bot.checks.hints.Hints`) names the repository line that causes a
    finding; when it returns None, or fails, the annotation goes on `fallback_path` at
    `fallback_line` (the config file if the repository has one, else e.g. ``package.json``).
    """
    annotations = []
    for finding in itertools.islice(_global_order(report), limit):
        try:
            location = locate(finding)
        except Exception:  # a hint is a courtesy: it must never cost the verdict
            logger.exception("locating the cause of a finding failed; using the fallback")
            location = None
        annotations.append(
            annotation_for(
                finding, location, fallback_path=fallback_path, fallback_line=fallback_line
            )
        )
    return annotations


def scan_result(
    report: Report,
    *,
    locate: Locate,
    fallback_path: str,
    fallback_line: int = 1,
    context: SummaryContext | None = None,
) -> CheckRunUpdate:
    """The completed check run for a scan: conclusion, title, summary and annotations."""
    return CheckRunUpdate(
        status="completed",
        conclusion=conclusion_for(report),
        output=CheckOutput(
            title=title_for(report), summary=render_summary(report, context=context)
        ),
        annotations=tuple(
            annotations_for(
                report, locate=locate, fallback_path=fallback_path, fallback_line=fallback_line
            )
        ),
    )


# --- the outcomes without a report ----------------------------------------------------------

_LIST_BUDGET: Final = MAX_SUMMARY_CHARS - 4 * _NOTE_RESERVE


def _run_item(run: WorkflowRun) -> str:
    item = md_link(run.name, run.url)
    if run.status:
        item += f" ({md_escape(run.status, limit=40)})"
    return item


_EXAMPLE_NAME: Final = re.compile(r"[A-Za-z0-9._-]{1,64}")


def _example_name(patterns: Sequence[str]) -> str:
    """An artifact name that matches the first configured pattern, for the YAML example."""
    for pattern in patterns:
        name = pattern.replace("*", "package").replace("?", "x")
        if _EXAMPLE_NAME.fullmatch(name):
            return name
    return "npm-package"


def nothing_uploaded(
    *,
    head_sha: str,
    patterns: Sequence[str],
    runs: Sequence[WorkflowRun] = (),
    other_artifacts: Sequence[str] = (),
) -> CheckRunUpdate:
    """Neutral: no workflow run, or no run uploaded an artifact whose name matches.

    `patterns` are the artifact name globs release-guard scans (the config's ``artifacts``
    names; empty means every artifact); `runs` the completed runs of the commit;
    `other_artifacts` the names that were uploaded but match no pattern.
    """
    out = _Writer(_LIST_BUDGET)
    commit = md_code(head_sha[:12])
    if not runs:
        out.add(
            f"No GitHub Actions workflow run has completed for commit {commit}, so there is no "
            "build artifact to check.",
            "",
        )
    else:
        out.add(
            f"These workflow runs of commit {commit} completed without uploading an artifact "
            "that release-guard scans:",
            "",
        )
        _bullets((_run_item(r) for r in runs), out)
        out.add("")
    if other_artifacts:
        out.add("Artifacts uploaded under names that match no pattern (not scanned):", "")
        _bullets((md_code(n, limit=_NAME_CHARS) for n in other_artifacts), out)
        out.add("")
    if patterns:
        out.add(
            "To have a build checked, upload it with `actions/upload-artifact` under a name "
            f"that matches one of the patterns of `{CONFIG_PATH}`:",
            "",
        )
        _bullets((md_code(p, limit=_NAME_CHARS) for p in patterns), out)
        out.add("")
    else:
        out.add(
            "To have a build checked, upload what you release (the `npm pack` tarball, the "
            "`dist` folder) with `actions/upload-artifact`; every artifact is scanned.",
            "",
        )
    out.add(
        "```yaml",
        "- run: npm pack",
        "- uses: actions/upload-artifact@v4",
        "  with:",
        f"    name: {_example_name(patterns)}",
        '    path: "*.tgz"',
        "```",
    )
    return CheckRunUpdate(
        status="completed",
        conclusion="neutral",
        output=CheckOutput(title="No build artifacts to scan", summary=out.text()),
    )


def artifacts_expired(*, names: Sequence[str], runs: Sequence[WorkflowRun] = ()) -> CheckRunUpdate:
    """Neutral: the commit's artifacts expired (or were deleted) before they could be scanned."""
    out = _Writer(_LIST_BUDGET)
    out.add(
        "The build artifacts of this commit have expired or were deleted, so release-guard "
        "could not download them:",
        "",
    )
    _bullets((md_code(n, limit=_NAME_CHARS) for n in names), out)
    out.add("")
    if runs:
        out.add("Uploaded by:", "")
        _bullets((_run_item(r) for r in runs), out)
        out.add("")
    out.add(
        "Re-run the workflow (**Re-run all jobs** on the run's page) to upload them again; "
        "release-guard scans them when the run completes. A longer `retention-days` on "
        "`actions/upload-artifact` keeps them available for longer."
    )
    return CheckRunUpdate(
        status="completed",
        conclusion="neutral",
        output=CheckOutput(title="Build artifacts expired", summary=out.text()),
    )


def waiting_for_builds(*, runs: Sequence[WorkflowRun]) -> CheckRunUpdate:
    """Queued: the commit's workflow runs have not completed yet."""
    out = _Writer(_LIST_BUDGET)
    if runs:
        out.add(
            "release-guard checks this commit's build artifacts when these workflow runs complete:",
            "",
        )
        _bullets((_run_item(r) for r in runs), out)
    else:
        out.add(
            "release-guard checks this commit's build artifacts when its workflow runs complete."
        )
    return CheckRunUpdate(
        status="queued",
        conclusion=None,
        output=CheckOutput(title="Waiting for builds", summary=out.text()),
    )


def could_not_finish(
    *, reason: str, attempts: int | None = None, context: SummaryContext | None = None
) -> CheckRunUpdate:
    """Failure: the job gave up (after its retries); never leave a check run in progress.

    A check that could not run must not look like a pass, so the conclusion is ``failure``.
    """
    tries = f" after {_plural(attempts, 'attempt')}" if attempts else ""
    out = _Writer(_LIST_BUDGET)
    out.add(
        f"release-guard could not finish checking this commit{tries}: "
        f"{md_escape(reason, limit=_REASON_CHARS)}",
        "",
        "The build artifacts have not been checked, so this check fails rather than passing "
        "unchecked. Once the cause is fixed, re-run this check (**Re-run** on the check run) "
        "or push again.",
    )
    context_lines = _context_lines(context)
    if context_lines:
        out.add("", *context_lines)
    return CheckRunUpdate(
        status="completed",
        conclusion="failure",
        output=CheckOutput(title="release-guard could not finish", summary=out.text()),
    )


def invalid_config(
    error: ConfigError, *, config_path: str = CONFIG_PATH, context: SummaryContext | None = None
) -> CheckRunUpdate:
    """Failure: the repository config is invalid; one annotation on the offending line.

    The annotation is made only when the error is in this repository's `config_path` (an
    organisation's defaults live in another repository, where an annotation cannot go).
    """
    line = error.line if error.line is not None and error.line >= 1 else 1
    where = f"{error.path}, line {line}" if error.line is not None else error.path
    out = _Writer(_LIST_BUDGET)
    out.add(
        f"{md_code(where, limit=_NAME_CHARS)}: {md_escape(error.detail, limit=_REASON_CHARS)}",
        "",
        "release-guard does not scan with a configuration it cannot read, and does not pass "
        "silently either. Fix the file; the check runs again on the next push.",
    )
    context_lines = _context_lines(context)
    if context_lines:
        out.add("", *context_lines)
    annotations: tuple[Annotation, ...] = ()
    if error.path.removeprefix("./") == config_path:
        annotations = (
            Annotation(
                path=config_path,
                start_line=line,
                end_line=line,
                annotation_level="failure",
                message=fit_bytes(neutralize(error.detail), MAX_ANNOTATION_MESSAGE_BYTES),
                title="Invalid release-guard configuration",
            ),
        )
    return CheckRunUpdate(
        status="completed",
        conclusion="failure",
        output=CheckOutput(title="Invalid release-guard configuration", summary=out.text()),
        annotations=annotations,
    )


__all__ = [
    "ANNOTATION_LEVELS",
    "CHECK_NAME",
    "MAX_ANNOTATIONS",
    "MAX_ANNOTATIONS_PER_REQUEST",
    "MAX_ANNOTATION_MESSAGE_BYTES",
    "MAX_ANNOTATION_TITLE_CHARS",
    "MAX_SUMMARY_CHARS",
    "Annotation",
    "CheckOutput",
    "CheckRunUpdate",
    "InvalidCheckOutput",
    "SkippedArtifact",
    "SummaryContext",
    "WorkflowRun",
    "annotation_for",
    "annotations_for",
    "artifacts_expired",
    "batches",
    "conclusion_for",
    "could_not_finish",
    "invalid_config",
    "md_code",
    "md_escape",
    "md_link",
    "nothing_uploaded",
    "render_summary",
    "scan_result",
    "title_for",
    "waiting_for_builds",
]
