"""The repository configuration `.github/release-guard.yml`: schema, loading, merging.

Every section is optional; an empty file (or no file) is the default policy.

```yaml
artifacts:                   # per artifact name (shell glob); the first match wins
  - name: "npm-*"
    allow:                   # gitignore-style; when set, every other file is files/not-allowed
      - "package/package.json"
      - "package/dist/**"
      - "!package/dist/**/*.map"   # a leading ! narrows the allowlist
deny: ["*.sqlite", "internal/**"]  # gitignore-style, added to the built-in deny list
deny_exceptions:                   # exact paths (or folders ending in /) exempt from it
  - "package/test/fixtures/test-key.pem"
rules:                       # each rule's severity: error | warning | notice | off
  sourcemap/map-file: error
  sourcemap/reference: off
  secrets/google-api-key: warning
secrets:
  allow:                     # fingerprints of secrets accepted as test fixtures
    - "sha256:0123456789abcdef"   # as a secrets/* finding shows it
limits:                      # archive safety limits (archive/limit)
  max_depth: 4               # nested archives (1..16)
  max_entries: 100000        # entries per artifact (1..1000000)
  max_entry_size: 2GiB       # decompressed bytes of one entry (..16GiB)
  max_total_size: 8GiB       # decompressed bytes of one artifact (..64GiB)
  max_ratio: 250             # decompressed/compressed ratio (1..10000)
  ratio_grace: 16MiB         # bytes read before the ratio counts (..1GiB)
  max_seconds: 900           # wall-clock seconds to read one artifact (1..3600)
  max_path_length: 4096      # bytes of one member's name (1..65535)
  max_directory_size: 64MiB  # bytes of one zip's central directory (..1GiB)
release:                     # what the App does with a release whose assets fail
  on_failure: draft          # draft: back to a draft (immutable: as issue); issue: open an issue;
                             # delete: delete it once its assets are retained; none: report only
  scan_workflow_artifacts: false  # also scan the tagged commit's workflow-run artifacts
comments:
  prefix: /release-guard     # `/release-guard rescan` on a pull request (`@<app> rescan` too)
retention:                   # failing artifacts the App keeps (defaults: RETENTION_* variables)
  keep: failing              # failing (an error-level finding) | all | none
  days: 365                  # days kept after the artifact was last seen (1..36500)
```

- Patterns (`allow`, `deny`) are gitignore-style, as in a `.gitignore`: a pattern without a
  `/` (other than a trailing one) matches at any folder depth, one with a `/` is anchored at
  the root, `**` spans folders, a trailing `/` matches a folder and everything in it. A file
  is matched by its path inside its own archive (`package/dist/x.js`) and by its path from
  the artifact's root (`pkg-1.0.0.tgz!/package/dist/x.js`). Deny patterns ignore case.
- The deny list can only grow: a `deny` pattern cannot start with `!`. A file on it ships
  only when `deny_exceptions` names its path exactly, or names a denied folder above it
  (`test/fixtures/repo/.git/`). Exceptions have no wildcards, and one that names a path the
  deny list does not match is an error (a typo, or a blanket waiver such as `package/`).
- Sizes are integers (bytes) or strings with a unit: B, KiB, MiB, GiB, TiB (powers of 1024)
  or KB, MB, GB, TB (powers of 1000). Every limit must be at least 1 and at most its ceiling.
- `secrets.allow` lists fingerprints, `sha256:` and the 16 hex digits a `secrets/*` finding
  shows (a longer hex digest is cut to 16); those secrets are not reported. Fingerprints name
  one exact value: a fixture accepted here does not hide any other secret.
- Layering: an organisation's defaults (its `.github` repository) can be the `base` of a
  repository file. The repository's `artifacts` are tried before the base's, `deny`,
  `deny_exceptions` and `secrets.allow` extend the base's, and each `rules` and `limits`
  entry overrides the base's value (severities can be raised or lowered); so does each
  `release` and `comments` entry.

Every error is a `ConfigError` naming the file, the 1-based line and what was expected.
Adding a section means writing one `_parse_*` function and one `_SECTIONS` entry.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fnmatch import translate
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

import yaml
from yaml.constructor import SafeConstructor
from yaml.error import Mark
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from bot.engine.filerules import DenyList, PatternError, check_pattern, normalize_exception
from bot.engine.model import Rule, Severity
from bot.engine.policy import (
    DEFAULT_COMMAND_PREFIX,
    GIB,
    KIB,
    MIB,
    ArchiveLimits,
    ArtifactRules,
    OnFailure,
    Policy,
    RetentionRules,
)
from bot.errors import ConfigError

CONFIG_PATH = ".github/release-guard.yml"
"""Where the config lives in the scanned repository (and in an organisation's `.github`)."""

MAX_CONFIG_BYTES = 256 * KIB
"""A config is a few hundred bytes; a bigger one is refused rather than parsed."""

MAX_NESTING = 32
"""Deepest YAML nesting accepted (the schema needs 4); deeper is refused before recursing."""

MAX_PATTERN_LENGTH = 1024

TIB = 1024 * GIB

LIMIT_CEILINGS: Mapping[str, int | float] = MappingProxyType(
    {
        "max_depth": 16,
        "max_entries": 1_000_000,
        "max_entry_size": 16 * GIB,
        "max_total_size": 64 * GIB,
        "max_ratio": 10_000,
        "ratio_grace": 1 * GIB,
        "max_seconds": 3600,
        "max_path_length": 0xFFFF,
        "max_directory_size": 1 * GIB,
    }
)
"""The highest value a config may set: a repository cannot switch the zip-bomb guards off."""

_COUNT, _SIZE, _RATIO = "count", "size", "ratio"
_LIMIT_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "max_depth": _COUNT,
        "max_entries": _COUNT,
        "max_entry_size": _SIZE,
        "max_total_size": _SIZE,
        "max_ratio": _RATIO,
        "ratio_grace": _SIZE,
        "max_seconds": _RATIO,
        "max_path_length": _COUNT,
        "max_directory_size": _SIZE,
    }
)

