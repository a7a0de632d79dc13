"""The check run's output: limits, Markdown that attackers cannot steer, annotations, outcomes."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.checks.hints import Hints, RepoLocation
from bot.checks.output import (
    MAX_ANNOTATION_MESSAGE_BYTES,
    MAX_SUMMARY_CHARS,
    Annotation,
    CheckOutput,
    CheckRunUpdate,
    InvalidCheckOutput,
    SkippedArtifact,
    SummaryContext,
    WorkflowRun,
    annotation_for,
    annotations_for,
    artifacts_expired,
    batches,
    clip,
    conclusion_for,
    could_not_finish,
    fit_bytes,
    invalid_config,
    md_code,
    md_escape,
    md_link,
    nothing_uploaded,
    render_summary,
    scan_result,
    title_for,
    utf8_size,
    waiting_for_builds,
)
from bot.config import CONFIG_PATH
from bot.engine.model import ArtifactReport, Finding, Report, Rule, Severity
from bot.errors import ConfigError
from bot.report.text import neutralize

SHA = "ab" * 32
ERROR_CELL = "| \N{CROSS MARK} error"
WARNING_CELL = "| \N{WARNING SIGN}\N{VARIATION SELECTOR-16} warning"
NOTICE_CELL = "| \N{INFORMATION SOURCE}\N{VARIATION SELECTOR-16} notice"
ROW_STARTS = (ERROR_CELL, WARNING_CELL, NOTICE_CELL)
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=60)
HOSTILE = [
    "a|b",
    "`code` and ``more``",
    "<img src=x onerror=alert(1)>",
    "@org/team please look",
    "ping @octocat",
    "fixes #1 and GH-2 and owner/repo#3 and owner/repo@deadbeef",
    "]]><!-- -->",
    "line one\nline two\r\n| --- |",
    "\u202eevil\u202c \u2066x\u2069 \u200b",
    "[click](javascript:alert(1)) ![img](https://evil.example/x.png)",
    "https://evil.example www.evil.example mail@evil.example",
    "*bold* _it_ ~~strike~~ $x$ &amp; &#64;",
    "\\",
    "trailing backslash \\",
    "# heading\n> quote\n- item\n1. item",
    "\x1b[2Jclear",
    "\ud800 lone surrogate",
    "",
    " ",
    "`",
    " ` ",
]


# --- a small reading of GitHub Markdown, enough to check what the renderer sees ----------------


def table_cells(row: str) -> list[str]:
    """Split a table row as cmark-gfm does: a pipe preceded by a backslash is in the cell,
    and that backslash is removed (GFM §4.10)."""
    assert row.startswith("| ") and row.endswith(" |"), row
    cells, current, index = [], [], 1
    body = row[1:-1]
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\" and body[index + 1 : index + 2] == "|":
            current.append("|")
            index += 2
            continue
        if char == "|":
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(char)
        index += 1
    cells.append("".join(current).strip())
    return cells


def code_span(text: str) -> str:
    """The content of a text that must be exactly one CommonMark code span (§6.1)."""
    match = re.fullmatch(r"(`+)(.*?)(`+)", text, re.S)
    assert match and match.group(1) == match.group(3), text
    fence, content = match.group(1), match.group(2)
    assert not re.search(rf"(?<!`){fence}(?!`)", content), text  # no run closes it early
    if content.startswith(" ") and content.endswith(" ") and content.strip(" "):
        content = content[1:-1]
    return content


def unescape_prose(text: str) -> str:
    """Undo md_escape as a reader sees it, checking every ASCII punctuation was escaped."""
    out, index = [], 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            following = text[index + 1 : index + 2]
            assert following in string.punctuation and following, text
            out.append(following)
            index += 2
            continue
        assert char not in string.punctuation, (char, text)
        out.append(char)
        index += 1
    return "".join(out)


# GitHub's reference autolinking, approximately: what must never survive md_escape.
LINKY = re.compile(
    r"@[A-Za-z0-9]|#\d|\bGH-\d|://|\bwww\.|[A-Za-z0-9]@[A-Za-z0-9]",
    re.I,
)


def assert_inert(rendered: str) -> None:
    assert "\n" not in rendered and "\r" not in rendered
    assert not LINKY.search(rendered.replace("\\", ""))
    assert "<" not in rendered.replace("\\<", "")
    for char in rendered:
        assert char == "\u2060" or neutralize(char) == char, repr(char)


# --- md_escape ----------------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_md_escape_makes_hostile_text_inert(text: str) -> None:
    rendered = md_escape(text)
    assert_inert(rendered)
    assert unescape_prose(rendered).replace("\u2060", "") == neutralize(text)


def test_md_escape_examples() -> None:
    assert md_escape("a|b") == "a\\|b"
    assert md_escape("<img onerror>") == "\\<img onerror\\>"
    assert md_escape("@org/team") == "\\@\u2060org\\/team"
    assert md_escape("#1") == "\\#\u20601"
    assert md_escape("GH-12") == "GH\u2060\\-12"
    assert md_escape("https://x") == "https\\:\u2060\\/\\/x"
    assert md_escape("www.x.org") == "www\u2060\\.x\\.org"
    assert md_escape("]]>") == "\\]\\]\\>"
    assert md_escape("a\nb") == "a\\\\nb"  # a visible \n, escaped for Markdown
    assert md_escape("\u202e") == "\\\\u202e"
    assert md_escape("plain words 42") == "plain words 42"
    assert md_escape("x" * 50, limit=10) == "x" * 9 + "…"
    assert md_escape("sigh-2") == "sigh\\-2"  # no `GH-` reference in the middle of a word


def test_md_escape_neutralises_joiners_that_were_already_there() -> None:
    assert "\u2060" not in md_escape("\u2060")
    assert md_escape("@\u2060x") == "\\@\u2060\\\\u2060x"


@settings(max_examples=500)
@given(ANY_TEXT)
def test_md_escape_property(text: str) -> None:
    rendered = md_escape(text)
    assert_inert(rendered)
    assert unescape_prose(rendered).replace("\u2060", "") == neutralize(text).replace("\u2060", "")
    # In a table, a cell holds exactly this text.
    assert table_cells(f"| {rendered} | x |")[1] == "x"


# --- md_code ------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", HOSTILE)
def test_md_code_shows_text_exactly(text: str) -> None:
    shown = neutralize(text)
    if not shown:
        assert md_code(text) == "*(empty)*"
        return
    assert code_span(md_code(text)) == shown
    (cell,) = table_cells(f"| {md_code(text, table=True)} |")
    assert code_span(cell) == shown


def test_md_code_examples() -> None:
    assert md_code("dist/x.js") == "`dist/x.js`"
    assert md_code("a`b") == "``a`b``"
    assert md_code("`x`") == "`` `x` ``"
    assert md_code("a|b", table=True) == "`a\\|b`"
    assert md_code("a|b") == "`a|b`"
    assert md_code("   ") == "`   `"
    assert md_code(" x ") == "`  x  `"
    assert md_code("line\nbreak") == "`line\\nbreak`"
    assert md_code("a" * 400, limit=10) == "`aaa…aaaaaa`"


@settings(max_examples=500)
@given(ANY_TEXT)
def test_md_code_property(text: str) -> None:
    shown = neutralize(text)
    rendered = md_code(text, table=True)
    assert "\n" not in rendered
    (cell,) = table_cells(f"| {rendered} |")
    if shown:
        assert code_span(cell) == shown


def test_md_link_only_links_plain_https() -> None:
    assert md_link("CI", "https://github.com/o/r/actions/runs/1") == (
        "[CI](https://github.com/o/r/actions/runs/1)"
    )
    assert md_link("CI", None) == "CI"
    for url in (
        "javascript:alert(1)",
        "http://github.com",
        "https://x.org/a)b",
        "https://x.org/<script>",
        "https://x.org/a b",
        "https://x.org/" + "a" * 3000,
    ):
        rendered = md_link("[run] @x", url)
        assert "](" not in rendered
        assert rendered.startswith("\\[run\\] \\@\u2060x (`")


def test_clip_and_fit_bytes() -> None:
    assert clip("abcdef", 4) == "abc…"
    assert clip("abcdef", 4, keep_end=True) == "a…ef"
    assert clip("abc", 3) == "abc"
    assert clip("abc", 1) == "…"
    assert fit_bytes("é" * 10, 7) == "éé…"
    assert utf8_size(fit_bytes("é" * 100_000, 1000)) <= 1000
    assert fit_bytes("short", 100) == "short"


# --- models and limits -----------------------------------------------------------------------


def annotation(**overrides: object) -> Annotation:
    fields: dict[str, object] = {
        "path": "package.json",
        "start_line": 1,
        "end_line": 1,
        "annotation_level": "failure",
        "message": "m",
    }
    fields.update(overrides)
    return Annotation(**fields)  # type: ignore[arg-type]


def test_annotation_to_api() -> None:
    assert annotation(title="t").to_api() == {
        "path": "package.json",
        "start_line": 1,
        "end_line": 1,
        "annotation_level": "failure",
        "message": "m",
        "title": "t",
    }
    full = annotation(raw_details="r", start_column=2, end_column=5).to_api()
    assert full["raw_details"] == "r" and full["start_column"] == 2 and full["end_column"] == 5


@pytest.mark.parametrize(
    "overrides",
    [
        {"annotation_level": "error"},
        {"annotation_level": "FAILURE"},
        {"start_line": 0, "end_line": 0},
        {"start_line": 3, "end_line": 2},
        {"path": ""},
        {"path": "/etc/passwd"},
        {"path": " package.json"},
        {"path": "a\nb"},
        {"path": "a\\b"},
        {"message": ""},
        {"message": "  \n"},
        {"message": "x" * (MAX_ANNOTATION_MESSAGE_BYTES + 1)},
        {"message": "é" * (MAX_ANNOTATION_MESSAGE_BYTES // 2 + 1)},
        {"message": "\ud800"},
        {"title": "t" * 256},
        {"title": "two\nlines"},
        {"title": ""},
        {"raw_details": "r" * 64_001},
        {"start_column": 1},
        {"start_column": 1, "end_column": 2, "end_line": 2},
        {"start_column": 3, "end_column": 2},
        {"start_column": 0, "end_column": 2},
    ],
)
def test_annotation_rejects_what_github_would(overrides: dict[str, object]) -> None:
    with pytest.raises(InvalidCheckOutput):
        annotation(**overrides)


def test_annotation_limits_are_inclusive() -> None:
    annotation(title="t" * 255)
    annotation(message="x" * MAX_ANNOTATION_MESSAGE_BYTES)
    annotation(start_line=4, end_line=9)


def test_check_output_limits() -> None:
    CheckOutput("t", "s" * MAX_SUMMARY_CHARS)
    CheckOutput("t", "s", text="x" * MAX_SUMMARY_CHARS)
    with pytest.raises(InvalidCheckOutput):
        CheckOutput("t", "s" * (MAX_SUMMARY_CHARS + 1))
    with pytest.raises(InvalidCheckOutput):
        CheckOutput("t", "é" * 40_000)  # 40,000 characters, but 80,000 bytes
    with pytest.raises(InvalidCheckOutput):
        CheckOutput("t", "s", text="x" * (MAX_SUMMARY_CHARS + 1))
    with pytest.raises(InvalidCheckOutput):
        CheckOutput("", "s")
    with pytest.raises(InvalidCheckOutput):
        CheckOutput("a\nb", "s")
    with pytest.raises(InvalidCheckOutput):
        CheckOutput("t" * 256, "s")
    with pytest.raises(InvalidCheckOutput):
        CheckOutput("t", "")
    with pytest.raises(InvalidCheckOutput):
        CheckOutput("t", "\udc80")


def test_check_output_to_api() -> None:
    output = CheckOutput("t", "s", text="x")
    assert output.to_api() == {"title": "t", "summary": "s", "text": "x"}
    fifty = [annotation()] * 50
    assert len(output.to_api(fifty)["annotations"]) == 50  # type: ignore[arg-type]
    with pytest.raises(InvalidCheckOutput):
        output.to_api([annotation()] * 51)


def test_batches() -> None:
    items = [annotation(start_line=i, end_line=i) for i in range(1, 121)]
    groups = batches(items)
    assert [len(g) for g in groups] == [50, 50, 20]
    assert [a for g in groups for a in g] == items
    assert batches([]) == []
    assert [len(g) for g in batches(items, size=1)] == [1] * 120
    for size in (0, 51):
        with pytest.raises(ValueError):
            batches(items, size=size)


def test_check_run_update_requests() -> None:
    items = tuple(annotation(start_line=i, end_line=i) for i in range(1, 121))
    update = CheckRunUpdate("completed", "failure", CheckOutput("t", "s"), items)
    bodies = update.requests()
    assert len(bodies) == 3
    assert bodies[0]["status"] == "completed" and bodies[0]["conclusion"] == "failure"
    assert all("status" not in b and "conclusion" not in b for b in bodies[1:])
    sent = [a for b in bodies for a in b["output"]["annotations"]]  # type: ignore[index]
    assert sent == [a.to_api() for a in items]
    assert all(b["output"]["title"] == "t" for b in bodies)  # type: ignore[index]
    single = CheckRunUpdate("queued", None, CheckOutput("t", "s")).requests()
    assert single == [{"status": "queued", "output": {"title": "t", "summary": "s"}}]


@pytest.mark.parametrize(
    ("status", "conclusion"),
    [("completed", None), ("queued", "success"), ("in_progress", "failure"), ("done", None)],
)
def test_check_run_update_status_and_conclusion_go_together(
    status: str, conclusion: str | None
) -> None:
    with pytest.raises(InvalidCheckOutput):
        CheckRunUpdate(status, conclusion, CheckOutput("t", "s"))  # type: ignore[arg-type]
    with pytest.raises(InvalidCheckOutput):
        CheckRunUpdate("completed", "cancelled", CheckOutput("t", "s"))  # type: ignore[arg-type]


# --- reports ------------------------------------------------------------------------------


def f(
    rule: Rule = Rule.EMBEDDED_SOURCES,
    severity: Severity = Severity.ERROR,
    path: str = "pkg-1.0.0.tgz!/package/dist/x.js.map",
    message: str = "source map embeds the original source of 1 of 1 file",
    line: int | None = None,
) -> Finding:
    return Finding(rule, severity, path, message, line)


def art(name: str, *findings: Finding, scanned: bool = True, files: int = 3) -> ArtifactReport:
    return ArtifactReport(name, f"dist/{name}", SHA, 2048, files, list(findings), scanned=scanned)


def test_conclusion_and_title() -> None:
    mixed = Report(
        [
            art("a", f(), f(severity=Severity.ERROR), f(severity=Severity.WARNING)),
            art("b"),
            art("c"),
        ]
    )
    assert conclusion_for(mixed) == "failure"
    assert title_for(mixed) == "2 errors, 1 warning in 1 of 3 artifacts"
    clean = Report([art("a"), art("b"), art("c")])
    assert (conclusion_for(clean), title_for(clean)) == ("success", "No findings in 3 artifacts")
    assert title_for(Report([art("a")])) == "No findings in 1 artifact"
    assert title_for(Report([art("a", f())])) == "1 error in 1 artifact"
    assert title_for(Report([art("a", f()), art("b", f(severity=Severity.NOTICE))])) == (
        "1 error, 1 notice in 2 artifacts"
    )
    nothing = Report([])
    assert (conclusion_for(nothing), title_for(nothing)) == ("neutral", "Nothing to scan")
    empty = Report([art("a", scanned=False, files=0)])
    assert (conclusion_for(empty), title_for(empty)) == ("neutral", "Nothing to scan")
    warned = Report([art("a", f(severity=Severity.WARNING))])
    assert conclusion_for(warned) == "success"


def test_summary_layout() -> None:
    report = Report(
        [
            art("clean.zip"),
            art(
                "npm-package",
                f(severity=Severity.NOTICE, line=3),
                f(),
                f(severity=Severity.WARNING),
            ),
            art("empty.zip", scanned=False, files=0),
        ]
    )
    context = SummaryContext(
        run=WorkflowRun("CI", "https://github.com/o/r/actions/runs/7"),
        head_sha="0123456789abcdef" * 2,
        job_id="job-42",
        retained_id="ret-9",
        skipped=(SkippedArtifact("old-build", "expired on 2024-01-01"),),
    )
    summary = render_summary(report, context=context)
    lines = summary.splitlines()
    assert lines[0].startswith("**❌ Failing:** 1 error-level finding")
    assert "- Workflow run: [CI](https://github.com/o/r/actions/runs/7)" in lines
    assert "- Commit: `0123456789ab`" in lines
    assert "- Failing artifacts retained as `release-guard retained show ret-9`" in lines
    assert "- Audit trail: `release-guard audit job-42`" in lines
    assert "- `old-build`: expired on 2024\\-01\\-01" in lines
    assert any(line.startswith("- `empty.zip`: nothing in it could be read") for line in lines)
    overview = [line for line in lines if line.startswith("| `")]
    assert overview[0].startswith(
        "| `npm-package` `dist/npm-package` | 2.0 KiB | 3 | `abababababab`"
    )
    assert overview[-1].endswith("| not scanned: nothing readable in it |")
    rows = [line for line in lines if line.startswith(ROW_STARTS)]
    assert [r.split(" | ")[0] for r in rows] == list(ROW_STARTS)
    assert "`pkg-1.0.0.tgz!/package/dist/x.js.map:3`" in rows[2]
    assert "### `npm-package`: 1 error, 1 warning, 1 notice" in lines
    assert "Not shown" not in summary
    for line in lines:
        if line.startswith("|"):
            assert line.endswith("|")


def test_summary_verdicts() -> None:
    passing = render_summary(
        Report([art("a", f(severity=Severity.WARNING), f(severity=Severity.NOTICE))])
    )
    assert passing.startswith("**✅ Passing** with 1 warning and 1 notice to review.")
    clean = render_summary(Report([art("a"), art("b")]))
    assert clean.startswith("**✅ Passing:** no findings in 2 artifacts")
    assert render_summary(Report([])).startswith("**Nothing was scanned:** no artifacts")
    empty = render_summary(Report([art("a", scanned=False, files=0)]))
    assert empty.startswith("**Nothing was scanned:** the artifacts held no files")


@pytest.mark.parametrize("hostile", HOSTILE)
def test_summary_neutralises_hostile_names_paths_and_messages(hostile: str) -> None:
    report = Report(
        [
            ArtifactReport(
                hostile or "x",
                hostile,
                hostile,
                1,
                1,
                [f(path=f"{hostile}!/{hostile}", message=hostile)],
            )
        ]
    )
    context = SummaryContext(
        run=WorkflowRun(hostile, hostile),
        head_sha=hostile,
        job_id=hostile,
        retained_id=hostile,
        skipped=(SkippedArtifact(hostile, hostile),),
    )
    summary = render_summary(report, context=context)
    CheckOutput("t", summary)
    check_markdown_is_inert(summary)


def without_code_spans(line: str) -> str:
    """The line without its code spans, read as CommonMark does, left to right: a backslash
    escapes the next character outside a span (so an escaped backtick opens nothing), a run
    of backticks opens a span closed by the next run of the same length, and inside a span
    a backslash is only a backslash. Escapes outside spans are kept (the caller checks them).
    """
    out: list[str] = []
    i = 0
    while i < len(line):
        char = line[i]
        if char == "\\" and i + 1 < len(line):
            out.append(line[i : i + 2])
            i += 2
            continue
        if char == "`":
            run = len(line[i:]) - len(line[i:].lstrip("`"))
            fence = "`" * run
            close = i + run
            while True:
                close = line.find(fence, close)
                if close < 0 or line[close + run : close + run + 1] != "`":
                    break
                close += len(line[close:]) - len(line[close:].lstrip("`"))
            if close < 0:  # no closing run: the backticks are literal text
                out.append(fence)
                i += run
                continue
            i = close + run
            continue
        out.append(char)
        i += 1
    return "".join(out)


def check_markdown_is_inert(summary: str) -> None:
    """Every line is ours: table rows have the expected cells, nothing outside code spans
    or escapes can link, mention, or open HTML."""
    fenced = False
    for line in summary.splitlines():
        if line in ("```yaml", "```"):  # our own example block
            fenced = not fenced
            continue
        if fenced:
            assert line.startswith(("- ", "  ")), line
            continue
        if (
            line.startswith("| Severity")
            or line.startswith("| Artifact")
            or line.startswith("| ---")
        ):
            continue
        if line.startswith("|"):
            cells = table_cells(line)
            assert len(cells) in (4, 5), line
        outside_code = without_code_spans(line)
        assert "<" not in outside_code.replace("\\<", ""), line
        assert not LINKY.search(
            outside_code.replace("\\", "").replace("](https://", "")
        ) or outside_code.startswith("- Workflow run: ["), line


def test_summary_with_10000_findings_is_cut_at_a_row_with_a_note() -> None:
    findings = [
        f(
            severity=[Severity.ERROR, Severity.WARNING, Severity.NOTICE][i % 3],
            path=f"pkg-1.0.0.tgz!/package/dist/chunk-{i:05d}.js.map",
            message=f"source map embeds the original source of {i} files (about 2.0 KiB)",
        )
        for i in range(10_000)
    ]
    report = Report([art("npm-package", *findings[:9_000]), art("web.zip", *findings[9_000:])])
    summary = render_summary(report, context=SummaryContext(job_id="1234"))
    assert len(summary) <= MAX_SUMMARY_CHARS
    assert utf8_size(summary) <= MAX_SUMMARY_CHARS
    CheckOutput(title_for(report), summary)
    rows = [line for line in summary.splitlines() if line.startswith(ROW_STARTS)]
    assert all(line.endswith(" |") and len(table_cells(line)) == 4 for line in rows)
    left_out = 10_000 - len(rows)
    assert left_out > 0
    note = summary.splitlines()[-1]
    assert note.startswith(f"**Not shown: {left_out:,} of 10,000 findings**")
    assert "JSON or SARIF" in note and "`release-guard audit 1234`" in note
    # Most serious first: the errors come before any warning.
    severities = [row.split(" | ")[0] for row in rows]
    assert severities == sorted(severities, key=list(ROW_STARTS).index)


def test_summary_with_many_artifacts_and_skips_stays_within_the_limit() -> None:
    report = Report([art(f"artifact-{i}", f()) for i in range(3_000)])
    context = SummaryContext(
        skipped=tuple(SkippedArtifact(f"old-{i}", "expired") for i in range(5_000))
    )
    summary = render_summary(report, context=context)
    assert utf8_size(summary) <= MAX_SUMMARY_CHARS
    assert "| …and 2,900 more artifacts | | | | |" in summary
    assert "- …and 4,950 more" in summary


def test_summary_respects_a_smaller_limit_and_refuses_a_tiny_one() -> None:
    report = Report([art("a", *[f(path=f"p{i}") for i in range(500)])])
    assert utf8_size(render_summary(report, limit=10_000)) <= 10_000
    with pytest.raises(ValueError):
        render_summary(report, limit=100)


finding_strategy = st.builds(
    Finding,
    rule=st.sampled_from(list(Rule)),
    severity=st.sampled_from(list(Severity)),
    path=st.text(st.characters(exclude_categories=()), max_size=400),
    message=st.text(st.characters(exclude_categories=()), max_size=3000),
    line=st.none() | st.integers(min_value=-5, max_value=10**9),
)
artifact_strategy = st.builds(
    ArtifactReport,
    name=ANY_TEXT,
    path=ANY_TEXT,
    sha256=st.none() | ANY_TEXT,
    size=st.integers(min_value=0, max_value=2**50),
    files=st.integers(min_value=0, max_value=10**7),
    findings=st.lists(finding_strategy, max_size=40),
    scanned=st.booleans(),
)
report_strategy = st.builds(Report, artifacts=st.lists(artifact_strategy, max_size=6))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(report=report_strategy, hostile=ANY_TEXT)
def test_any_report_makes_a_valid_check_run(report: Report, hostile: str) -> None:
    context = SummaryContext(
        run=WorkflowRun(hostile, hostile),
        job_id=hostile,
        skipped=(SkippedArtifact(hostile, hostile),),
    )
    update = scan_result(
        report, locate=lambda _: None, fallback_path="package.json", context=context
    )
    assert utf8_size(update.output.summary) <= MAX_SUMMARY_CHARS
    assert len(update.annotations) == len(report.findings)
    for body in update.requests():
        assert len(body["output"].get("annotations", [])) <= 50  # type: ignore[attr-defined]
    ranks = [("failure", "warning", "notice").index(a.annotation_level) for a in update.annotations]
    assert ranks == sorted(ranks)  # most serious first
    paths = [neutralize(x.path) for x in report.findings]
    for note in update.annotations:
        assert any(note.message.startswith(p + ":") for p in paths)  # the artifact path, always
    check_markdown_is_inert(update.output.summary)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(report=report_strategy)
def test_huge_reports_fit(report: Report) -> None:
    big = Report(report.artifacts * 50)
    summary = render_summary(big)
    assert utf8_size(summary) <= MAX_SUMMARY_CHARS
    CheckOutput("t", summary)


# --- annotations --------------------------------------------------------------------------------


def test_annotation_points_at_the_cause_and_keeps_the_artifact_path() -> None:
    finding = f(path="a.zip!/pkg.tgz!/package/x.js.map", line=None)
    where = RepoLocation("webpack.config.js", 16, "devtool: 'source-map' — webpack embeds…", True)
    note = annotation_for(finding, where, fallback_path="package.json")
    assert (note.path, note.start_line, note.end_line) == ("webpack.config.js", 16, 16)
    assert note.annotation_level == "failure"
    assert note.title == "sourcemap/embedded-sources"
    assert note.message.startswith("a.zip!/pkg.tgz!/package/x.js.map: source map embeds")
    assert "Cause: devtool: 'source-map'" in note.message
    guess = RepoLocation("vite.config.ts", 3, "Likely cause: sourcemap: true — …")
    note = annotation_for(f(line=7), guess, fallback_path="package.json")
    assert "\n\nLikely cause: sourcemap" in note.message
    assert note.message.startswith("pkg-1.0.0.tgz!/package/dist/x.js.map:7: ")


def test_annotation_falls_back_when_nothing_is_located() -> None:
    note = annotation_for(
        f(severity=Severity.NOTICE), None, fallback_path=CONFIG_PATH, fallback_line=1
    )
    assert (note.path, note.start_line, note.annotation_level) == (CONFIG_PATH, 1, "notice")
    assert "no line in this repository" in note.message
    assert note.message.startswith("pkg-1.0.0.tgz!/package/dist/x.js.map: ")
    warning = annotation_for(f(severity=Severity.WARNING), None, fallback_path="package.json")
    assert warning.annotation_level == "warning"


def test_annotation_messages_are_neutralised_and_cut_to_size() -> None:
    hostile = f(path="x\n::error::pwned\u202e", message="m\x1b[2J" + "é" * 100_000)
    note = annotation_for(hostile, None, fallback_path="package.json")
    assert note.message.startswith("x\\n::error::pwned\\u202e: m\\x1b[2J")
    assert utf8_size(note.message) <= MAX_ANNOTATION_MESSAGE_BYTES
    assert note.message.endswith("…")
    why = RepoLocation("package.json", 2, "evil\nwhy\u202e")
    assert "evil\\nwhy\\u202e" in annotation_for(f(), why, fallback_path="x").message


def test_annotations_for_orders_and_survives_a_failing_locator() -> None:
    report = Report(
        [
            art(
                "a",
                f(severity=Severity.NOTICE, path="a!/n"),
                f(severity=Severity.WARNING, path="a!/w"),
            ),
            art("b", f(path="b!/e")),
        ]
    )
    calls: list[str] = []

    def locate(finding: Finding) -> RepoLocation | None:
        calls.append(finding.path)
        if finding.path == "a!/w":
            raise RuntimeError("boom")
        if finding.path == "b!/e":
            return RepoLocation("tsconfig.json", 9, "why")
        return None

    notes = annotations_for(report, locate=locate, fallback_path="package.json")
    assert [n.annotation_level for n in notes] == ["failure", "warning", "notice"]
    assert [(n.path, n.start_line) for n in notes] == [
        ("tsconfig.json", 9),
        ("package.json", 1),
        ("package.json", 1),
    ]
    assert calls == ["b!/e", "a!/w", "a!/n"]


def test_scan_result_with_hints_and_many_findings() -> None:
    webpack = "module.exports = {\n  devtool: 'source-map',\n};\n"
    findings = [f(path=f"site.zip!/dist/{i}.js.map") for i in range(120)]
    report = Report([art("site.zip", *findings)])
    update = scan_result(
        report, locate=Hints({"webpack.config.js": webpack}), fallback_path="package.json"
    )
    assert update.conclusion == "failure" and update.status == "completed"
    assert update.output.title == "120 errors in 1 artifact"
    assert {(a.path, a.start_line) for a in update.annotations} == {("webpack.config.js", 2)}
    bodies = update.requests()
    assert [len(b["output"]["annotations"]) for b in bodies] == [50, 50, 20]  # type: ignore[index]


# --- outcomes without a report ----------------------------------------------------------------


def test_nothing_uploaded_without_runs() -> None:
    update = nothing_uploaded(head_sha="0123456789abcdef0123", patterns=["npm-*", "dist"])
    assert (update.status, update.conclusion) == ("completed", "neutral")
    assert update.output.title == "No build artifacts to scan"
    summary = update.output.summary
    assert "No GitHub Actions workflow run has completed for commit `0123456789ab`" in summary
    assert "`actions/upload-artifact`" in summary
    assert "- `npm-*`" in summary and "- `dist`" in summary
    assert "    name: npm-package" in summary
    assert update.annotations == ()


def test_nothing_uploaded_with_runs_and_other_artifacts() -> None:
    update = nothing_uploaded(
        head_sha="abc",
        patterns=["release-?"],
        runs=[WorkflowRun("CI", "https://github.com/o/r/actions/runs/1", "success")],
        other_artifacts=["coverage", "@evil <img>"],
    )
    summary = update.output.summary
    assert "- [CI](https://github.com/o/r/actions/runs/1) (success)" in summary
    assert "- `coverage`" in summary and "- `@evil <img>`" in summary
    assert "    name: release-x" in summary
    check_markdown_is_inert(summary)


def test_nothing_uploaded_without_patterns_and_with_hostile_ones() -> None:
    assert "every artifact is scanned" in nothing_uploaded(head_sha="a", patterns=[]).output.summary
    hostile = nothing_uploaded(head_sha="a", patterns=["x\n```\n@all", "[ab]*"])
    assert "    name: npm-package" in hostile.output.summary  # no safe example from those
    assert "```\n@all" not in hostile.output.summary


def test_lists_in_outcomes_stay_within_the_limit() -> None:
    names = [f"artifact-{i:06d}-" + "x" * 100 for i in range(20_000)]
    for update in (
        artifacts_expired(names=names),
        nothing_uploaded(head_sha="a", patterns=names, other_artifacts=names),
        waiting_for_builds(runs=[WorkflowRun(n) for n in names]),
    ):
        assert utf8_size(update.output.summary) <= MAX_SUMMARY_CHARS
        assert re.search(r"- …and [\d,]+ more", update.output.summary)


def test_artifacts_expired() -> None:
    update = artifacts_expired(
        names=["npm-package", "site"],
        runs=[WorkflowRun("Release", "https://github.com/o/r/actions/runs/2")],
    )
    assert (update.conclusion, update.output.title) == ("neutral", "Build artifacts expired")
    summary = update.output.summary
    assert "- `npm-package`" in summary and "- `site`" in summary
    assert "Re-run all jobs" in summary
    assert "[Release](https://github.com/o/r/actions/runs/2)" in summary


def test_waiting_for_builds_is_queued() -> None:
    update = waiting_for_builds(runs=[WorkflowRun("CI", None, "in_progress")])
    assert (update.status, update.conclusion) == ("queued", None)
    assert update.output.title == "Waiting for builds"
    assert "- CI (in\\_progress)" in update.output.summary
    assert update.requests()[0]["status"] == "queued"
    assert "when its workflow runs complete" in waiting_for_builds(runs=[]).output.summary


def test_could_not_finish_fails_explicitly() -> None:
    update = could_not_finish(
        reason="GitHub answered 502 <html> @octocat",
        attempts=3,
        context=SummaryContext(job_id="77"),
    )
    assert (update.status, update.conclusion) == ("completed", "failure")
    assert update.output.title == "release-guard could not finish"
    summary = update.output.summary
    assert "after 3 attempts: GitHub answered 502 \\<html\\> \\@\u2060octocat" in summary
    assert "`release-guard audit 77`" in summary
    assert "rather than passing" in summary
    assert "after" not in could_not_finish(reason="x").output.summary.split(":")[0]


def test_invalid_config_annotates_the_line() -> None:
    error = ConfigError(
        "rules: unknown rule 'sourcemap/embeded' (did you mean …)", path=CONFIG_PATH, line=7
    )
    update = invalid_config(error)
    assert (update.status, update.conclusion) == ("completed", "failure")
    assert update.output.title == "Invalid release-guard configuration"
    (note,) = update.annotations
    assert (note.path, note.start_line, note.end_line, note.annotation_level) == (
        CONFIG_PATH,
        7,
        7,
        "failure",
    )
    assert note.message == error.detail
    assert f"`{CONFIG_PATH}, line 7`" in update.output.summary
    assert update.requests()[0]["output"]["annotations"] == [note.to_api()]  # type: ignore[index]


def test_invalid_config_without_a_line_or_in_another_repository() -> None:
    no_line = invalid_config(ConfigError("not valid UTF-8", path=CONFIG_PATH))
    assert no_line.annotations[0].start_line == 1
    org = invalid_config(ConfigError("bad", path="acme/.github:.github/release-guard.yml", line=3))
    assert org.annotations == ()
    assert "acme/.github" in org.output.summary
    hostile = invalid_config(
        ConfigError("deny[0] '<img onerror>\n@all': bad", path=CONFIG_PATH, line=2)
    )
    assert "\\<img onerror\\>\\\\n\\@\u2060all" in hostile.output.summary
    assert hostile.annotations[0].message == "deny[0] '<img onerror>\\n@all': bad"


def test_invalid_config_with_context() -> None:
    update = invalid_config(
        ConfigError("bad", path=CONFIG_PATH, line=1), context=SummaryContext(head_sha="abcdef")
    )
    assert "- Commit: `abcdef`" in update.output.summary
