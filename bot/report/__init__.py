"""Render a scan report in each format `release-guard scan --format` offers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from bot.engine.model import Report
from bot.report.github import render_github
from bot.report.json_report import render_json
from bot.report.sarif import render_sarif
from bot.report.text import render_text

FORMATS: Final = ("text", "json", "sarif", "github")
"""The format names, in the order `--help` lists them; ``text`` is the default."""

_PLAIN_RENDERERS: Final[dict[str, Callable[[Report], str]]] = {
    "json": render_json,
    "sarif": render_sarif,
    "github": render_github,
}


def render(report: Report, fmt: str, *, color: bool = False) -> str:
    """Return `report` rendered in format `fmt`, one of FORMATS.

    `color` asks for ANSI colour and only the text format has any; the caller decides (a
    terminal, ``NO_COLOR`` unset). Raises ValueError for a name not in FORMATS.
    """
    if fmt == "text":
        return render_text(report, color=color)
    renderer = _PLAIN_RENDERERS.get(fmt)
    if renderer is None:
        raise ValueError(f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return renderer(report)


__all__ = ["FORMATS", "render"]