SEVERITY_WORDS: Mapping[str, Severity | None] = MappingProxyType(
    {"error": Severity.ERROR, "warning": Severity.WARNING, "notice": Severity.NOTICE, "off": None}
)

_SIZE_UNITS: Mapping[str, int] = MappingProxyType(
    {
        "": 1,
        "b": 1,
        "kib": KIB,
        "mib": MIB,
        "gib": GIB,
        "tib": TIB,
        "kb": 1000,
        "mb": 1000**2,
        "gb": 1000**3,
        "tb": 1000**4,
    }
)
_SIZE_RE = re.compile(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")

_TAG = "tag:yaml.org,2002:"
_TYPE_NAMES: Mapping[str, str] = MappingProxyType(
    {
        _TAG + "str": "a string",
        _TAG + "int": "an integer",
        _TAG + "float": "a number",
        _TAG + "bool": "true/false",
        _TAG + "null": "an empty value",
        _TAG + "timestamp": "a date",
        _TAG + "binary": "binary data",
    }
)


# --- what one file says -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigLayer:
    """One config file, validated, before it is laid over a base policy.

    Only what the file sets is here: `limits` holds the limits it names, `severities` the
    rules it names. `apply` lays it over a base (the defaults, or an organisation's policy).
    """

    path: str
    severities: Mapping[Rule, Severity | None] = field(default_factory=lambda: MappingProxyType({}))
    artifacts: tuple[ArtifactRules, ...] = ()
    deny: tuple[str, ...] = ()
    deny_exceptions: tuple[str, ...] = ()
    exception_lines: tuple[int, ...] = ()
    """The line of each `deny_exceptions` entry, for errors found once layers are merged."""
    limits: Mapping[str, int | float] = field(default_factory=lambda: MappingProxyType({}))
    release: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """The `release` entries the file sets (ReleaseSettings field names)."""
    comments: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """The `comments` entries the file sets (CommentSettings field names)."""
    retention: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    """The `retention` entries the file sets (RetentionRules field names)."""
    secret_allow: tuple[str, ...] = ()
    """The `secrets.allow` fingerprints the file lists, normalised."""

    def apply(self, base: Policy | None = None) -> Policy:
        """This layer over `base`: artifacts first, lists extended, scalars overridden."""
        base = base if base is not None else Policy()
        severities = dict(base.severities)
        severities.update(self.severities)
        limits = _with_limits(base.limits, self.limits)
        policy = Policy(
            severities=MappingProxyType(severities),
            artifacts=self.artifacts + base.artifacts,
            deny=_extend(base.deny, self.deny),
            deny_exceptions=_extend(base.deny_exceptions, self.deny_exceptions),
            limits=limits,
            secret_allow=base.secret_allow | frozenset(self.secret_allow),
            release=dataclasses.replace(base.release, **self.release),
            comments=dataclasses.replace(base.comments, **self.comments),
            retention=(
                dataclasses.replace(base.retention or RetentionRules(), **self.retention)
                if self.retention
                else base.retention
            ),
        )
        self._check_exceptions(policy)
        return policy

    def _check_exceptions(self, policy: Policy) -> None:
        """An exception must name a denied path: anything else is a typo or a blanket waiver."""
        deny = DenyList(policy.deny)
        for exception, line in zip(self.deny_exceptions, self.exception_lines, strict=True):
            if deny.match_path(exception) is not None:
                continue
            raise ConfigError(
                f"deny_exceptions: '{exception}' is not on the deny list, so it exempts "
                "nothing; name the exact path of a denied file, or of a denied folder "
                "ending with '/' (such as 'test/fixtures/repo/.git/')",
                path=self.path,
                line=line,
            )


def _with_limits(base: ArchiveLimits, overrides: Mapping[str, int | float]) -> ArchiveLimits:
    values: dict[str, Any] = {f.name: getattr(base, f.name) for f in dataclasses.fields(base)}
    values.update(overrides)
    return ArchiveLimits(**values)


def _extend(base: tuple[str, ...], more: tuple[str, ...]) -> tuple[str, ...]:
    return base + tuple(p for p in dict.fromkeys(more) if p not in base)


# --- public entry points ----------------------------------------------------------------


def parse_config(text: str | bytes, *, path: str) -> ConfigLayer:
    """Validate one config file; `path` names it in errors. Raises ConfigError only."""
    source = _decode(text, path)
    root = _compose(source, path)
    draft = _Draft(_Context(path))
    if root is not None and not _is_null(root):
        _parse_root(draft, root)
    return draft.freeze()


def load_policy(text: str | bytes, *, path: str, base: Policy | None = None) -> Policy:
    """The policy a config file asks for, laid over `base` (default: the built-in policy).

    For an organisation default and a repository file:
    `load_policy(repo_text, path=..., base=load_policy(org_text, path=...))`.
    """
    return parse_config(text, path=path).apply(base)


def load_policy_file(path: Path, *, base: Policy | None = None) -> Policy:
    """Read and load a config file from disk (the CLI's `--config`)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=str(path)) from exc
    return load_policy(data, path=str(path), base=base)


def merge_policy(base: Policy, layer: ConfigLayer) -> Policy:
    """`layer` laid over `base`; the same as `layer.apply(base)`."""
    return layer.apply(base)


def parse_size(text: str) -> int:
    """Bytes for `16MiB`, `2 GB`, `1.5GiB` or `4096`; ValueError when it is none of those."""
    match = _SIZE_RE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(text)
    try:
        number = Decimal(match.group(1).replace("_", ""))
    except InvalidOperation as exc:
        raise ValueError(text) from exc
    return int(number * _SIZE_UNITS[unit])


def format_size(size: int) -> str:
    """The shortest exact binary spelling of a size: `16GiB`, `1536KiB`, `1000B`."""
    for unit, factor in (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


# --- text to nodes ------------------------------------------------------------------------


def _decode(text: str | bytes, path: str) -> str:
    if isinstance(text, str):
        if len(text) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"file is larger than {format_size(MAX_CONFIG_BYTES)}", path=path, line=1
            )
        return text.removeprefix("\ufeff")
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"file is larger than {format_size(MAX_CONFIG_BYTES)}", path=path, line=1)
    try:
        return text.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = text.count(b"\n", 0, exc.start) + 1
        bad = text[exc.start : exc.start + 1].hex()
        raise ConfigError(
            f"not UTF-8 text (byte 0x{bad}); save the file as UTF-8", path=path, line=line
        ) from exc


class _Refused(Exception):
    """YAML that parses but that a config must not use; carries the offending mark."""

    def __init__(self, message: str, mark: Mark | None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, composing nodes only, refusing aliases and deep nesting.

    Aliases are refused outright: a config never needs them, and expanding shared nodes is
    how a few lines of YAML become gigabytes ("billion laughs").
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._nesting = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise _Refused(
                "YAML aliases (*name) are not supported in this file; write the value out",
                event.start_mark,
            )
        self._nesting += 1
        try:
            if self._nesting > MAX_NESTING:
                event = self.peek_event()  # type: ignore[no-untyped-call]
                raise _Refused(f"nested deeper than {MAX_NESTING} levels", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._nesting -= 1


def _compose(source: str, path: str) -> Node | None:
    try:
        return yaml.compose(source, Loader=_Loader)
    except _Refused as exc:
        raise ConfigError(exc.message, path=path, line=_line(exc.mark)) from None
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(_yaml_problem(exc), path=path, line=_line(exc.problem_mark)) from None
    except yaml.reader.ReaderError as exc:
        line = source.count("\n", 0, exc.position) + 1
        raise ConfigError(
            f"{_character(exc.character)} is not allowed in a YAML file ({exc.reason})",
            path=path,
            line=line,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path=path, line=1) from None
    except RecursionError:
        raise ConfigError("nested too deeply", path=path, line=1) from None


def _character(character: object) -> str:
    if isinstance(character, str) and len(character) == 1:
        character = ord(character)
    return f"the character U+{character:04X}" if isinstance(character, int) else "a character"


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    parts = [p for p in (exc.context, exc.problem) if p]
    return "invalid YAML: " + ("; ".join(parts) if parts else "syntax error")


def _line(mark: Mark | None) -> int | None:
    return mark.line + 1 if mark is not None else None


# --- nodes to a layer ---------------------------------------------------------------------


@dataclass(slots=True)
class _Context:
    path: str

    def fail(self, node: Node, message: str) -> NoReturn:
        raise ConfigError(message, path=self.path, line=_line(node.start_mark))


@dataclass(slots=True)
class _Draft:
    """What the file says so far; `freeze` turns it into a ConfigLayer."""

    ctx: _Context
    severities: dict[Rule, Severity | None] = field(default_factory=dict)
    artifacts: list[ArtifactRules] = field(default_factory=list)
    deny: list[str] = field(default_factory=list)
    exceptions: list[tuple[str, int]] = field(default_factory=list)
    limits: dict[str, int | float] = field(default_factory=dict)
    release: dict[str, Any] = field(default_factory=dict)
    comments: dict[str, Any] = field(default_factory=dict)
    retention: dict[str, Any] = field(default_factory=dict)
    secret_allow: list[str] = field(default_factory=list)

    def freeze(self) -> ConfigLayer:
        return ConfigLayer(
            path=self.ctx.path,
            severities=MappingProxyType(dict(self.severities)),
            artifacts=tuple(self.artifacts),
            deny=tuple(self.deny),
            deny_exceptions=tuple(e for e, _ in self.exceptions),
            exception_lines=tuple(line for _, line in self.exceptions),
            limits=MappingProxyType(dict(self.limits)),
            release=MappingProxyType(dict(self.release)),
            comments=MappingProxyType(dict(self.comments)),
            retention=MappingProxyType(dict(self.retention)),
            secret_allow=tuple(dict.fromkeys(self.secret_allow)),
        )


def _describe(node: Node) -> str:
    """What a node is, for "expected X, not Y": `a list`, `an integer (3)`."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    kind = _TYPE_NAMES.get(node.tag, f"a value tagged {node.tag}")
    text = str(node.value)
    if not text or node.tag == _TAG + "str":
        return kind
    return f"{kind} ({text if len(text) <= 40 else text[:40] + '…'})"


def _prefix(where: str) -> str:
    return f"{where}: " if where else ""


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _TAG + "null"


def _closest(word: str, choices: list[str]) -> str:
    """A ` (did you mean 'x'?)` hint, or an empty string."""
    suffix = [c for c in choices if c.rsplit("/", 1)[-1] == word]
    found = suffix or difflib.get_close_matches(word, choices, n=1, cutoff=0.75)
    return f" (did you mean '{found[0]}'?)" if found else ""


def _items(
    ctx: _Context, node: Node, where: str, expected: str
) -> Iterator[tuple[str, ScalarNode, Node]]:
    """The (key, key node, value node) pairs of a mapping, refusing duplicates."""
    if not isinstance(node, MappingNode):
        ctx.fail(node, f"{where} must be {expected}, not {_describe(node)}")
    seen: dict[str, int | None] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, ScalarNode):
            ctx.fail(key_node, f"{_prefix(where)}keys must be names, not {_describe(key_node)}")
        key = str(key_node.value)
        if key in seen:
            ctx.fail(key_node, f"{_prefix(where)}duplicate key '{key}' (first at line {seen[key]})")
        seen[key] = _line(key_node.start_mark)
        yield key, key_node, value_node


