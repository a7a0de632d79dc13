"""`bot.report.render`: the one entry point the CLI calls, for every format."""

from __future__ import annotations

import pytest

from bot.engine.model import ArtifactReport, Finding, Report, Rule, Severity
from bot.report import FORMATS, render
from bot.report.github import render_github
from bot.report.json_report import render_json
from bot.report.sarif import render_sarif
from bot.report.text import render_text


def sample() -> Report:
    finding = Finding(Rule.FORBIDDEN, Severity.ERROR, "a.zip!/.env", "an env file.")
    return Report([ArtifactReport("a.zip", "out/a.zip", "ef" * 32, 9, 1, [finding])])


def test_formats_are_the_four_the_contract_names() -> None:
    assert FORMATS == ("text", "json", "sarif", "github")


@pytest.mark.parametrize(
    ("fmt", "renderer"),
    [("json", render_json), ("sarif", render_sarif), ("github", render_github)],
)
def test_each_format_dispatches_to_its_renderer(fmt: str, renderer: object) -> None:
    assert callable(renderer)
    assert render(sample(), fmt) == renderer(sample())
    assert render(sample(), fmt, color=True) == renderer(sample())  # colour is text's alone


def test_text_honours_color() -> None:
    assert render(sample(), "text") == render_text(sample(), color=False)
    coloured = render(sample(), "text", color=True)
    assert coloured == render_text(sample(), color=True)
    assert "\x1b[" in coloured and "\x1b[" not in render(sample(), "text")


def test_every_format_renders_an_empty_report_and_ends_with_a_newline() -> None:
    for fmt in FORMATS:
        assert render(Report(), fmt).endswith("\n")


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown report format 'xml'"):
        render(sample(), "xml")
