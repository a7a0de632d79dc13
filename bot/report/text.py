"""Render a scan report for people reading a terminal, and neutralise untrusted text for it.

Paths and messages come from the archives being scanned, so an attacker chooses them. Every
string that reaches a human-facing format goes through `neutralize` first: a member called
``"\\x1b[2J"`` is shown as the six characters ``\\x1b[2J``, it does not clear the screen.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from bot.engine.model import ArtifactReport, Conclusion, Finding, Report, Severity

# Unicode general categories that never belong raw in a one-line display of a name:
#   Cc  controls (C0, DEL, C1 — ESC and CSI start terminal escape sequences; NEL, VT, FF and
#       the information separators count as line breaks for some readers),
#   Cf  format characters (bidirectional overrides and isolates that can reorder a displayed
#       name, zero-width characters that hide in it, the BOM),
#   Zl, Zp  the Unicode line and paragraph separators,
#   Cs  lone surrogates (from undecodable bytes), which no encoder accepts.
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

SEVERITY_ORDER: dict[Severity, int] = {severity: rank for rank, severity in enumerate(Severity)}
"""Most serious first: error, warning, notice (the order `Severity` declares them in)."""

_SGR_RESET = "\x1b[0m"
_SEVERITY_STYLE = {
    Severity.ERROR: "1;31",  # bold red
    Severity.WARNING: "1;33",  # bold yellow
    Severity.NOTICE: "1;36",  # bold cyan
}
_CONCLUSION_STYLE = {
    Conclusion.FAILURE: "1;31",
    Conclusion.SUCCESS: "1;32",  # bold green
    Conclusion.NEUTRAL: "1;33",
}
_BOLD = "1"
_DIM = "2"
_SHORT_SHA = 12
_SEVERITY_WIDTH = max(len(s.value) for s in Severity)


def neutralize(text: str, *, keep: str = "") -> str:
    """Return `text` with every control, format or separator character made visible.

    Such a character becomes a backslash escape (``\\x1b``, ``\\u202e``, ``\\n``), so the
    result is safe to print on a terminal or in a CI log: no escape sequence, no line break,
    no bidirectional reordering, no invisible character, no lone surrogate. Characters listed
    in `keep` pass through unchanged (the GitHub renderer keeps CR and LF because GitHub's own
    escaping encodes them). Backslashes are left as they are: Windows paths stay readable, at
    the price of an escape and a literal backslash sequence looking alike.
    """
    if text.isprintable():  # the common case: nothing in an unsafe category
        return text
    parts = []
    for char in text:
        if char in keep or unicodedata.category(char) not in _UNSAFE_CATEGORIES:
            parts.append(char)
        elif char in _SHORT_ESCAPES:
            parts.append(_SHORT_ESCAPES[char])
        else:
            code = ord(char)
            if code <= 0xFF:
                parts.append(f"\\x{code:02x}")
            elif code <= 0xFFFF:
                parts.append(f"\\u{code:04x}")
            else:
                parts.append(f"\\U{code:08x}")
    return "".join(parts)


def finding_sort_key(finding: Finding) -> tuple[int, str, bool, int, str, str]:
    """Order findings by severity (errors first), then path, line, rule and message."""
    return (
        SEVERITY_ORDER[finding.severity],
        finding.path,
        finding.line is not None,
        finding.line or 0,
        finding.rule.value,
        finding.message,
    )


def ordered_findings(artifact: ArtifactReport) -> list[Finding]:
    """Return the artifact's findings in display order (see `finding_sort_key`)."""
    return sorted(artifact.findings, key=finding_sort_key)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def summary_line(report: Report) -> str:
    """Return ``"N errors, N warnings, N notices — conclusion"`` for the whole report."""
    counts = report.summary
    tallies = ", ".join(_plural(counts[s.value], s.value) for s in Severity)
    return f"{tallies} — {report.conclusion.value}"


def human_size(size: int) -> str:
    """Return `size` bytes in binary units: ``512 B``, ``1.5 KiB``, ``20.0 MiB``."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if round(value, 1) < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} PiB"


class _Painter:
    """Wrap text in ANSI SGR sequences (ECMA-48 §8.3.117), or leave it alone."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled

    def __call__(self, text: str, style: str) -> str:
        if not self._enabled or not text:
            return text
        return f"\x1b[{style}m{text}{_SGR_RESET}"


def _location(finding: Finding) -> str:
    path = neutralize(finding.path)
    return f"{path}:{finding.line}" if finding.line is not None else path


def _artifact_lines(artifact: ArtifactReport, paint: _Painter) -> Iterable[str]:
    name = neutralize(artifact.name)
    path = neutralize(artifact.path)
    header = paint(name, _BOLD)
    if path and path != name:
        header += f" ({path})"
    yield header

    details = [_plural(artifact.files, "file"), human_size(artifact.size)]
    if artifact.sha256:
        details.append(f"sha256 {neutralize(artifact.sha256[:_SHORT_SHA])}")
    if not artifact.scanned:
        details.append("nothing could be scanned")
    yield "  " + paint(", ".join(details), _DIM)

    findings = ordered_findings(artifact)
    if not findings:
        yield "  no findings"
    indent = " " * (2 + _SEVERITY_WIDTH + 1)
    for finding in findings:
        label = finding.severity.value.upper().ljust(_SEVERITY_WIDTH)
        severity = paint(label, _SEVERITY_STYLE[finding.severity])
        yield f"  {severity} {finding.rule.value} {_location(finding)}"
        yield f"{indent}{neutralize(finding.message)}"


def render_text(report: Report, *, color: bool = False) -> str:
    """Render `report` for a human: one block per artifact, then a summary line.

    Each block names the artifact (name, path, file count, size, short SHA-256), then lists
    its findings, most serious first, as ``SEVERITY rule path[:line]`` followed by the
    message on its own indented line. ANSI colour is used only when `color` is true; the CLI
    decides that (a terminal, and ``NO_COLOR`` unset — https://no-color.org). Every string
    from the scanned archives is passed through `neutralize`.
    """
    paint = _Painter(color)
    lines: list[str] = []
    if not report.artifacts:
        lines.append("no artifacts were scanned")
    for artifact in report.artifacts:
        lines.extend(_artifact_lines(artifact, paint))
        lines.append("")
    if lines[-1] != "":
        lines.append("")
    lines.append(paint(summary_line(report), _CONCLUSION_STYLE[report.conclusion]))
    return "\n".join(lines) + "\n"