def _unknown_key(ctx: _Context, node: Node, key: str, where: str, known: list[str]) -> NoReturn:
    hint = _closest(key, known)
    ctx.fail(
        node, f"{_prefix(where)}unknown key '{key}'{hint}; expected one of: {', '.join(known)}"
    )


def _sequence(ctx: _Context, node: Node, where: str, expected: str) -> list[Node]:
    """The items of a list; an empty value counts as an empty list."""
    if _is_null(node):
        return []
    if not isinstance(node, SequenceNode):
        ctx.fail(node, f"{where} must be {expected}, not {_describe(node)}")
    return list(node.value)


def _string(ctx: _Context, node: Node, where: str) -> str:
    if not isinstance(node, ScalarNode) or node.tag != _TAG + "str":
        hint = "; put it in quotes" if isinstance(node, ScalarNode) else ""
        ctx.fail(node, f"{where} must be a string, not {_describe(node)}{hint}")
    return str(node.value)


def _pattern(ctx: _Context, node: Node, where: str, *, deny: bool) -> str:
    pattern = _string(ctx, node, where)
    if len(pattern) > MAX_PATTERN_LENGTH:
        ctx.fail(node, f"{where}: a pattern is at most {MAX_PATTERN_LENGTH} characters long")
    try:
        check_pattern(pattern, deny=deny)
    except PatternError as exc:
        ctx.fail(node, f"{where} '{pattern}': {exc}")
    return pattern


