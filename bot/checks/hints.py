"""Find the repository line that most likely causes a finding.

A finding is about a file in a build artifact (``a.zip!/pkg-1.0.0.tgz!/package/x.js.map``);
the person fixing it needs the line in the repository that put it there: the bundler option
that writes source maps with their sources, the package.json ``"files"`` entry that lets a
file into the npm package, the deny pattern of `.github/release-guard.yml` that it matches.

The handler fetches `CANDIDATE_PATHS` at the scanned commit (the contents API, one request
each) and passes what exists as a mapping of path to text; a path missing from the mapping is
taken to be absent from the repository. `Hints(files)` is then the ``locate`` callback of
`bot.checks.output.annotations_for`.

Everything here is textual and conservative. Config files are JavaScript, TypeScript or JSON
with comments; comments are blanked out before any search (so a commented-out
``// devtool: 'source-map'`` is never the answer), JSON files are read by a small tolerant
parser that keeps each key's offset, and JS/TS options are found with regular expressions
that skip string contents. A location is returned only when a setting credibly explains the
finding; `RepoLocation.certain` is false and `why` starts with "Likely cause" whenever it is a
guess (several settings could explain it, the value is computed, the file may not be the one
that built this artifact). Nothing credible gives None, never a wrong pointer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

import yaml
from pathspec import PathSpec
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bot.config import CONFIG_PATH
from bot.engine.model import Finding, Rule

PACKAGE_JSON: Final = "package.json"
NPMIGNORE: Final = ".npmignore"
TSCONFIGS: Final = ("tsconfig.build.json", "tsconfig.json", "jsconfig.json")
"""The build tsconfig first: when a repository has one, it is the one releases are built with."""
WEBPACK_CONFIGS: Final = (
    "webpack.config.js",
    "webpack.config.ts",
    "webpack.config.mjs",
    "webpack.config.cjs",
)
VITE_CONFIGS: Final = ("vite.config.ts", "vite.config.js", "vite.config.mjs")
ROLLUP_CONFIGS: Final = ("rollup.config.js", "rollup.config.mjs", "rollup.config.ts")
ESBUILD_CONFIGS: Final = ("esbuild.config.js", "esbuild.config.mjs")
TSUP_CONFIGS: Final = ("tsup.config.ts", "tsup.config.js")

CANDIDATE_PATHS: Final[tuple[str, ...]] = (
    PACKAGE_JSON,
    *TSCONFIGS,
    *WEBPACK_CONFIGS,
    *VITE_CONFIGS,
    *ROLLUP_CONFIGS,
    *ESBUILD_CONFIGS,
    *TSUP_CONFIGS,
    NPMIGNORE,
    CONFIG_PATH,
)
"""The repository files the handler fetches at the scanned commit (build scripts are read
from package.json). Kept short on purpose: each is one contents API request."""

MAX_FILE_CHARS: Final = 1_000_000
"""Larger files are ignored: the contents API serves files up to 1 MB ("Get repository
content", docs.github.com), and no build config is anywhere near that."""

_SHOWN: Final = 80
"""At most this many characters of a repository value are quoted in `why`."""


@dataclass(frozen=True, slots=True)
class RepoLocation:
    """A line of the repository that causes a finding, and why.

    - `path`: repository-relative, ``/``-separated (one of `CANDIDATE_PATHS`).
    - `line`: 1-based.
    - `why`: one or two sentences for the annotation: which setting, what it does, how to
      stop it. It starts with "Likely cause" when the pointer is a guess.
    - `certain`: true only when a literal setting explains the finding and nothing else does.
    """

    path: str
    line: int
    why: str
    certain: bool = False

    def __post_init__(self) -> None:
        if not self.path or self.path.startswith("/"):
            raise ValueError(f"a repository path must be relative and non-empty: {self.path!r}")
        if self.line < 1:
            raise ValueError(f"lines are 1-based, not {self.line}")


Locator = Callable[[Finding], "RepoLocation | None"]
"""What `bot.checks.output.annotations_for` calls for each finding."""


# --- reading JS/TS and JSON-with-comments ---------------------------------------------------

# A string literal (possibly unterminated: it then stops at the end of its line, so one stray
# quote cannot swallow the file), a template literal, or a comment.
_TOKEN = re.compile(
    r"""
      "(?:[^"\\\n]|\\.)*"?
    | '(?:[^'\\\n]|\\.)*'?
    | `(?:[^`\\]|\\.)*`?
    | //[^\n]*
    | /\*.*?(?:\*/|\Z)
    """,
    re.S | re.X,
)
_NOT_NEWLINE = re.compile(r"[^\n]")
_WORDISH = re.compile(r"[\w$@./-]*")
_STRING = re.compile(r"""(["'`])((?:(?!\1)[^\\]|\\.)*)\1""", re.S)


def blank_comments(text: str) -> str:
    """Return `text` with every comment replaced by spaces; strings, lengths, lines kept."""

    def replace(match: re.Match[str]) -> str:
        token = match.group()
        return token if token[0] in "\"'`" else _NOT_NEWLINE.sub(" ", token)

    return _TOKEN.sub(replace, text)


def _mask_strings(blanked: str) -> str:
    """Blank the contents of strings that are not a single word, so no key is found in them.

    ``'devtool'`` (a quoted key) and ``'source-map'`` stay; ``"see devtool: x"`` does not.
    """

    def replace(match: re.Match[str]) -> str:
        token = match.group()
        if token[0] not in "\"'`" or _WORDISH.fullmatch(token[1:-1]):
            return token
        return token[0] + _NOT_NEWLINE.sub(" ", token[1:-1]) + token[-1]

    return _TOKEN.sub(replace, blanked)


def line_of(text: str, offset: int) -> int:
    """The 1-based line of `offset` in `text`."""
    return text.count("\n", 0, offset) + 1


class _JsonError(ValueError):
    pass


JsonPath = tuple[str | int, ...]


@dataclass(slots=True)
class JsonDoc:
    """A JSON document and where each member starts: key offsets, array item offsets."""

    value: object
    offsets: dict[JsonPath, int]

    def get(self, *path: str | int) -> object:
        """The value at `path`, or None."""
        node = self.value
        for part in path:
            if isinstance(part, str) and isinstance(node, dict):
                node = node.get(part)
            elif isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
                node = node[part]
            else:
                return None
        return node


_JSON_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_JSON_SPACE = re.compile(r"\s*")
_JSON_WORDS: Final[dict[str, object]] = {"true": True, "false": False, "null": None}
_MAX_JSON_DEPTH: Final = 64


class _JsonReader:
    """A JSON reader that tolerates comments (pre-blanked) and trailing commas (tsconfig's
    "JSONC") and records the offset of every object key and array item."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.offsets: dict[JsonPath, int] = {}

    def read(self) -> JsonDoc:
        value = self._value((), 0)
        self._space()
        if self.pos != len(self.text):
            raise _JsonError("trailing data")
        return JsonDoc(value, self.offsets)

    def _space(self) -> None:
        match = _JSON_SPACE.match(self.text, self.pos)
        self.pos = match.end() if match else self.pos

    def _value(self, path: JsonPath, depth: int) -> object:
        if depth > _MAX_JSON_DEPTH:
            raise _JsonError("too deep")
        self._space()
        char = self.text[self.pos : self.pos + 1]
        if char == "{":
            return self._object(path, depth)
        if char == "[":
            return self._array(path, depth)
        if char == '"':
            return self._string()
        for word, value in _JSON_WORDS.items():
            if self.text.startswith(word, self.pos):
                self.pos += len(word)
                return value
        match = _JSON_NUMBER.match(self.text, self.pos)
        if match is None:
            raise _JsonError(f"unexpected {char!r}")
        self.pos = match.end()
        return json.loads(match.group())

    def _string(self) -> str:
        match = _JSON_STRING.match(self.text, self.pos)
        if match is None:
            raise _JsonError("bad string")
        self.pos = match.end()
        try:
            value = json.loads(match.group())
        except json.JSONDecodeError as exc:
            raise _JsonError("bad string") from exc
        return str(value)

    def _expect(self, char: str) -> bool:
        self._space()
        if self.text.startswith(char, self.pos):
            self.pos += 1
            return True
        return False

    def _object(self, path: JsonPath, depth: int) -> dict[str, object]:
        self.pos += 1
        result: dict[str, object] = {}
        while not self._expect("}"):
            self._space()
            start = self.pos
            key = self._string()
            if not self._expect(":"):
                raise _JsonError("expected ':'")
            self.offsets[(*path, key)] = start
            result[key] = self._value((*path, key), depth + 1)
            if not self._expect(","):
                if not self._expect("}"):
                    raise _JsonError("expected ',' or '}'")
                break
        return result

    def _array(self, path: JsonPath, depth: int) -> list[object]:
        self.pos += 1
        result: list[object] = []
        while not self._expect("]"):
            self._space()
            self.offsets[(*path, len(result))] = self.pos
            result.append(self._value((*path, len(result)), depth + 1))
            if not self._expect(","):
                if not self._expect("]"):
                    raise _JsonError("expected ',' or ']'")
                break
        return result


def read_jsonc(text: str) -> JsonDoc | None:
    """Parse JSON with comments and trailing commas, keeping offsets; None if unreadable."""
    try:
        return _JsonReader(blank_comments(text.removeprefix("\ufeff"))).read()
    except (_JsonError, RecursionError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class JsValue:
    """The value of a JS/TS object property, as far as the text tells.

    `literal` is true when the value is one literal (``'source-map'``, ``true``); otherwise
    `options` lists the literals an expression can yield (``isProd ? 'source-map' : false``
    gives ``('source-map', False)``), possibly none (``process.env.DEVTOOL``).
    """

    raw: str
    literal: bool
    options: tuple[str | bool, ...]


@dataclass(frozen=True, slots=True)
class JsProperty:
    """One ``key: value`` found in a JS/TS file."""

    offset: int
    line: int
    value: JsValue


class JsFile:
    """A JS/TS config file: its comment-free text and a way to find ``key: value`` pairs."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.blanked = blank_comments(text)
        self.masked = _mask_strings(self.blanked)

    def properties(self, key: str) -> list[JsProperty]:
        """Every ``key: value`` (or ``'key': value``) outside comments and strings."""
        pattern = re.compile(rf"""(?<![\w$.])(?:(["']){re.escape(key)}\1|{re.escape(key)})\s*:""")
        found = []
        for match in pattern.finditer(self.masked):
            if self.masked.startswith(":", match.end()) or _is_ternary_else(self.masked, match):
                continue  # `a ? key : b`, or `key::` (not a property)
            raw = _read_value(self.blanked, match.end())
            found.append(
                JsProperty(match.start(), line_of(self.text, match.start()), _classify(raw))
            )
        return found

    def assignments(self, dotted: str) -> list[JsProperty]:
        """Every ``….dotted = value`` assignment (``options.sourcesContent = false``)."""
        pattern = re.compile(rf"(?<![\w$])(?:[\w$]+\.)*{re.escape(dotted)}\s*=(?![=>])")
        return [
            JsProperty(
                m.start(),
                line_of(self.text, m.start()),
                _classify(_read_value(self.blanked, m.end())),
            )
            for m in pattern.finditer(self.masked)
        ]

    def string_values(self, *keys: str) -> list[str]:
        """The string literals in the values of `keys` (for output folders)."""
        values: list[str] = []
        for key in keys:
            for prop in self.properties(key):
                values.extend(o for o in prop.value.options if isinstance(o, str))
        return values


def _is_ternary_else(masked: str, match: re.Match[str]) -> bool:
    """Whether the key is the middle of ``cond ? key : other``."""
    before = masked[max(0, match.start() - 200) : match.start()].rstrip()
    return before.endswith("?")


def _read_value(text: str, pos: int) -> str:
    """The expression after a property's colon: up to a `,`, `;`, closing bracket or line end
    at depth 0 (strings and nested brackets skipped)."""
    depth = 0
    index = pos
    limit = min(len(text), pos + 2000)
    while index < limit:
        char = text[index]
        if char in "\"'`":
            match = _STRING.match(text, index)
            index = match.end() if match else index + 1
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            if depth == 0:
                break
            depth -= 1
        elif depth == 0 and (char in ",;" or (char == "\n" and _ends_value(text, pos, index))):
            break
        index += 1
    return text[pos:index].strip()


_CONTINUES_BEFORE: Final = ("=>", "?", ":", "||", "&&", "??", "+", "=", "(")
_CONTINUES_AFTER: Final = re.compile(r"\s*(?:[?:.+]|\|\||&&)")


def _ends_value(text: str, pos: int, newline: int) -> bool:
    """Whether a line break ends a value: not when an operator ends this line or starts the
    next (``isProd\n  ? 'source-map'\n  : false``, ``(info) =>\n  info.path``)."""
    before = text[pos:newline].rstrip()
    if not before or before.endswith(_CONTINUES_BEFORE):
        return False
    return _CONTINUES_AFTER.match(text, newline + 1) is None


_BOOL_WORD = re.compile(r"(?<![\w$.])(true|false)(?![\w$])")


def _classify(raw: str) -> JsValue:
    if raw in ("true", "!0"):
        return JsValue(raw, True, (True,))
    if raw in ("false", "!1"):
        return JsValue(raw, True, (False,))
    match = _STRING.fullmatch(raw)
    if match and not (match.group(1) == "`" and "${" in match.group(2)):
        return JsValue(raw, True, (match.group(2),))
    options: list[str | bool] = [m.group(2) for m in _STRING.finditer(raw)]
    without_strings = _STRING.sub(" ", raw)
    options.extend(m.group(1) == "true" for m in _BOOL_WORD.finditer(without_strings))
    return JsValue(raw, False, tuple(options))


def _shown(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


# --- what a setting does to source maps -----------------------------------------------------


class Effect(Enum):
    """What a build setting does, in the terms of the sourcemap rules."""

    FILE = "writes .map files"
    REFERENCE = "adds a sourceMappingURL comment that points at a .map file"
    INLINE = "puts the source map inline, in a data: URL inside the output file"
    EMBEDS = "embeds the original source code in the maps (sourcesContent)"
    DECLARATION = "writes declaration maps (.d.ts.map)"


_RULE_EFFECT: Final[dict[Rule, Effect]] = {
    Rule.EMBEDDED_SOURCES: Effect.EMBEDS,
    Rule.MAP_FILE: Effect.FILE,
    Rule.INLINE_MAP: Effect.INLINE,
    Rule.REFERENCE: Effect.REFERENCE,
}

_EXPLICIT, _LITERAL, _COMPUTED, _WEAK = range(4)
"""How credible a setting is as the cause: an option that is about embedding sources and set
literally; a literal value that has the effect; an expression that can have it; a setting
that only might (an unknown computed value, an inherited tsconfig)."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One build setting found in the repository, and what it does."""

    path: str
    line: int
    tool: str
    shown: str
    effects: frozenset[Effect]
    tier: int
    fixes: Mapping[Effect, str]
    out_dirs: frozenset[str] = frozenset()
    makes_css: bool = True

    def where(self) -> str:
        return f"{self.path}:{self.line}"


_NO_EFFECT: Final[frozenset[Effect]] = frozenset()
_LINKED: Final = frozenset({Effect.FILE, Effect.REFERENCE})


def webpack_devtool_effects(value: str | bool) -> frozenset[Effect]:
    """What a webpack ``devtool`` value does (webpack docs, "Devtool").

    ``[inline-|hidden-|eval-][nosources-][cheap-[module-]]source-map``: every variant with
    ``source-map`` makes maps; ``inline-`` and ``eval-`` put them in the output; ``hidden-``
    leaves out the comment; only ``nosources-`` leaves out sourcesContent.
    """
    if not isinstance(value, str) or "source-map" not in value:
        return _NO_EFFECT  # false, "eval" (no map), or unknown
    effects: set[Effect] = set()
    if "inline" in value or value.startswith("eval"):
        effects.add(Effect.INLINE)
    else:
        effects.add(Effect.FILE)
        if "hidden" not in value:
            effects.add(Effect.REFERENCE)
    if "nosources" not in value:
        effects.add(Effect.EMBEDS)
    return frozenset(effects)


def rollup_sourcemap_effects(value: str | bool, *, excludes_sources: bool) -> frozenset[Effect]:
    """Rollup's and Vite's ``sourcemap``: true, 'inline' or 'hidden'; sources are embedded
    unless ``sourcemapExcludeSources`` is set (Rollup docs, "output.sourcemap")."""
    if value is True or value == "true":
        effects = set(_LINKED)
    elif value == "inline":
        effects = {Effect.INLINE}
    elif value == "hidden":
        effects = {Effect.FILE}
    else:
        return _NO_EFFECT
    if not excludes_sources:
        effects.add(Effect.EMBEDS)
    return frozenset(effects)


def esbuild_sourcemap_effects(value: str | bool, *, sources_content: bool) -> frozenset[Effect]:
    """esbuild's ``sourcemap``: true/'linked', 'external', 'inline', 'both'; sourcesContent is
    on unless ``sourcesContent: false`` (esbuild docs, "Source map", "Sources content")."""
    if value is True or value in ("true", "linked"):
        effects = set(_LINKED)
    elif value == "external":
        effects = {Effect.FILE}
    elif value == "inline":
        effects = {Effect.INLINE}
    elif value == "both":
        effects = {Effect.INLINE, Effect.FILE}
    else:
        return _NO_EFFECT
    if sources_content:
        effects.add(Effect.EMBEDS)
    return frozenset(effects)


def tsup_sourcemap_effects(value: str | bool, *, sources_content: bool) -> frozenset[Effect]:
    """tsup's ``sourcemap``: true or 'inline'; tsup runs esbuild, which embeds sources."""
    if value is True or value == "true":
        effects = set(_LINKED)
    elif value == "inline":
        effects = {Effect.INLINE}
    else:
        return _NO_EFFECT
    if sources_content:
        effects.add(Effect.EMBEDS)
    return frozenset(effects)


def _value_effects(
    value: JsValue, effects_of: Callable[[str | bool], frozenset[Effect]]
) -> tuple[frozenset[Effect], int]:
    """The effects a property can have and its tier (literal, computed or unknown)."""
    if value.literal:
        return effects_of(value.options[0]), _LITERAL
    found: set[Effect] = set()
    for option in value.options:
        found |= effects_of(option)
    if found:
        return frozenset(found), _COMPUTED
    if value.options and all(o is False for o in value.options):
        return _NO_EFFECT, _WEAK
    # Nothing literal to go by (`devtool: process.env.DEVTOOL`): it may do anything.
    return frozenset(Effect) - {Effect.DECLARATION}, _WEAK


_WEBPACK_FIXES: Final = {
    Effect.EMBEDS: "use devtool: 'nosources-source-map' (maps without sources), or "
    "'hidden-source-map' and leave the .map files out of the release",
    Effect.FILE: "set devtool: false for release builds, or leave the .map files out of the "
    "release",
    Effect.REFERENCE: "use devtool: 'hidden-source-map' (no sourceMappingURL comment) or false",
    Effect.INLINE: "do not use an inline-* or eval-* devtool for release builds; use false or "
    "'hidden-source-map'",
}
_VITE_FIXES: Final = {
    Effect.EMBEDS: "set build.sourcemap: false, or keep the maps without sources with "
    "build.rollupOptions.output.sourcemapExcludeSources: true",
    Effect.FILE: "set build.sourcemap: false, or leave the .map files out of the release",
    Effect.REFERENCE: "use build.sourcemap: 'hidden' (no sourceMappingURL comment) or false",
    Effect.INLINE: "do not use build.sourcemap: 'inline' for release builds",
}
_ROLLUP_FIXES: Final = {
    Effect.EMBEDS: "set output.sourcemapExcludeSources: true, or output.sourcemap: false",
    Effect.FILE: "set output.sourcemap: false, or leave the .map files out of the release",
    Effect.REFERENCE: "use output.sourcemap: 'hidden' (no sourceMappingURL comment) or false",
    Effect.INLINE: "do not use output.sourcemap: 'inline' for release builds",
}
_ESBUILD_FIXES: Final = {
    Effect.EMBEDS: "set sourcesContent: false (CLI: --sources-content=false), or stop "
    "generating source maps",
    Effect.FILE: "set sourcemap: false, or leave the .map files out of the release",
    Effect.REFERENCE: "use sourcemap: 'external' (no sourceMappingURL comment) or false",
    Effect.INLINE: "do not use sourcemap: 'inline' or 'both' for release builds",
}
_TSUP_FIXES: Final = {
    Effect.EMBEDS: "set sourcemap: false, or set options.sourcesContent = false in esbuildOptions",
    Effect.FILE: "set sourcemap: false for release builds, or leave the .map files out",
    Effect.REFERENCE: "set sourcemap: false for release builds",
    Effect.INLINE: "do not use sourcemap: 'inline' for release builds",
}
_TSC_FIXES: Final = {
    Effect.EMBEDS: 'remove "inlineSources" (or set it to false)',
    Effect.FILE: 'set "sourceMap": false for the release build (e.g. in tsconfig.build.json), '
    "or leave the .map files out of the release",
    Effect.REFERENCE: 'set "sourceMap": false for the release build',
    Effect.INLINE: 'set "inlineSourceMap": false for the release build',
    Effect.DECLARATION: 'set "declarationMap": false, or leave the .d.ts.map files out of the '
    "release",
}
_TERSER_FIXES: Final = {
    Effect.EMBEDS: "remove includeSources from terser's source map options",
    Effect.FILE: "drop terser's source map option for release builds",
    Effect.REFERENCE: "drop the url from terser's source map option",
}


def _first_segments(paths: Sequence[str]) -> frozenset[str]:
    """``./dist/esm`` → ``dist``: the top folder an output path names."""
    segments = set()
    for path in paths:
        parts = [p for p in path.replace("\\", "/").split("/") if p not in ("", ".")]
        if parts and parts[0] != ".." and "${" not in parts[0]:
            segments.add(parts[0])
    return frozenset(segments)


_TSC_OPTIONS: Final = (
    "inlineSources",
    "sourceMap",
    "inlineSourceMap",
    "declarationMap",
    "outDir",
    "sourceRoot",
    "mapRoot",
)


@dataclass(frozen=True, slots=True)
class TsOptions:
    """The ``compilerOptions`` of a tsconfig that matter here: name → (line, value)."""

    options: Mapping[str, tuple[int, object]]
    extends: bool
    exact: bool
    """False when the file could not be parsed and the options were found textually."""


def tsconfig_options(text: str) -> TsOptions:
    """Read a tsconfig's compilerOptions with their lines, by parsing or, failing that
    (JSON5 syntax, a truncated file), by searching the comment-free text."""
    doc = read_jsonc(text)
    if doc is not None and isinstance(doc.value, dict):
        options = doc.get("compilerOptions")
        found: dict[str, tuple[int, object]] = {}
        if isinstance(options, dict):
            for key, value in options.items():
                found[key] = (line_of(text, doc.offsets[("compilerOptions", key)]), value)
        return TsOptions(found, isinstance(doc.get("extends"), str | list), exact=True)
    js = JsFile(text)
    found = {}
    for key in _TSC_OPTIONS:
        literal = [p for p in js.properties(key) if p.value.literal]
        if literal:
            found[key] = (literal[-1].line, literal[-1].value.options[0])
    return TsOptions(found, bool(js.properties("extends")), exact=False)


def _tsconfig_settings(path: str, text: str) -> list[Setting]:
    ts = tsconfig_options(text)
    options = ts.options
    out_dir = options.get("outDir", (0, None))[1]
    out_dirs = _first_segments([out_dir] if isinstance(out_dir, str) else [])
    settings = []

    def setting(key: str, effects: frozenset[Effect], tier: int, note: str = "") -> None:
        line, value = options[key]
        if not ts.exact:
            tier = max(tier, _COMPUTED)  # read by searching the text: only likely
        shown = f'"{key}": {_shown(json.dumps(value))}{note}'
        settings.append(
            Setting(path, line, "tsc", shown, effects, tier, _TSC_FIXES, out_dirs, False)
        )

    def enabled(key: str) -> bool:
        return key in options and options[key][1] is True

    if enabled("inlineSources"):
        setting("inlineSources", frozenset({Effect.EMBEDS}), _EXPLICIT)
    if enabled("sourceMap"):
        setting("sourceMap", _LINKED, _LITERAL)
        if ts.extends and "inlineSources" not in options:
            # tsc embeds sources only with inlineSources, which an extended config may set.
            note = ' (with inlineSources perhaps inherited through "extends")'
            setting("sourceMap", frozenset({Effect.EMBEDS}), _WEAK, note)
    if enabled("inlineSourceMap"):
        setting("inlineSourceMap", frozenset({Effect.INLINE}), _LITERAL)
    if enabled("declarationMap"):
        setting("declarationMap", frozenset({Effect.DECLARATION}), _LITERAL)
    return settings


_OUT_KEYS: Final = ("outDir", "outdir", "outfile", "dir", "file", "path", "outputPath")


def _js_settings(path: str, text: str, tool: str) -> list[Setting]:
    js = JsFile(text)
    out_dirs = _first_segments(js.string_values(*_OUT_KEYS))
    settings: list[Setting] = []

    def add(
        prop: JsProperty,
        key: str,
        effects_of: Callable[[str | bool], frozenset[Effect]],
        fixes: Mapping[Effect, str],
    ) -> None:
        effects, tier = _value_effects(prop.value, effects_of)
        if effects:
            settings.append(
                Setting(
                    path,
                    prop.line,
                    tool,
                    f"{key}: {_shown(prop.value.raw)}",
                    effects,
                    tier,
                    fixes,
                    out_dirs,
                )
            )

    if tool == "webpack":
        for prop in js.properties("devtool") + js.assignments("devtool"):
            add(prop, "devtool", webpack_devtool_effects, _WEBPACK_FIXES)
    elif tool in ("vite", "rollup"):
        excluding = js.properties("sourcemapExcludeSources") + js.assignments(
            "sourcemapExcludeSources"
        )
        excludes = any(p.value.options == (True,) for p in excluding)
        fixes = _VITE_FIXES if tool == "vite" else _ROLLUP_FIXES
        for prop in js.properties("sourcemap") + js.assignments("sourcemap"):
            add(
                prop,
                "sourcemap",
                lambda v: rollup_sourcemap_effects(v, excludes_sources=excludes),
                fixes,
            )
    elif tool in ("esbuild", "tsup"):
        off = [*js.properties("sourcesContent"), *js.assignments("sourcesContent")]
        content = not any(p.value.options == (False,) for p in off)
        for prop in js.properties("sourcesContent"):
            if prop.value.options == (True,):
                settings.append(
                    Setting(
                        path,
                        prop.line,
                        tool,
                        "sourcesContent: true",
                        frozenset({Effect.EMBEDS}),
                        _EXPLICIT,
                        _ESBUILD_FIXES,
                        out_dirs,
                    )
                )
        if tool == "esbuild":
            for prop in js.properties("sourcemap") + js.assignments("sourcemap"):
                add(
                    prop,
                    "sourcemap",
                    lambda v: esbuild_sourcemap_effects(v, sources_content=content),
                    _ESBUILD_FIXES,
                )
        else:
            for prop in js.properties("sourcemap") + js.assignments("sourcemap"):
                add(
                    prop,
                    "sourcemap",
                    lambda v: tsup_sourcemap_effects(v, sources_content=content),
                    _TSUP_FIXES,
                )
    # terser, as a plugin of any of them: `sourceMap: { includeSources: true }`.
    for prop in js.properties("includeSources"):
        if prop.value.options == (True,):
            settings.append(
                Setting(
                    path,
                    prop.line,
                    "terser",
                    "includeSources: true",
                    frozenset({Effect.EMBEDS}),
                    _EXPLICIT,
                    _TERSER_FIXES,
                    out_dirs,
                )
            )
    return settings


# package.json scripts: which names are builds, and what each tool's flags do.
_BUILD_SCRIPT = re.compile(
    r"(?:^|:)(?:build|compile|bundle|dist|release|prepublish|prepublishOnly|prepack|prepare|pack|package)(?:$|:)"
    r"|build",
    re.I,
)
_NOT_BUILD_SCRIPT = re.compile(
    r"(?:^|:)(?:dev|start|watch|serve|test|lint|format|storybook|docs?)(?:$|:)", re.I
)
_SEGMENT_SPLIT = re.compile(r"&&|\|\||[;|&]")


def _tool_in(segment: str, name: str) -> bool:
    return re.search(rf"(?:^|[\s/]){name}(?:\.js|\.cmd)?(?=\s|$)", segment) is not None


def _script_effects(
    segment: str,
) -> list[tuple[str, str, frozenset[Effect], int, Mapping[Effect, str]]]:
    """(tool, flag shown, effects, tier, fixes) for each source-map flag in one command."""
    found: list[tuple[str, str, frozenset[Effect], int, Mapping[Effect, str]]] = []
    if _tool_in(segment, "esbuild"):
        match = re.search(r"--sourcemap(?:=(\w+))?(?=\s|$)", segment)
        if match:
            content = re.search(r"--sources-content=false\b", segment) is None
            effects = esbuild_sourcemap_effects(match.group(1) or True, sources_content=content)
            found.append(("esbuild", match.group(), effects, _LITERAL, _CLI_ESBUILD_FIXES))
    if _tool_in(segment, "tsc"):
        for flag, effects, tier in (
            ("--inlineSources", frozenset({Effect.EMBEDS}), _EXPLICIT),
            ("--sourceMap", _LINKED, _LITERAL),
            ("--inlineSourceMap", frozenset({Effect.INLINE}), _LITERAL),
            ("--declarationMap", frozenset({Effect.DECLARATION}), _LITERAL),
        ):
            match = re.search(rf"{flag}(?!\w)(?!\s+false)", segment, re.I)
            if match:
                found.append(("tsc", match.group(), effects, tier, _CLI_TSC_FIXES))
    if _tool_in(segment, "webpack") or _tool_in(segment, "webpack-cli"):
        match = re.search(r"--devtool[=\s]+['\"]?([\w-]+)", segment)
        if match:
            effects = webpack_devtool_effects(match.group(1))
            found.append(("webpack", match.group(), effects, _LITERAL, _WEBPACK_FIXES))
    if _tool_in(segment, "rollup"):
        match = re.search(r"(?:--sourcemap|-m)(?:[=\s]+(inline|hidden))?(?=\s|$)", segment)
        if match:
            excludes = "--sourcemapExcludeSources" in segment
            effects = rollup_sourcemap_effects(match.group(1) or True, excludes_sources=excludes)
            found.append(("rollup", match.group(), effects, _LITERAL, _ROLLUP_FIXES))
    if re.search(r"(?:^|[\s/])vite\s+build\b", segment):
        match = re.search(r"--sourcemap(?:[=\s]+(inline|hidden|true))?(?=\s|$)", segment)
        if match:
            effects = rollup_sourcemap_effects(match.group(1) or True, excludes_sources=False)
            found.append(("vite", match.group(), effects, _LITERAL, _VITE_FIXES))
    if _tool_in(segment, "tsup"):
        match = re.search(r"--sourcemap(?:[=\s]+(inline))?(?=\s|$)", segment)
        if match:
            effects = tsup_sourcemap_effects(match.group(1) or True, sources_content=True)
            found.append(("tsup", match.group(), effects, _LITERAL, _TSUP_FIXES))
    if _tool_in(segment, "terser"):
        match = re.search(r"--source-map\b[^-]*", segment)
        if match:
            # terser --source-map "includeSources,url=inline|url=x.map": an inline map, or a
            # .map file (with a comment when it has a url).
            options = match.group()
            made: set[Effect] = {Effect.INLINE} if "url=inline" in options else {Effect.FILE}
            tier = _LITERAL
            if "includeSources" in options:
                made.add(Effect.EMBEDS)
                tier = _EXPLICIT
            if "url=" in options and "url=inline" not in options:
                made.add(Effect.REFERENCE)
            found.append(
                ("terser", _shown(match.group().strip()), frozenset(made), tier, _TERSER_FIXES)
            )
    return [f for f in found if f[2]]


_CLI_ESBUILD_FIXES: Final = {
    Effect.EMBEDS: "add --sources-content=false, or drop --sourcemap",
    Effect.FILE: "drop --sourcemap, or leave the .map files out of the release",
    Effect.REFERENCE: "use --sourcemap=external (no sourceMappingURL comment)",
    Effect.INLINE: "do not use --sourcemap=inline or --sourcemap=both for release builds",
}
_CLI_TSC_FIXES: Final = {
    Effect.EMBEDS: "drop --inlineSources",
    Effect.FILE: "drop --sourceMap from the release build",
    Effect.REFERENCE: "drop --sourceMap from the release build",
    Effect.INLINE: "drop --inlineSourceMap",
    Effect.DECLARATION: "drop --declarationMap",
}
_OUT_FLAG = re.compile(
    r"(?:--outdir|--outDir|--out-dir|--outfile|--output-path|-d|-o)[=\s]+['\"]?([^\s'\"]+)"
)


def _script_settings(path: str, text: str, doc: JsonDoc) -> list[Setting]:
    scripts = doc.get("scripts")
    if not isinstance(scripts, dict):
        return []
    settings = []
    for name, command in scripts.items():
        if not isinstance(command, str) or _NOT_BUILD_SCRIPT.search(name):
            continue
        build = _BUILD_SCRIPT.search(name) is not None
        offset = doc.offsets[("scripts", name)]
        for segment in _SEGMENT_SPLIT.split(command):
            out_dirs = _first_segments(_OUT_FLAG.findall(segment))
            for tool, flag, effects, tier, fixes in _script_effects(segment):
                settings.append(
                    Setting(
                        path=path,
                        line=line_of(text, offset),
                        tool=tool,
                        shown=f'the "{_shown(name)}" script ({tool} … {flag})',
                        effects=effects,
                        tier=tier if build else max(tier, _COMPUTED),
                        fixes=fixes,
                        out_dirs=out_dirs,
                        makes_css=tool != "tsc",
                    )
                )
    return settings


# --- npm packages ----------------------------------------------------------------------------

_TARBALL = re.compile(
    r"(?P<name>.+)-(?P<version>\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]*)?)\.(?:tgz|tar\.gz)"
)


@dataclass(frozen=True, slots=True)
class NpmMember:
    """A member of an npm package tarball: ``pkg-1.0.0.tgz!/package/dist/x.js``."""

    tarball: str
    path: str
    """Relative to the package root (``dist/x.js``), without the ``package/`` folder."""
    folder: bool


def npm_member(display_path: str) -> NpmMember | None:
    """The npm package member a display path names, or None (not inside a ``.tgz``)."""
    parts = display_path.split("!/")
    if len(parts) < 2:
        return None
    tarball = parts[-2].rsplit("/", 1)[-1]
    inner = parts[-1]
    if not tarball.lower().endswith((".tgz", ".tar.gz")) or not inner.startswith("package/"):
        return None
    path = inner[len("package/") :]
    folder = path.endswith("/")
    path = path.rstrip("/")
    return NpmMember(tarball, path, folder) if path else None


def tarball_matches(tarball: str, name: object) -> bool | None:
    """Whether `tarball` is what ``npm pack`` names a package called `name`; None if unsure.

    npm names it ``<name>-<version>.tgz``, a scope's ``@`` dropped and its ``/`` made ``-``.
    """
    match = _TARBALL.fullmatch(tarball)
    if match is None or not isinstance(name, str) or not name:
        return None
    expected = name[1:].replace("/", "-") if name.startswith("@") else name
    return match.group("name") == expected


def files_entry_matches(entry: str, path: str, *, folder: bool = False) -> bool:
    """Whether a package.json ``"files"`` entry lets `path` in, roughly as npm does.

    npm treats each entry as a glob relative to the package root and takes a folder with
    everything in it (npm-packlist): ``dist`` covers ``dist/a/b.js``, ``*.js`` only files at
    the root, ``lib/**/*.map`` maps at any depth under ``lib``.
    """
    entry = entry.strip()
    while entry.startswith(("./", "/")):
        entry = entry[1:] if entry.startswith("/") else entry[2:]
    entry = entry.rstrip("/")
    if not entry or entry.startswith("!"):
        return False
    spec = PathSpec.from_lines("gitignore", [f"/{entry}", f"/{entry}/**"])
    candidates = [path, path + "/"] if folder else [path]
    return any(spec.match_file(c) for c in candidates)


# --- the repository config -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigLines:
    """Where `.github/release-guard.yml` sets each deny pattern and artifact rule."""

    deny: tuple[tuple[str, int], ...] = ()
    artifacts: tuple[tuple[str, int], ...] = ()
    """(artifact rule name, line of its ``allow`` key, or of the rule when it has none)."""


def config_lines(text: str) -> ConfigLines:
    """Read the lines of the config's deny patterns and artifact rules; empty if unreadable."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError, ValueError):
        return ConfigLines()
    if not isinstance(root, MappingNode):
        return ConfigLines()
    deny: list[tuple[str, int]] = []
    artifacts: list[tuple[str, int]] = []
    for key, value in root.value:
        if not isinstance(key, ScalarNode):
            continue
        if key.value == "deny" and isinstance(value, SequenceNode):
            deny.extend(
                (str(i.value), _node_line(i)) for i in value.value if isinstance(i, ScalarNode)
            )
        elif key.value == "artifacts" and isinstance(value, SequenceNode):
            for item in value.value:
                if isinstance(item, MappingNode):
                    found = _artifact_rule(item)
                    if found is not None:
                        artifacts.append(found)
    return ConfigLines(tuple(deny), tuple(artifacts))


def _artifact_rule(item: MappingNode) -> tuple[str, int] | None:
    name: str | None = None
    line = _node_line(item)
    for key, value in item.value:
        if isinstance(key, ScalarNode) and key.value == "name" and isinstance(value, ScalarNode):
            name = str(value.value)
        elif isinstance(key, ScalarNode) and key.value == "allow":
            line = _node_line(key)
    return (name, line) if name is not None else None


def _node_line(node: Node) -> int:
    return int(node.start_mark.line) + 1


# --- putting it together ---------------------------------------------------------------------


_DECLARATION_MAP = re.compile(r"\.d\.[cm]?ts\.map$")
_CSS = re.compile(r"\.(?:css|scss|sass|less)(?:\.map)?$", re.I)
_CONFIG_DENY = "the config's deny pattern '"
_ARTIFACT_RULE = "the artifact rule '"


class Hints:
    """The ``locate`` callback for `bot.checks.output.annotations_for`.

    `files` maps each of `CANDIDATE_PATHS` that exists at the scanned commit to its text; a
    path that is missing is taken to be absent from the repository (that matters for
    ``.npmignore``). Files are read once, on first use; answers are cached per finding.
    """

    def __init__(self, files: Mapping[str, str], *, config_path: str = CONFIG_PATH) -> None:
        self._files = {
            path: text
            for path, text in files.items()
            if isinstance(text, str) and len(text) <= MAX_FILE_CHARS
        }
        self._config_path = config_path
        self._settings: list[Setting] | None = None
        self._package: JsonDoc | None = None
        self._package_read = False
        self._config: ConfigLines | None = None
        self._cache: dict[Finding, RepoLocation | None] = {}

    def __call__(self, finding: Finding) -> RepoLocation | None:
        """The repository line that most likely causes `finding`, or None."""
        if finding not in self._cache:
            self._cache[finding] = self._locate(finding)
        return self._cache[finding]

    def _locate(self, finding: Finding) -> RepoLocation | None:
        if self._foreign(finding):
            return self._config_location(finding)
        if finding.rule in (Rule.FORBIDDEN, Rule.NOT_ALLOWED):
            return self._shipped_file(finding)
        if finding.rule is Rule.LOCAL_PATH:
            return self._local_path(finding)
        if finding.rule in _RULE_EFFECT:
            return self._source_map(finding)
        return None

    # -- what the repository says, read lazily --

    @property
    def settings(self) -> list[Setting]:
        """Every source-map setting found in the fetched files, in `CANDIDATE_PATHS` order."""
        if self._settings is None:
            found: list[Setting] = []
            for path in TSCONFIGS:
                if path in self._files:
                    found.extend(_tsconfig_settings(path, self._files[path]))
            for paths, tool in (
                (WEBPACK_CONFIGS, "webpack"),
                (VITE_CONFIGS, "vite"),
                (ROLLUP_CONFIGS, "rollup"),
                (ESBUILD_CONFIGS, "esbuild"),
                (TSUP_CONFIGS, "tsup"),
            ):
                for path in paths:
                    if path in self._files:
                        found.extend(_js_settings(path, self._files[path], tool))
            package = self.package
            if package is not None:
                found.extend(_script_settings(PACKAGE_JSON, self._files[PACKAGE_JSON], package))
            self._settings = found
        return self._settings

    @property
    def package(self) -> JsonDoc | None:
        if not self._package_read:
            self._package_read = True
            text = self._files.get(PACKAGE_JSON)
            doc = read_jsonc(text) if text is not None else None
            self._package = doc if doc is not None and isinstance(doc.value, dict) else None
        return self._package

    @property
    def config(self) -> ConfigLines:
        if self._config is None:
            text = self._files.get(self._config_path)
            self._config = config_lines(text) if text is not None else ConfigLines()
        return self._config

    # -- source maps --

    def _source_map(self, finding: Finding) -> RepoLocation | None:
        effect = _RULE_EFFECT[finding.rule]
        inner = finding.path.rsplit("!/", 1)[-1]
        if finding.rule is Rule.MAP_FILE and _DECLARATION_MAP.search(inner):
            effect = Effect.DECLARATION
        member = self._npm_member(finding)
        if member is not None and finding.rule is Rule.MAP_FILE:
            shipped = self._files_entry(member, finding)
            if shipped is not None:
                return self._with_producer(shipped, effect, inner)
        location = self._best_setting(effect, inner, member)
        if location is not None:
            return location
        if member is not None and finding.rule is Rule.EMBEDDED_SOURCES and inner.endswith(".map"):
            shipped = self._files_entry(member, finding)
            if shipped is not None:
                return RepoLocation(
                    shipped.path,
                    shipped.line,
                    "Likely cause: no build setting in the repository explains the embedded "
                    "sources, but " + _lower_first(shipped.why),
                    certain=False,
                )
        return None

    def _candidates(self, effect: Effect, inner: str, member: NpmMember | None) -> list[Setting]:
        css = _CSS.search(inner) is not None
        found = [s for s in self.settings if effect in s.effects and (s.makes_css or not css)]
        if not found:
            return []
        tier = min(s.tier for s in found)
        best = [s for s in found if s.tier == tier]
        top = (member.path if member is not None else inner).split("/", 1)[0]
        # The output folder breaks ties: drop a setting whose known output folders do not
        # hold the file, when another's do (unknown folders, e.g. inherited, stay).
        if any(top in s.out_dirs for s in best):
            best = [s for s in best if not s.out_dirs or top in s.out_dirs]
        rest = [s for s in found if s not in best]
        return best + rest

    def _best_setting(
        self, effect: Effect, inner: str, member: NpmMember | None
    ) -> RepoLocation | None:
        candidates = self._candidates(effect, inner, member)
        if not candidates:
            return None
        first = candidates[0]
        rivals = [s for s in candidates[1:] if s.tier <= _COMPUTED]
        certain = first.tier <= _LITERAL and not rivals
        why = f"{first.shown} — {first.tool} {effect.value}"
        fix = first.fixes.get(effect)
        if fix:
            why += f"; to stop it, {fix}"
        why += "."
        if rivals:
            others = ", ".join(f"{s.where()} ({s.shown})" for s in rivals[:2])
            why += f" Also possible: {others}."
        if not certain:
            why = "Likely cause: " + why
        return RepoLocation(first.path, first.line, why, certain=certain)

    def _with_producer(self, shipped: RepoLocation, effect: Effect, inner: str) -> RepoLocation:
        """A "files" pointer for a shipped map, mentioning the setting that writes the maps."""
        producer = self._candidates(effect, inner, None)
        why = shipped.why
        if producer:
            why += f" The maps are written by {producer[0].where()} ({producer[0].shown})."
        return RepoLocation(shipped.path, shipped.line, why, certain=shipped.certain)

    # -- files that must not ship --

    def _shipped_file(self, finding: Finding) -> RepoLocation | None:
        member = self._npm_member(finding)
        if member is not None:
            shipped = self._files_entry(member, finding)
            if shipped is not None:
                return shipped
        config = self._config_location(finding)
        if config is not None:
            return config
        if member is not None:
            return self._npm_default(member)
        return None

    def _config_location(self, finding: Finding) -> RepoLocation | None:
        message = finding.message
        if finding.rule is Rule.FORBIDDEN and _CONFIG_DENY in message:
            for pattern, line in self.config.deny:
                if f"{_CONFIG_DENY}{pattern}'" in message:
                    return RepoLocation(
                        self._config_path,
                        line,
                        f"It matches the deny pattern '{_shown(pattern)}' of this config; "
                        "stop shipping the file, or name its exact path under deny_exceptions "
                        "if it is meant to ship.",
                        certain=True,
                    )
        if finding.rule is Rule.NOT_ALLOWED and _ARTIFACT_RULE in message:
            for name, line in self.config.artifacts:
                if f"{_ARTIFACT_RULE}{name}'" in message:
                    return RepoLocation(
                        self._config_path,
                        line,
                        f"The file is outside the allowlist of the artifact rule '{_shown(name)}'"
                        "; add a pattern here if it is meant to ship, or stop shipping it.",
                        certain=True,
                    )
        return None

    def _npm_member(self, finding: Finding) -> NpmMember | None:
        """The npm package member, if this repository's package.json can have packed it."""
        member = npm_member(finding.path)
        if member is None or self.package is None or self._foreign(finding):
            return None
        return member

    def _foreign(self, finding: Finding) -> bool:
        """Whether the finding is in an npm tarball that is not this repository's package.

        A monorepo's packages, or a dependency packed into the artifact, are built by configs
        this module never sees; the root configs would be a wrong pointer.
        """
        member = npm_member(finding.path)
        if member is None:
            return False
        name = self.package.get("name") if self.package is not None else None
        return tarball_matches(member.tarball, name) is False

    def _files_entry(self, member: NpmMember, finding: Finding) -> RepoLocation | None:
        package = self.package
        assert package is not None  # _npm_member checked it
        files = package.get("files")
        if not isinstance(files, list):
            return None
        text = self._files[PACKAGE_JSON]
        sure = tarball_matches(member.tarball, package.get("name")) is True
        shown = member.path + ("/" if member.folder else "")
        for index, entry in enumerate(files):
            if isinstance(entry, str) and files_entry_matches(
                entry, member.path, folder=member.folder
            ):
                line = line_of(text, package.offsets[("files", index)])
                exclusion = "!**/*.map" if finding.rule is Rule.MAP_FILE else f"!{shown}"
                why = (
                    f'The package.json "files" entry "{_shown(entry)}" lets {_shown(shown)} into '
                    f'the npm package; narrow it, or add "{_shown(exclusion)}" after it.'
                )
                return RepoLocation(
                    PACKAGE_JSON,
                    line,
                    why if sure else "Likely cause: " + _lower_first(why),
                    certain=sure,
                )
        return None

    def _npm_default(self, member: NpmMember) -> RepoLocation | None:
        """No "files" entry explains it: point at what decides the package's contents."""
        package = self.package
        assert package is not None
        text = self._files[PACKAGE_JSON]
        sure = tarball_matches(member.tarball, package.get("name")) is True
        prefix = "" if sure else "Likely cause: "
        if ("files",) in package.offsets:
            # A "files" list that matches nothing: npm packs package.json, README and LICENSE
            # whatever it says, and anything else came another way. No credible pointer.
            return None
        npmignore = self._files.get(NPMIGNORE)
        if npmignore is not None:
            for number, raw in enumerate(npmignore.splitlines(), start=1):
                line = raw.strip()
                if line.startswith("!") and files_entry_matches(
                    line[1:], member.path, folder=member.folder
                ):
                    return RepoLocation(
                        NPMIGNORE,
                        number,
                        f"{prefix}this .npmignore line re-includes {_shown(member.path)}; "
                        "remove it.",
                        certain=sure,
                    )
            return RepoLocation(
                NPMIGNORE,
                1,
                f"Likely cause: .npmignore does not exclude {_shown(member.path)} and package.json "
                f'has no "files" list; add a line "/{_shown(member.path)}", or better, list what '
                'should ship in "files".',
                certain=False,
            )
        offset = package.offsets.get(("name",))
        if offset is None:
            return None
        return RepoLocation(
            PACKAGE_JSON,
            line_of(text, offset),
            f'{prefix}package.json has no "files" list and the repository has no .npmignore, so '
            f"npm packs every file that .gitignore does not exclude, {_shown(member.path)} "
            'included; add a "files" list naming what should ship.',
            certain=sure,
        )

    # -- local paths --

    def _local_path(self, finding: Finding) -> RepoLocation | None:
        for path in TSCONFIGS:
            if path not in self._files:
                continue
            options = tsconfig_options(self._files[path]).options
            for key in ("sourceRoot", "mapRoot"):
                line, value = options.get(key, (0, None))
                if isinstance(value, str) and _is_absolute(value):
                    sure = value in finding.message
                    why = (
                        f'"{key}": "{_shown(value)}" is an absolute local path that tsc writes '
                        "into every map; use a relative path or a URL, or remove it."
                    )
                    if not sure:
                        why = "Likely cause: " + why
                    return RepoLocation(path, line, why, certain=sure)
        for paths in (WEBPACK_CONFIGS, ESBUILD_CONFIGS, VITE_CONFIGS, ROLLUP_CONFIGS, TSUP_CONFIGS):
            for path in paths:
                text = self._files.get(path)
                if text is None:
                    continue
                js = JsFile(text)
                for prop in js.properties("devtoolModuleFilenameTemplate"):
                    if (
                        "absolute-resource-path" in prop.value.raw
                        or "absoluteResourcePath" in prop.value.raw
                    ):
                        return RepoLocation(
                            path,
                            prop.line,
                            "Likely cause: devtoolModuleFilenameTemplate puts absolute resource "
                            "paths into the maps; use [resource-path] or the default.",
                        )
                for prop in js.properties("sourceRoot"):
                    if any(isinstance(o, str) and _is_absolute(o) for o in prop.value.options):
                        return RepoLocation(
                            path,
                            prop.line,
                            f"sourceRoot: {_shown(prop.value.raw)} is an absolute local path "
                            "written into every map; use a relative path or a URL.",
                            certain=prop.value.literal,
                        )
        return None


def _is_absolute(path: str) -> bool:
    return re.match(r"(?:/|[A-Za-z]:[\\/]|\\\\|file:)", path) is not None


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def locate(finding: Finding, files: Mapping[str, str]) -> RepoLocation | None:
    """One-off form of `Hints`: the repository line that most likely causes `finding`."""
    return Hints(files)(finding)


def iter_settings(files: Mapping[str, str]) -> Iterator[Setting]:
    """Every source-map setting found in `files` (for diagnostics and tests)."""
    yield from Hints(files).settings


__all__ = [
    "CANDIDATE_PATHS",
    "Effect",
    "Hints",
    "JsFile",
    "Locator",
    "RepoLocation",
    "Setting",
    "blank_comments",
    "config_lines",
    "files_entry_matches",
    "iter_settings",
    "locate",
    "npm_member",
    "read_jsonc",
    "tarball_matches",
    "tsconfig_options",
]
