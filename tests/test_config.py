"""The repository config: every key, every error (with its line), layering, and fuzzing."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import (
    CONFIG_PATH,
    LIMIT_CEILINGS,
    MAX_CONFIG_BYTES,
    ConfigLayer,
    format_size,
    load_policy,
    load_policy_file,
    merge_policy,
    parse_config,
    parse_size,
)
from bot.engine.model import DEFAULT_SEVERITY, Rule, Severity
from bot.engine.policy import (
    GIB,
    KIB,
    MIB,
    ArchiveLimits,
    ArtifactRules,
    CommentSettings,
    OnFailure,
    Policy,
    ReleaseSettings,
)
from bot.errors import ConfigError

PATH = CONFIG_PATH

EXAMPLE = """\
# release-guard configuration
artifacts:
  - name: "npm-*"
    allow: ["package/package.json", "package/dist/**", "package/README.md", "package/LICENSE"]
  - name: docs
deny: ["*.sqlite", "internal/**"]
deny_exceptions: ["fixtures/test-key.pem"]
rules:
  sourcemap/map-file: error
  sourcemap/reference: off
limits:
  max_depth: 4
  max_entries: 100000
  max_entry_size: 2GiB
  max_total_size: 8GiB
  max_ratio: 250
  ratio_grace: 16MiB
"""


def load(text: str | bytes, base: Policy | None = None) -> Policy:
    return load_policy(text, path=PATH, base=base)


def error(text: str | bytes) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(text)
    return caught.value


# --- every key ----------------------------------------------------------------------------


def test_example_file() -> None:
    policy = load(EXAMPLE)
    assert policy.artifacts == (
        ArtifactRules(
            "npm-*",
            ("package/package.json", "package/dist/**", "package/README.md", "package/LICENSE"),
        ),
        ArtifactRules("docs", ()),
    )
    assert policy.deny == ("*.sqlite", "internal/**")
    assert policy.deny_exceptions == ("fixtures/test-key.pem",)
    assert policy.severity(Rule.MAP_FILE) is Severity.ERROR
    assert policy.severity(Rule.REFERENCE) is None
    assert policy.severity(Rule.EMBEDDED_SOURCES) is Severity.ERROR
    assert policy.limits == ArchiveLimits()
    assert policy.rules_for("npm-package") == policy.artifacts[0]


def test_policy_is_frozen() -> None:
    policy = load(EXAMPLE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.deny = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.severities[Rule.MAP_FILE] = None  # type: ignore[index]


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "# nothing but a comment\n", "---\n", "~\n", "null\n", "\ufeff", b"\xef\xbb\xbf"],
)
def test_empty_file_is_the_default_policy(text: str | bytes) -> None:
    policy = load(text)
    assert policy == Policy()
    assert dict(policy.severities) == DEFAULT_SEVERITY


@pytest.mark.parametrize(
    "section", ["artifacts", "deny", "deny_exceptions", "rules", "limits", "release", "comments"]
)
def test_empty_section_is_allowed(section: str) -> None:
    assert load(f"{section}:\n  # all commented out\n") == Policy()


@pytest.mark.parametrize(
    ("word", "severity"),
    [
        ("error", Severity.ERROR),
        ("warning", Severity.WARNING),
        ("notice", Severity.NOTICE),
        ("off", None),
        ('"off"', None),
        ("Error", Severity.ERROR),
        ("'NOTICE'", Severity.NOTICE),
    ],
)
def test_rule_severities(word: str, severity: Severity | None) -> None:
    policy = load(f"rules:\n  archive/limit: {word}\n")
    assert policy.severity(Rule.ARCHIVE_LIMIT) is severity


def test_every_rule_id_is_accepted() -> None:
    text = "rules:\n" + "".join(f"  {rule.value}: notice\n" for rule in Rule)
    policy = load(text)
    assert all(policy.severity(rule) is Severity.NOTICE for rule in Rule)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("4096", 4096),
        ("1_000", 1000),
        ("0x100", 256),
        ("'4096'", 4096),
        ("512B", 512),
        ("64KiB", 64 * KIB),
        ("16MiB", 16 * MIB),
        ("2GiB", 2 * GIB),
        ("1.5GiB", 3 * GIB // 2),
        ("2 GiB", 2 * GIB),
        ("100mb", 100 * 1000**2),
        ("10KB", 10_000),
        ("1GB", 1000**3),
    ],
)
def test_sizes(value: str, expected: int) -> None:
    assert load(f"limits:\n  max_entry_size: {value}\n").limits.max_entry_size == expected


def test_every_limit() -> None:
    text = """\