def _parse_root(draft: _Draft, root: Node) -> None:
    ctx = draft.ctx
    known = list(_SECTIONS)
    expected = f"a mapping of sections ({', '.join(known)})"
    if not isinstance(root, MappingNode):
        ctx.fail(root, f"the top level must be {expected}, not {_describe(root)}")
    for key, key_node, value in _items(ctx, root, "", expected):
        parser = _SECTIONS.get(key)
        if parser is None:
            _unknown_key(ctx, key_node, key, "", known)
        if not _is_null(value):  # a section with every entry commented out
            parser(draft, value)


def _parse_artifacts(draft: _Draft, node: Node) -> None:
    ctx = draft.ctx
    first_line: dict[str, int | None] = {}
    for index, item in enumerate(_sequence(ctx, node, "artifacts", "a list of artifact rules")):
        where = f"artifacts[{index}]"
        rules = _parse_artifact(ctx, item, where)
        if rules.name in first_line:
            ctx.fail(
                item,
                f"{where}: an artifact rule named '{rules.name}' is already at line "
                f"{first_line[rules.name]}; the first match wins, so this one would never apply",
            )
        first_line[rules.name] = _line(item.start_mark)
        draft.artifacts.append(rules)


_ARTIFACT_KEYS = ["name", "allow"]


