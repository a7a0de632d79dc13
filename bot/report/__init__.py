"""Render a scan report in each format `release-guard scan --format` offers."""

from __future__ import annotations

import importlib
from typing import Final

from bot.engine.model import Report
from bot.report.text import render_text

FORMATS: Final = ("text", "json", "sarif", "github")
"""The format names, in the order `--help` lists them; ``text`` is the default."""

_PLAIN_RENDERERS: Final[dict[str, tuple[str, str]]] = {
    "json": ("bot.report.json_report", "render_json"),
    "sarif": ("bot.report.sarif", "render_sarif"),
    "github": ("bot.report.github", "render_github"),
}
"""Module and function of each format but text; imported on use, so that a scan loads
only the renderer it prints with."""


def render(report: Report, fmt: str, *, color: bool = False) -> str:
    """Return `report` rendered in format `fmt`, one of FORMATS.

    `color` asks for ANSI colour and only the text format has any; the caller decides (a
    terminal, ``NO_COLOR`` unset). Raises ValueError for a name not in FORMATS.
    """
    if fmt == "text":
        return render_text(report, color=color)
    where = _PLAIN_RENDERERS.get(fmt)
    if where is None:
        raise ValueError(f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}")
    module, function = where
    rendered: str = getattr(importlib.import_module(module), function)(report)
    return rendered


__all__ = ["FORMATS", "render"]