limits:
  max_depth: 2
  max_entries: 500
  max_entry_size: 1MiB
  max_total_size: 4MiB
  max_ratio: 99.5
  ratio_grace: 1KiB
"""
    assert load(text).limits == ArchiveLimits(
        max_depth=2,
        max_entries=500,
        max_entry_size=MIB,
        max_total_size=4 * MIB,
        max_ratio=99.5,
        ratio_grace=KIB,
    )


def test_limits_at_their_ceilings_are_accepted() -> None:
    lines = [f"  {key}: {value}" for key, value in LIMIT_CEILINGS.items()]
    limits = load("limits:\n" + "\n".join(lines) + "\n").limits
    assert dataclasses.asdict(limits) == dict(LIMIT_CEILINGS)


def test_every_archive_limit_is_configurable() -> None:
    assert set(LIMIT_CEILINGS) == {f.name for f in dataclasses.fields(ArchiveLimits)}


def test_ratio_is_a_float() -> None:
    assert load("limits: {max_ratio: 300}").limits.max_ratio == 300.0
    assert isinstance(load("limits: {max_ratio: 300}").limits.max_ratio, float)


def test_deny_exceptions_are_normalised() -> None:
    policy = load("deny_exceptions:\n  - /fixtures/key.pem\n  - test/repo/.git/\n")
    assert policy.deny_exceptions == ("fixtures/key.pem", "test/repo/.git/")


def test_allow_may_narrow_itself() -> None:
    text = "artifacts:\n  - name: '*'\n    allow: ['dist/**', '!dist/**/*.map']\n"
    assert load(text).artifacts[0].allow == ("dist/**", "!dist/**/*.map")


def test_bytes_and_str_give_the_same_policy() -> None:
    assert load(EXAMPLE) == load(EXAMPLE.encode())


def test_release_and_comments_default() -> None:
    policy = load("")
    assert policy.release == ReleaseSettings(OnFailure.DRAFT, scan_workflow_artifacts=False)
    assert policy.comments == CommentSettings("/release-guard")


def test_release_and_comments() -> None:
    policy = load(
        "release:\n  on_failure: None\n  scan_workflow_artifacts: true\n"
        "comments:\n  prefix: /guard.v2\n"
    )
    assert policy.release == ReleaseSettings(OnFailure.NONE, scan_workflow_artifacts=True)
    assert policy.comments.prefix == "/guard.v2"
    assert load("release: {on_failure: draft}\n").release.on_failure is OnFailure.DRAFT
    assert load("release: {on_failure: issue}\n").release.on_failure is OnFailure.ISSUE
    assert load("release: {on_failure: delete}\n").release.on_failure is OnFailure.DELETE


def test_release_and_comments_layer_key_by_key() -> None:
    org = load_policy(
        "release: {on_failure: none}\ncomments: {prefix: /acme-guard}\n", path="org.yml"
    )
    policy = load("release: {scan_workflow_artifacts: true}\n", base=org)
    assert policy.release == ReleaseSettings(OnFailure.NONE, scan_workflow_artifacts=True)
    assert policy.comments.prefix == "/acme-guard"
    assert load("release: {on_failure: draft}\n", base=org).release.on_failure is OnFailure.DRAFT
    layer = parse_config("release: {on_failure: none}\n", path=PATH)
    assert dict(layer.release) == {"on_failure": OnFailure.NONE} and dict(layer.comments) == {}


def test_load_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "release-guard.yml"
    path.write_text(EXAMPLE, encoding="utf-8")
    assert load_policy_file(path) == load(EXAMPLE)


def test_load_policy_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "release-guard.yml"
    path.write_text("deny: [\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_policy_file(path)
    assert caught.value.path == str(path)
    assert str(caught.value).startswith(f"{path}:2: ")
    with pytest.raises(ConfigError, match="cannot read"):
        load_policy_file(tmp_path / "missing.yml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("16MiB", 16 * MIB), (" 3 kib ", 3 * KIB), ("7", 7), ("1_024B", 1024)],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MiB", "1 K", "1 MiBs", "-1", "1e3", "1.2.3GiB"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_format_size() -> None:
    assert [format_size(n) for n in (16 * GIB, 1536 * KIB, 1000)] == ["16GiB", "1536KiB", "1000B"]


# --- every error, with its line -----------------------------------------------------------

ERRORS = [
    # unknown keys, with a suggestion and the expected keys
    ("deny: []\ndenny: []\n", 2, "unknown key 'denny' (did you mean 'deny'?); expected one of:"),
    ("relase:\n  draft: true\n", 1, "unknown key 'relase' (did you mean 'release'?)"),
    ("release:\n  draft: true\n", 2, "release: unknown key 'draft'; expected one of: on_fail"),
    ("comments:\n  prefx: /x\n", 2, "comments: unknown key 'prefx' (did you mean 'prefix'?)"),
    ("artifacts:\n  - name: x\n    alow: []\n", 3, "artifacts[0]: unknown key 'alow'"),
    ("limits:\n  max_dept: 3\n", 2, "limits: unknown key 'max_dept' (did you mean 'max_depth'?)"),
    ("<<: {deny: []}\n", 1, "unknown key '<<'"),
    ("? [a, b]\n: 1\n", 1, "keys must be names, not a list"),
    # duplicate keys
    ("deny: []\nrules: {}\ndeny: []\n", 3, "duplicate key 'deny' (first at line 1)"),
    ("limits:\n  max_depth: 1\n  max_depth: 2\n", 3, "limits: duplicate key 'max_depth'"),
    ("rules:\n  archive/limit: off\n  archive/limit: error\n", 3, "duplicate key"),
    # wrong types
    ("- deny\n", 1, "the top level must be a mapping of sections"),
    ("just text\n", 1, "the top level must be a mapping of sections (artifacts, deny"),
    ("deny: '*.pem'\n", 1, "deny must be a list of patterns, not a string"),
    ("deny:\n  - ok\n  - 3\n", 3, "deny[1] must be a string, not an integer (3); put it in quotes"),
    ("deny:\n  - {a: 1}\n", 2, "deny[0] must be a string, not a mapping"),
    ("artifacts: {name: x}\n", 1, "artifacts must be a list of artifact rules, not a mapping"),
    ("artifacts:\n  - npm-*\n", 2, "artifacts[0] must be a mapping with 'name' and 'allow'"),
    ("artifacts:\n  - name: x\n    allow: dist/**\n", 3, "artifacts[0].allow must be a list"),
    ("artifacts:\n  - name: 12\n", 2, "artifacts[0].name must be a string, not an integer"),
    ("rules: [a]\n", 1, "rules must be a mapping of rule id to severity, not a list"),
    ("limits: 5\n", 1, "limits must be a mapping of limit to value, not an integer (5)"),
    ("deny_exceptions: x.pem\n", 1, "deny_exceptions must be a list of paths"),
    # release and comments
    ("release: draft\n", 1, "release must be a mapping (on_failure, scan_workflow_artifacts)"),
    (
        "release:\n  on_failure: remove\n",
        2,
        "release.on_failure must be draft or issue or delete or none, not 'r",
    ),
    ("release:\n  on_failure: drafts\n", 2, "not 'drafts' (did you mean 'draft'?)"),
    (
        "release:\n  on_failure: off\n",
        2,
        "must be draft or issue or delete or none, not true/false (off)",
    ),
    (
        "release:\n  on_failure:\n",
        2,
        "must be draft or issue or delete or none, not an empty value",
    ),
    ("release:\n  scan_workflow_artifacts: 1\n", 2, "must be true or false, not an integer (1)"),
    ("release:\n  scan_workflow_artifacts: 'yes'\n", 2, "must be true or false, not a string"),
    ("comments: /rg\n", 1, "comments must be a mapping (prefix), not a string"),
    ("comments:\n  prefix: rescan\n", 2, "comments.prefix 'rescan' must be a slash command"),
    ("comments:\n  prefix: '/'\n", 2, "comments.prefix '/' must be a slash command"),
    ("comments:\n  prefix: /a b\n", 2, "must be a slash command"),
    ("comments:\n  prefix: '@bot'\n", 2, "must be a slash command"),
    ("comments:\n  prefix: 7\n", 2, "comments.prefix must be a string, not an integer (7)"),
    ("comments:\n  prefix: /" + "x" * 51 + "\n", 2, "must be a slash command"),
    # artifact rules
    ("artifacts:\n  - allow: [a]\n", 2, "artifacts[0]: missing 'name'"),
    ("artifacts:\n  - name: ''\n", 2, "artifacts[0].name must be a non-empty shell glob"),
    (
        "artifacts:\n  - name: a\n  - name: b\n  - name: a\n",
        4,
        "artifacts[2]: an artifact rule named 'a' is already at line 2",
    ),
    # rule ids and severities
    ("rules:\n  sourcemap/mapfile: error\n", 2, "did you mean 'sourcemap/map-file'?"),
    ("rules:\n  embedded-sources: off\n", 2, "did you mean 'sourcemap/embedded-sources'?"),
    ("rules:\n  nonsense: off\n", 2, "unknown rule 'nonsense'; expected one of: sourcemap/"),
    ("rules:\n  archive/limit: fatal\n", 2, "bad severity 'fatal'; expected one of: error, w"),
    ("rules:\n  archive/limit: false\n", 2, "bad severity 'false'"),
    ("rules:\n  archive/limit:\n", 2, "bad severity ''"),
    ("rules:\n  archive/limit: [error]\n", 2, "bad severity (a list)"),
    # limits
    ("limits:\n  max_depth: 0\n", 2, "limits.max_depth must be at least 1, not 0"),
    ("limits:\n  max_entries: -5\n", 2, "limits.max_entries must be at least 1, not -5"),
    ("limits:\n  max_ratio: 0.5\n", 2, "limits.max_ratio must be at least 1, not 0.5"),
    ("limits:\n  max_entry_size: 0KiB\n", 2, "must be at least 1, not 0KiB"),
    ("limits:\n  max_depth: 17\n", 2, "limits.max_depth 17 is above the ceiling of 16"),
    ("limits:\n  max_entries: 2000000\n", 2, "above the ceiling of 1,000,000"),
    ("limits:\n  max_total_size: 1TiB\n", 2, "max_total_size 1TiB is above the ceiling of 64GiB"),
    ("limits:\n  max_ratio: .inf\n", 2, "max_ratio .inf is above the ceiling"),
    ("limits:\n  max_ratio: .nan\n", 2, "limits.max_ratio must be a number, not .nan"),
    ("limits:\n  max_depth: 1.5\n", 2, "max_depth must be a whole number, not a number (1.5)"),
    ("limits:\n  max_depth: '3'\n", 2, "max_depth must be a whole number, not a string"),
    ("limits:\n  max_depth: yes\n", 2, "must be a whole number, not true/false (yes)"),
    ("limits:\n  max_entry_size: 2 gigs\n", 2, "'2 gigs' is not a size"),
    ("limits:\n  max_entry_size: 1.5\n", 2, "max_entry_size must be a size"),
    ("limits:\n  max_ratio: 0x_\n", 2, "'0x_' is not a valid number"),
    # patterns
    ("deny: ['!.env']\n", 1, "deny[0] '!.env': a deny pattern cannot start with '!'"),
    ("deny:\n  - ''\n", 2, "deny[0] '': a pattern cannot be empty"),
    ("deny:\n  - '#x'\n", 2, "gitignore comment"),
    ("deny:\n  - '[z-a]'\n", 2, "deny[0] '[z-a]': not a valid gitignore pattern"),
    ("deny:\n  - '[Z-a]'\n", 2, "not a valid gitignore pattern"),
    ("deny:\n  - " + "a" * 1100 + "\n", 2, "at most 1024 characters"),
    ("artifacts:\n  - name: x\n    allow: ['ok', '[z-a]']\n", 3, "artifacts[0].allow[1]"),
    # deny exceptions: named paths only, and only paths the deny list matches
    ("deny_exceptions: ['fixtures/*.pem']\n", 1, "an exception must name a path"),
    ("deny_exceptions:\n  - '**'\n", 2, "an exception must name a path"),
    ("deny_exceptions:\n  - '!x.pem'\n", 2, "drop the '!'"),
    ("deny_exceptions:\n  - ../x.pem\n", 2, "relative path without empty, . or .. parts"),
    ("deny_exceptions:\n  - a.pem\n  - README.md\n", 3, "'README.md' is not on the deny list"),
    ("deny_exceptions:\n  - package/\n", 2, "'package/' is not on the deny list"),
    # YAML itself
    ("deny: [\n", 2, "invalid YAML: while parsing a flow node"),
    ("deny: ['a'\nrules: {}\n", 2, "invalid YAML"),
    ("a: b: c\n", 1, "invalid YAML: mapping values are not allowed here"),
    ("deny:\n\t- a\n", 2, "invalid YAML"),
    ("deny: []\n---\nrules: {}\n", 2, "expected a single document"),
    ('deny: ["\\q"]\n', 1, "invalid YAML"),
    ("deny: [!!python/name:os.system x]\n", 1, "must be a string, not a value tagged"),
    ("x: &a [1]\ny: *a\n", 2, "YAML aliases (*name) are not supported"),
    ("deny: &a ['.x']\nrules: *a\n", 2, "aliases"),
    ("[" * 200, 1, "nested deeper than 32 levels"),
    ("deny: ['ok']\nrules:\n  x: '\x07'\n", 3, "the character U+0007 is not allowed"),
]


@pytest.mark.parametrize(("text", "line", "message"), ERRORS)
def test_errors_name_file_line_and_expectation(text: str, line: int, message: str) -> None:
    exc = error(text)
    assert exc.path == PATH
    assert exc.line == line, str(exc)
    assert message in exc.detail, str(exc)
    assert str(exc).startswith(f"{PATH}:{line}: ")


def test_non_utf8_bytes_name_their_line() -> None:
    exc = error(b"deny:\n  - a\n  - '\xff'\n")
    assert exc.line == 3
    assert "not UTF-8" in exc.detail and "0xff" in exc.detail


def test_utf16_is_refused() -> None:
    exc = error("deny: []\n".encode("utf-16"))
    assert exc.line == 1 and "not UTF-8" in exc.detail


def test_oversized_file_is_refused_without_parsing(tmp_path: Path) -> None:
    big = "# padding\n" * (MAX_CONFIG_BYTES // 10 + 1)
    assert "larger than 256KiB" in error(big).detail
    assert "larger than" in error(big.encode()).detail
    path = tmp_path / "big.yml"
    path.write_text(big, encoding="utf-8")
    with pytest.raises(ConfigError, match="larger than"):
        load_policy_file(path)


def test_billion_laughs_is_refused_quickly() -> None:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    exc = error("\n".join(lines))
    assert exc.line == 2 and "aliases" in exc.detail


def test_unknown_top_level_key_lists_every_section() -> None:
    exc = error("commands: {}\n")
    assert exc.detail.endswith(
        "expected one of: artifacts, deny, deny_exceptions, rules, limits, release, comments, "
        "retention, secrets"
    )


# --- layering: an organisation default under a repository file -----------------------------

ORG = """\
artifacts:
  - name: "npm-*"
    allow: ["package/**"]
  - name: "*"
    allow: ["dist/**"]