def _parse_artifact(ctx: _Context, node: Node, where: str) -> ArtifactRules:
    expected = "a mapping with 'name' and 'allow'"
    name: str | None = None
    allow: list[str] = []
    for key, key_node, value in _items(ctx, node, where, expected):
        if key == "name":
            name = _glob(ctx, value, f"{where}.name")
        elif key == "allow":
            items = _sequence(ctx, value, f"{where}.allow", "a list of patterns")
            allow = [
                _pattern(ctx, v, f"{where}.allow[{i}]", deny=False) for i, v in enumerate(items)
            ]
        else:
            _unknown_key(ctx, key_node, key, where, _ARTIFACT_KEYS)
    if name is None:
        ctx.fail(node, f"{where}: missing 'name' (a shell glob such as 'npm-*')")
    return ArtifactRules(name=name, allow=tuple(allow))


def _glob(ctx: _Context, node: Node, where: str) -> str:
    """An artifact name glob (fnmatch: `*`, `?`, `[seq]`, `[!seq]`)."""
    glob = _string(ctx, node, where)
    if not glob.strip() or any(ch in glob for ch in "\n\r\0"):
        ctx.fail(node, f"{where} must be a non-empty shell glob on one line, such as 'npm-*'")
    try:
        re.compile(translate(glob))
    except re.error as exc:
        ctx.fail(node, f"{where} '{glob}' is not a valid shell glob ({exc})")
    return glob


