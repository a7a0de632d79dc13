"""Render the scan report as GitHub Actions workflow commands: one annotation per finding.

Each finding becomes one line, ``::error file=PATH,line=N,title=RULE::MESSAGE`` (``warning``
and ``notice`` likewise), and a plain summary line ends the output. ``file=`` is the file on
disk as given on the command line; for a finding inside an archive that is the outer archive,
the member path leads the message (``package/cli.js:54: …``) and ``line=`` is left out, since
the line is one of the member's, not of the archive.

Member names are chosen by whoever built the archive, so the output must never let one of them
start a workflow command of its own. The runner reads its output line by line and treats a
line whose first non-blank characters are ``::`` as a command; everything after the second
``::`` is that command's data. So:

- every line written here starts with ``::`` and a command name, or with ``release-guard:``;
  untrusted text only ever appears after a command's data or property separator, where ``::``
  (``x::error::pwned``) is inert, and ``::stop-commands::`` and friends cannot be reached;
- no untrusted text can end the line: CR and LF are encoded as ``%0D``/``%0A`` the way
  @actions/core's ``escapeData``/``escapeProperty`` do (the runner decodes them back), and every
  other line-breaking, control or format character is made visible by `neutralize`;
- property values additionally encode ``:`` and ``,``, which would end the value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

from bot.engine.model import ArtifactReport, Finding, Report, Severity
from bot.report.locations import locate
from bot.report.text import neutralize, ordered_findings, summary_line

COMMAND: Final[dict[Severity, str]] = {
    Severity.ERROR: "error",
    Severity.WARNING: "warning",
    Severity.NOTICE: "notice",
}


def escape_data(text: str) -> str:
    """Encode a command's data as @actions/core does: ``%``, CR and LF."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Encode a command property's value: as `escape_data`, plus ``:`` and ``,``."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def workflow_command(name: str, properties: Mapping[str, str], message: str) -> str:
    """Return one ``::name key=value,…::message`` line (without its newline), all escaped."""
    line = f"::{name}"
    if properties:
        line += " " + ",".join(
            f"{key}={escape_property(value)}" for key, value in properties.items()
        )
    return f"{line}::{escape_data(message)}"


def annotation(artifact: ArtifactReport, finding: Finding) -> str:
    """Return the workflow command that annotates `finding` (one of `artifact`'s)."""
    where = locate(artifact, finding)
    properties: dict[str, str] = {}
    file = neutralize(where.file)
    if file:
        properties["file"] = file
    if where.file_line is not None:
        properties["line"] = str(where.file_line)
    properties["title"] = finding.rule.value
    # Messages may span lines on purpose: CR and LF stay, escape_data encodes them.
    message = neutralize(finding.message, keep="\r\n")
    label = where.member_label
    if label is not None:
        message = f"{neutralize(label)}: {message}"
    return workflow_command(COMMAND[finding.severity], properties, message)


def _lines(report: Report) -> Iterable[str]:
    for artifact in report.artifacts:
        for finding in ordered_findings(artifact):
            yield annotation(artifact, finding)
    yield f"release-guard: {summary_line(report)}"


def render_github(report: Report) -> str:
    """Render `report` as workflow commands, one per finding, then a summary line."""
    return "\n".join(_lines(report)) + "\n"