deny: ["*.sqlite"]
deny_exceptions: ["fixtures/org.pem"]
rules:
  sourcemap/map-file: error
  sourcemap/local-path: error
limits:
  max_depth: 2
  max_total_size: 1GiB
"""

REPO = """\
artifacts:
  - name: "npm-cli"
    allow: ["package/bin/**"]
deny: ["internal/**", "*.sqlite"]
deny_exceptions: ["data/seed.sqlite"]
rules:
  sourcemap/map-file: notice
  archive/limit: off
limits:
  max_depth: 6
"""


def test_repository_file_extends_organisation_defaults() -> None:
    org = load_policy(ORG, path="acme/.github:.github/release-guard.yml")
    policy = load(REPO, base=org)
    assert [a.name for a in policy.artifacts] == ["npm-cli", "npm-*", "*"]
    assert policy.rules_for("npm-cli") == ArtifactRules("npm-cli", ("package/bin/**",))
    assert policy.rules_for("npm-lib") == ArtifactRules("npm-*", ("package/**",))
    assert policy.deny == ("*.sqlite", "internal/**")
    assert policy.deny_exceptions == ("fixtures/org.pem", "data/seed.sqlite")
    assert policy.severity(Rule.MAP_FILE) is Severity.NOTICE  # lowered
    assert policy.severity(Rule.LOCAL_PATH) is Severity.ERROR  # raised by the org, kept
    assert policy.severity(Rule.ARCHIVE_LIMIT) is None
    assert policy.severity(Rule.EMBEDDED_SOURCES) is Severity.ERROR
    assert policy.limits.max_depth == 6
    assert policy.limits.max_total_size == GIB
    assert policy.limits.max_entries == ArchiveLimits().max_entries


def test_repository_exceptions_are_checked_against_the_merged_deny_list() -> None:
    org = load_policy(ORG, path="org.yml")
    assert load("deny_exceptions: [db/app.sqlite]\n", base=org).deny_exceptions[-1] == (
        "db/app.sqlite"
    )
    with pytest.raises(ConfigError) as caught:
        load("deny_exceptions: [db/app.sqlite]\n")
    assert caught.value.line == 1 and caught.value.path == PATH


def test_layer_only_holds_what_the_file_sets() -> None:
    layer = parse_config("limits: {max_depth: 3}\nrules: {archive/limit: warning}\n", path=PATH)
    assert isinstance(layer, ConfigLayer)
    assert dict(layer.limits) == {"max_depth": 3}
    assert dict(layer.severities) == {Rule.ARCHIVE_LIMIT: Severity.WARNING}
    base = Policy(limits=ArchiveLimits(max_entries=7), deny=("x",))
    merged = merge_policy(base, layer)
    assert merged == layer.apply(base)
    assert merged.limits == ArchiveLimits(max_depth=3, max_entries=7)
    assert merged.deny == ("x",)
    assert layer.apply() == load("limits: {max_depth: 3}\nrules: {archive/limit: warning}\n")


def test_layering_an_empty_file_keeps_the_base() -> None:
    org = load_policy(ORG, path="org.yml")
    assert load("", base=org) == org


# --- never anything but a Policy or a ConfigError ------------------------------------------


def _outcome(text: str | bytes) -> None:
    try:
        policy = load(text)
    except ConfigError as exc:
        assert exc.path == PATH
        assert exc.line is not None and exc.line >= 1
        assert exc.detail
        return
    assert isinstance(policy, Policy)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=400))
def test_arbitrary_text_gives_a_policy_or_a_config_error(text: str) -> None:
    _outcome(text)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_arbitrary_bytes_give_a_policy_or_a_config_error(data: bytes) -> None:
    _outcome(data)


_KEYS = st.sampled_from(
    [
        "artifacts",
        "deny",
        "deny_exceptions",
        "rules",
        "limits",
        "name",
        "allow",
        "max_depth",
        "max_ratio",
        "max_entry_size",
        "sourcemap/map-file",
        "files/forbidden",
        "release",
        "comments",
        "on_failure",
        "scan_workflow_artifacts",
        "prefix",
        "x",
    ]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        [
            *("error", "off", "16MiB", "2 GB", "*.pem", "!x", "[z-a]", "a/.git/", "**", "", "#"),
            *("draft", "none", "/release-guard", "/x y"),
        ]
    ),
    st.text(max_size=12),
)
_TREES = st.recursive(
    _SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(_KEYS, children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(_KEYS, _TREES, max_size=5))
def test_config_shaped_documents_give_a_policy_or_a_config_error(document: object) -> None:
    _outcome(yaml.safe_dump(document, allow_unicode=True))