def _parse_deny(draft: _Draft, node: Node) -> None:
    ctx = draft.ctx
    for index, item in enumerate(_sequence(ctx, node, "deny", "a list of patterns")):
        draft.deny.append(_pattern(ctx, item, f"deny[{index}]", deny=True))


def _parse_deny_exceptions(draft: _Draft, node: Node) -> None:
    ctx = draft.ctx
    items = _sequence(ctx, node, "deny_exceptions", "a list of paths")
    for index, item in enumerate(items):
        where = f"deny_exceptions[{index}]"
        raw = _string(ctx, item, where)
        try:
            exception = normalize_exception(raw)
        except PatternError as exc:
            ctx.fail(item, f"{where} '{raw}': {exc}")
        draft.exceptions.append((exception, _line(item.start_mark) or 1))


def _parse_rules(draft: _Draft, node: Node) -> None:
    ctx = draft.ctx
    rule_ids = [rule.value for rule in Rule]
    words = ", ".join(SEVERITY_WORDS)
    for key, key_node, value in _items(ctx, node, "rules", "a mapping of rule id to severity"):
        try:
            rule = Rule(key)
        except ValueError:
            ctx.fail(
                key_node,
                f"rules: unknown rule '{key}'{_closest(key, rule_ids)}; "
                f"expected one of: {', '.join(rule_ids)}",
            )
        word = str(value.value).strip().lower() if isinstance(value, ScalarNode) else ""
        if word not in SEVERITY_WORDS:
            shown = f"'{value.value}'" if isinstance(value, ScalarNode) else f"({_describe(value)})"
            ctx.fail(value, f"rules.{key}: bad severity {shown}; expected one of: {words}")
        draft.severities[rule] = SEVERITY_WORDS[word]


