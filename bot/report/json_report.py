"""Render the scan report as CONTRACT.md's JSON, and serialise JSON safely for every format.

The JSON report is data, so strings keep their exact value: nothing is neutralised. Only the
serialisation is made safe. ``json.dumps(ensure_ascii=False)`` would write some characters raw
that do harm: a lone surrogate (from an archive member name that is not valid UTF-8) cannot be
encoded as UTF-8, so writing the report would crash; and DEL, the C1 controls (CSI starts a
terminal escape sequence), bidirectional overrides and the Unicode line separators would reach a
terminal or a log untouched. `json_text` writes each of those as a ``\\uXXXX`` escape instead,
which any JSON parser turns back into the same string.
"""

from __future__ import annotations

import json
import re
import unicodedata

from bot.engine.model import Report

# The categories `bot.report.text.neutralize` makes visible: controls, format characters, line
# and paragraph separators, lone surrogates.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# json.dumps escapes every C0 control inside strings, so a raw newline in its output is always
# indentation; a run of anything else outside printable ASCII is a candidate for escaping.
_CANDIDATE = re.compile(r"[^\n\x20-\x7e]+")


def _escape_run(match: re.Match[str]) -> str:
    """Escape the unsafe characters of a run; a printable run (every escaped category is
    non-printable) is kept whole, so text in any script costs one call per run, not per
    character (a name of 65,535 non-ASCII characters once took a Python call each)."""
    run = match.group()
    if run.isprintable():
        return run
    return "".join(_escape(char) for char in run)


def _escape(char: str) -> str:
    if unicodedata.category(char) not in _ESCAPED_CATEGORIES:
        return char
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    # JSON escapes only reach U+FFFF: a supplementary character is written as its UTF-16 pair.
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_text(document: object) -> str:
    """Return `document` as indented JSON text ending in a newline, safe to write as UTF-8.

    Keys keep the order the document gives them. Non-ASCII text stays readable; lone
    surrogates and the characters that are unsafe on a terminal are ``\\uXXXX`` escapes. (A
    high surrogate directly followed by a low one is read back as the character the pair
    encodes, as with any JSON encoder; names decoded with ``surrogateescape`` only ever hold
    low surrogates.)
    """
    text = json.dumps(document, ensure_ascii=False, indent=2, allow_nan=False)
    return _CANDIDATE.sub(_escape_run, text) + "\n"


def render_json(report: Report) -> str:
    """Render `report` as the JSON document CONTRACT.md specifies (`Report.to_dict`)."""
    return json_text(report.to_dict())