def _parse_limits(draft: _Draft, node: Node) -> None:
    ctx = draft.ctx
    known = list(_LIMIT_KINDS)
    for key, key_node, value in _items(ctx, node, "limits", "a mapping of limit to value"):
        kind = _LIMIT_KINDS.get(key)
        if kind is None:
            _unknown_key(ctx, key_node, key, "limits", known)
        draft.limits[key] = _limit(ctx, value, key, kind)


def _limit(ctx: _Context, node: Node, key: str, kind: str) -> int | float:
    where = f"limits.{key}"
    number: int | float
    if kind == _SIZE:
        number = _size(ctx, node, where)
    elif kind == _COUNT:
        number = _number(ctx, node, where, "a whole number", integer=True)
    else:
        number = _number(ctx, node, where, "a number", integer=False)
    ceiling = LIMIT_CEILINGS[key]
    if not number >= 1:
        ctx.fail(node, f"{where} must be at least 1, not {node.value}")
    if number > ceiling:
        shown = format_size(int(ceiling)) if kind == _SIZE else f"{ceiling:,}"
        ctx.fail(node, f"{where} {node.value} is above the ceiling of {shown}")
    return float(number) if kind == _RATIO else number


def _number(ctx: _Context, node: Node, where: str, expected: str, *, integer: bool) -> int | float:
    tags = {_TAG + "int"} if integer else {_TAG + "int", _TAG + "float"}
    if not isinstance(node, ScalarNode) or node.tag not in tags:
        ctx.fail(node, f"{where} must be {expected}, not {_describe(node)}")
    value = _construct(ctx, node, where)
    if not isinstance(value, int | float) or isinstance(value, bool) or math.isnan(value):
        ctx.fail(node, f"{where} must be {expected}, not {node.value}")
    return value


def _size(ctx: _Context, node: Node, where: str) -> int:
    expected = "a size: bytes, or a number with B, KiB, MiB, GiB, KB, MB or GB (e.g. 16MiB)"
    if isinstance(node, ScalarNode) and node.tag == _TAG + "int":
        value = _construct(ctx, node, where)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    if isinstance(node, ScalarNode) and node.tag == _TAG + "str":
        try:
            return parse_size(str(node.value))
        except ValueError:
            ctx.fail(node, f"{where}: '{node.value}' is not {expected}")
    ctx.fail(node, f"{where} must be {expected}, not {_describe(node)}")


def _construct(ctx: _Context, node: ScalarNode, where: str) -> object:
    """A scalar's value by YAML's rules (`0x10`, `1_000`, `1e3`, `.inf`)."""
    try:
        return SafeConstructor().construct_object(node)
    except (yaml.YAMLError, ValueError, OverflowError):
        ctx.fail(node, f"{where}: '{node.value}' is not a valid number")


def _boolean(ctx: _Context, node: Node, where: str) -> bool:
    if isinstance(node, ScalarNode) and node.tag == _TAG + "bool":
        value = _construct(ctx, node, where)
        if isinstance(value, bool):
            return value
    ctx.fail(node, f"{where} must be true or false, not {_describe(node)}")


def _choice(ctx: _Context, node: Node, where: str, choices: list[str]) -> str:
    """One word of `choices`, case-blind; YAML's `off`/`no` (booleans) are named as such."""
    word = str(node.value).strip().lower() if isinstance(node, ScalarNode) else ""
    if isinstance(node, ScalarNode) and node.tag == _TAG + "str" and word in choices:
        return word
    expected = " or ".join(choices)
    shown = (
        f"'{node.value}'"
        if isinstance(node, ScalarNode) and node.tag == _TAG + "str"
        else _describe(node)
    )
    ctx.fail(node, f"{where} must be {expected}, not {shown}{_closest(word, choices)}")


_RELEASE_KEYS = ["on_failure", "scan_workflow_artifacts"]


def _parse_release(draft: _Draft, node: Node) -> None:
    ctx = draft.ctx
    expected = f"a mapping ({', '.join(_RELEASE_KEYS)})"
    for key, key_node, value in _items(ctx, node, "release", expected):
        if key == "on_failure":
            words = [choice.value for choice in OnFailure]
            draft.release[key] = OnFailure(_choice(ctx, value, "release.on_failure", words))
        elif key == "scan_workflow_artifacts":
            draft.release[key] = _boolean(ctx, value, f"release.{key}")
        else:
            _unknown_key(ctx, key_node, key, "release", _RELEASE_KEYS)


_COMMENT_KEYS = ["prefix"]
_PREFIX_RE = re.compile(r"/[A-Za-z0-9][A-Za-z0-9._-]{0,49}")


def _parse_comments(draft: _Draft, node: Node) -> None:
    ctx = draft.ctx
    for key, key_node, value in _items(ctx, node, "comments", "a mapping (prefix)"):
        if key != "prefix":
            _unknown_key(ctx, key_node, key, "comments", _COMMENT_KEYS)
        prefix = _string(ctx, value, "comments.prefix")
        if not _PREFIX_RE.fullmatch(prefix):
            ctx.fail(
                value,
                f"comments.prefix '{prefix}' must be a slash command: '/' then up to 50 "
                f"letters, digits, '.', '_' or '-' (such as '{DEFAULT_COMMAND_PREFIX}')",
            )
        draft.comments[key] = prefix


_RETENTION_KEYS = ["keep", "days"]
_RETENTION_KEEP = ["failing", "all", "none"]
MAX_RETENTION_DAYS = 36_500


def _parse_retention(draft: _Draft, node: Node) -> None:
    ctx = draft.ctx
    expected = f"a mapping ({', '.join(_RETENTION_KEYS)})"
    for key, key_node, value in _items(ctx, node, "retention", expected):
        if key == "keep":
            draft.retention[key] = _choice(ctx, value, "retention.keep", _RETENTION_KEEP)
        elif key == "days":
            days = _number(ctx, value, "retention.days", "a whole number of days", integer=True)
            if not 1 <= days <= MAX_RETENTION_DAYS:
                ctx.fail(value, f"retention.days must be from 1 to {MAX_RETENTION_DAYS:,}")
            draft.retention[key] = int(days)
        else:
            _unknown_key(ctx, key_node, key, "retention", _RETENTION_KEYS)


_SECRETS_KEYS = ["allow"]
_FINGERPRINT_RE = re.compile(r"(?:sha256:)?([0-9a-f]{16,64})")


def _parse_secrets(draft: _Draft, node: Node) -> None:
    ctx = draft.ctx
    for key, key_node, value in _items(ctx, node, "secrets", "a mapping (allow)"):
        if key != "allow":
            _unknown_key(ctx, key_node, key, "secrets", _SECRETS_KEYS)
        items = _sequence(ctx, value, "secrets.allow", "a list of fingerprints")
        for index, item in enumerate(items):
            where = f"secrets.allow[{index}]"
            text = _string(ctx, item, where).strip().lower()
            match = _FINGERPRINT_RE.fullmatch(text)
            if match is None:
                ctx.fail(
                    item,
                    f"{where} must be a fingerprint as a secrets/* finding shows it: "
                    "'sha256:' and 16 hex digits (such as 'sha256:0123456789abcdef')",
                )
            draft.secret_allow.append("sha256:" + match.group(1)[:16])


_SECTIONS: Mapping[str, Callable[[_Draft, Node], None]] = MappingProxyType(
    {
        "artifacts": _parse_artifacts,
        "deny": _parse_deny,
        "deny_exceptions": _parse_deny_exceptions,
        "rules": _parse_rules,
        "limits": _parse_limits,
        "release": _parse_release,
        "comments": _parse_comments,
        "retention": _parse_retention,
        "secrets": _parse_secrets,
    }
)
"""Top-level sections and their parsers; a new section is one more entry."""
