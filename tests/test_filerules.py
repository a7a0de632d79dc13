"""Path rules: the built-in deny list, config deny patterns and exceptions, allowlists."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pathspec import PathSpec

from bot.engine.filerules import (
    BUILTIN_DENY,
    BUILTIN_DENY_PATTERNS,
    DenyList,
    FileRules,
    PatternError,
    PatternSet,
    check_pattern,
    normalize_exception,
)
from bot.engine.model import Entry, EntryKind, Observation, Rule, Severity
from bot.engine.policy import ArtifactRules, Policy

ARTIFACT = "art.zip"


def entry(inner: str, *, outer: str = "", kind: EntryKind = EntryKind.FILE) -> Entry:
    """An entry of ARTIFACT; `outer` is the logical path of its container plus `!/`."""
    logical = outer + inner
    return Entry(
        path=f"{ARTIFACT}!/{logical}",
        logical_path=logical,
        inner_path=inner,
        depth=outer.count("!/"),
        kind=kind,
    )


def check(policy: Policy, *entries: Entry, name: str = ARTIFACT) -> list[Observation]:
    rules = FileRules(policy, name)
    return [obs for e in entries for obs in rules.check(e)]


def forbidden(policy: Policy, *entries: Entry) -> list[Observation]:
    return [o for o in check(policy, *entries) if o.rule is Rule.FORBIDDEN]


# --- the built-in deny list ---------------------------------------------------------------

DENIED = {
    ".env": ".env",
    "app/.env": ".env",
    ".env.local": ".env.*",
    "deploy/.env.production": ".env.*",
    ".envrc": ".envrc",
    "id_rsa": "id_rsa",
    "home/.ssh/id_ed25519": ".ssh/",
    "keys/id_ecdsa": "id_ecdsa",
    "id_dsa": "id_dsa",
    "server.key": "*.key",
    "certs/privkey.pem": "*.pem",
    "AuthKey_ABC123.p8": "*.p8",
    "signing/release.p12": "*.p12",
    "cert.pfx": "*.pfx",
    "android/app/release.keystore": "*.keystore",
    "android/upload.jks": "*.jks",
    "putty.ppk": "*.ppk",
    "vault.kdbx": "*.kdbx",
    "login.keychain-db": "*.keychain-db",
    ".gnupg/pubring.kbx": ".gnupg/",
    ".npmrc": ".npmrc",
    "package/.npmrc": ".npmrc",
    ".pypirc": ".pypirc",
    ".netrc": ".netrc",
    "_netrc": "_netrc",
    ".git-credentials": ".git-credentials",
    ".aws/credentials": "**/.aws/credentials",
    "home/user/.aws/credentials": "**/.aws/credentials",
    ".docker/config.json": "**/.docker/config.json",
    "ci/.kube/config": "**/.kube/config",
    "deploy/kubeconfig": "kubeconfig",
    "clusters/prod.kubeconfig": "*.kubeconfig",
    ".dockercfg": ".dockercfg",
    ".config/gcloud/application_default_credentials.json": "**/.config/gcloud/",
    "ci/application_default_credentials.json": "application_default_credentials.json",
    "client_secret_1234-abc.apps.googleusercontent.com.json": (
        "client_secret*.apps.googleusercontent.com.json"
    ),
    "home/.azure/msal_token_cache.json": "**/.azure/",
    ".boto": ".boto",
    ".vault-token": ".vault-token",
    "home/.config/gh/hosts.yml": "**/.config/gh/hosts.yml",
    "home/.composer/auth.json": "**/.composer/auth.json",
    ".config/composer/auth.json": "**/.config/composer/auth.json",
    ".cargo/credentials.toml": "**/.cargo/credentials.toml",
    "infra/terraform.tfstate": "*.tfstate",
    "infra/terraform.tfstate.backup": "*.tfstate.backup",
    ".pgpass": ".pgpass",
    ".my.cnf": ".my.cnf",
    "public/.htpasswd": ".htpasswd",
    ".git/config": ".git",
    "package/.git": ".git",
    "vendor/lib/.hg/store/data": ".hg/",
    "site/.svn/entries": ".svn/",
    "x/.bzr/branch-format": ".bzr/",
    ".bash_history": ".bash_history",
    "root/.zsh_history": ".zsh_history",
}

HARMLESS = [
    ".env.example",
    "app/.env.sample",
    ".env.template",
    "src/env.js",
    "lib/environment.ts",
    ".environment",
    "id_rsa.pub",
    "keys/id_ed25519.pub",
    "src/keys.js",
    "docs/keyboard.md",
    "keymap.json",
    ".gitignore",
    ".gitattributes",
    ".gitkeep",
    ".github/workflows/release.yml",
    "docs/git/intro.md",
    "my.git.txt",
    ".npmignore",
    "npmrc.md",
    "certs/README.md",
    "credentials.md",
    "aws/credentials.js",
    "package/package.json",
    "package/dist/index.js.map",
    ".history",
    "terraform/main.tf",
    "public/locales/en/auth.json",
    "src/routes/auth.json",
    "gcloud/README.md",
    "docs/kubeconfig.md",
]


@pytest.mark.parametrize(("inner", "pattern"), sorted(DENIED.items()))
def test_builtin_deny_list_forbids(inner: str, pattern: str) -> None:
    [obs] = forbidden(Policy(), entry(inner))
    assert f"'{pattern}'" in obs.message
    assert "must not ship" in obs.message


@pytest.mark.parametrize(("inner", "pattern"), sorted(DENIED.items()))
def test_builtin_deny_list_matches_at_any_depth_and_inside_nested_archives(
    inner: str, pattern: str
) -> None:
    nested = entry(f"deep/er/{inner}", outer="pkg-1.0.0.tgz!/")
    assert len(forbidden(Policy(), nested)) == 1


@pytest.mark.parametrize("inner", ["auth.json", "package/auth.json"])
def test_composer_auth_json_is_forbidden_at_a_package_root_only(inner: str) -> None:
    """Composer reads `auth.json` beside `composer.json`; deeper, the name is a locale file."""
    [obs] = forbidden(Policy(), entry(inner))
    assert "credential file" in obs.message
    assert forbidden(Policy(), entry(f"src/{inner}")) == []


@pytest.mark.parametrize("inner", HARMLESS)
def test_builtin_deny_list_leaves_harmless_files_alone(inner: str) -> None:
    assert check(Policy(), entry(inner), entry(inner, outer="pkg.tgz!/")) == []


@pytest.mark.parametrize("inner", [".ENV", "keys/ID_RSA", "Secrets/Server.PEM", ".Git/HEAD"])
def test_deny_list_ignores_case(inner: str) -> None:
    assert len(forbidden(Policy(), entry(inner))) == 1


def test_every_group_explains_itself_and_builtin_patterns_are_valid_lower_case() -> None:
    assert tuple(p for g in BUILTIN_DENY for p in g.patterns) == BUILTIN_DENY_PATTERNS
    titles = {g.title for g in BUILTIN_DENY}
    assert len(titles) == len(BUILTIN_DENY)
    for group in BUILTIN_DENY:
        assert group.reason and group.patterns
    for pattern in BUILTIN_DENY_PATTERNS:
        assert pattern == pattern.lower()
        check_pattern(pattern.removeprefix("!"), deny=True)


def test_message_names_the_pattern_the_group_and_why() -> None:
    [obs] = forbidden(Policy(), entry("keys/deploy.pem", outer="pkg.tgz!/"))
    assert obs.path == f"{ARTIFACT}!/pkg.tgz!/keys/deploy.pem"
    assert obs.line is None
    assert "built-in deny pattern '*.pem'" in obs.message
    assert "private key or keystore" in obs.message
    assert "revoked" in obs.message


def test_env_exemptions_cannot_undo_a_later_group() -> None:
    [obs] = forbidden(Policy(), entry(".git/.env.example"))
    assert "'.git'" in obs.message


def test_real_fixtures_contents_are_not_forbidden() -> None:
    expected = json.loads(
        (Path(__file__).parent / "fixtures/real/expected.json").read_text(encoding="utf-8")
    )
    fixtures = expected["fixtures"]
    items = fixtures.values() if isinstance(fixtures, dict) else fixtures
    contents = [p for item in items for p in item.get("contents", [])]
    assert contents
    for logical in contents:
        inner = logical.rsplit("!/", 1)[-1]
        outer = logical[: len(logical) - len(inner)]
        assert check(Policy(), entry(inner, outer=outer)) == []


# --- denied folders -----------------------------------------------------------------------


def test_a_denied_folder_is_reported_once_at_the_folder() -> None:
    observations = forbidden(
        Policy(),
        entry("package/.git/HEAD", outer="pkg.tgz!/"),
        entry("package/.git/objects/ab/cdef", outer="pkg.tgz!/"),
        entry("package/.git/config", outer="pkg.tgz!/"),
    )
    [obs] = observations
    assert obs.path == f"{ARTIFACT}!/pkg.tgz!/package/.git/"
    assert "package/.git/" in obs.message
    assert "package/.git/HEAD" in obs.message


def test_each_denied_folder_is_reported() -> None:
    observations = forbidden(
        Policy(),
        entry("a/.git/HEAD"),
        entry("b/.git/HEAD"),
        entry("a/.git/HEAD", outer="inner.zip!/"),
        entry("a/.git/index"),
    )
    assert [o.path for o in observations] == [
        f"{ARTIFACT}!/a/.git/",
        f"{ARTIFACT}!/b/.git/",
        f"{ARTIFACT}!/inner.zip!/a/.git/",
    ]


def test_a_fresh_filerules_reports_folders_again() -> None:
    policy = Policy()
    assert len(check(policy, entry(".git/HEAD"))) == 1
    assert len(check(policy, entry(".git/HEAD"))) == 1


def test_denied_folder_of_a_directory_artifact_keeps_its_display_path() -> None:
    item = Entry(
        path="build/.ssh/id_rsa",
        logical_path=".ssh/id_rsa",
        inner_path=".ssh/id_rsa",
        depth=0,
        kind=EntryKind.FILE,
    )
    [obs] = check(Policy(), item, name="build")
    assert obs.path == "build/.ssh/"


# --- config deny patterns and exceptions --------------------------------------------------


def test_config_deny_extends_the_list() -> None:
    policy = Policy(deny=("*.sqlite", "internal/**"))
    [db] = forbidden(policy, entry("data/app.SQLite"))
    assert "config's deny pattern '*.sqlite'" in db.message
    [folder] = forbidden(policy, entry("internal/notes.txt"), entry("internal/x/y.txt"))
    assert folder.path == f"{ARTIFACT}!/internal/"
    assert forbidden(policy, entry("src/internal/notes.txt")) == []
    assert len(forbidden(policy, entry(".env"))) == 1


def test_config_deny_can_match_a_logical_path() -> None:
    policy = Policy(deny=("/pkg-*.tgz!/package/docs/",))
    [obs] = forbidden(policy, entry("package/docs/a.md", outer="pkg-1.0.0.tgz!/"))
    assert obs.path == f"{ARTIFACT}!/pkg-1.0.0.tgz!/package/docs/"
    assert forbidden(policy, entry("package/docs/a.md")) == []


def test_config_deny_can_re_deny_a_builtin_exemption() -> None:
    assert len(forbidden(Policy(deny=(".env.example",)), entry(".env.example"))) == 1


def test_deny_list_refuses_to_shrink() -> None:
    with pytest.raises(PatternError, match="deny_exceptions"):
        FileRules(Policy(deny=("!.env",)), ARTIFACT)


def test_exception_exempts_the_named_inner_path_only() -> None:
    policy = Policy(deny_exceptions=("fixtures/test-key.pem",))
    assert check(policy, entry("fixtures/test-key.pem")) == []
    assert check(policy, entry("fixtures/test-key.pem", outer="pkg.tgz!/")) == []
    assert len(check(policy, entry("fixtures/other-key.pem"))) == 1
    assert len(check(policy, entry("other/fixtures/test-key.pem"))) == 1
    assert len(check(policy, entry("fixtures/TEST-KEY.pem"))) == 1


def test_exception_can_name_a_logical_path() -> None:
    policy = Policy(deny_exceptions=("pkg.tgz!/package/k.pem",))
    assert check(policy, entry("package/k.pem", outer="pkg.tgz!/")) == []
    assert len(check(policy, entry("package/k.pem", outer="other.tgz!/"))) == 1


def test_folder_exception_exempts_everything_under_it() -> None:
    policy = Policy(deny_exceptions=("/test/repo/.git/",))
    assert check(policy, entry("test/repo/.git/HEAD"), entry("test/repo/.git/config")) == []
    assert len(check(policy, entry(".git/HEAD"))) == 1


def test_exception_with_wildcards_exempts_nothing() -> None:
    policy = Policy(deny_exceptions=("*.pem", "**", "fixtures/[a-z].pem"))
    assert len(check(policy, entry("fixtures/a.pem"))) == 1
    assert len(check(policy, entry("*.pem"))) == 1  # a malformed exception exempts nothing


def test_exempt_file_inside_a_reported_folder_stays_exempt() -> None:
    policy = Policy(deny_exceptions=("repo/.git/keep",))
    observations = check(policy, entry("repo/.git/HEAD"), entry("repo/.git/keep"))
    assert len(observations) == 1


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("fixtures/k.pem", "fixtures/k.pem"),
        ("/fixtures/k.pem", "fixtures/k.pem"),
        ("repo/.git/", "repo/.git/"),
        ("pkg.tgz!/package/.npmrc", "pkg.tgz!/package/.npmrc"),
    ],
)
def test_normalize_exception(raw: str, normal: str) -> None:
    assert normalize_exception(raw) == normal


@pytest.mark.parametrize(
    "raw", ["", "/", "*.pem", "a/?.pem", "[ab].pem", "a\\b", "!x.pem", "a//b", "../x", "a/./b"]
)
def test_normalize_exception_refuses_what_does_not_name_a_path(raw: str) -> None:
    with pytest.raises(PatternError):
        normalize_exception(raw)


@pytest.mark.parametrize(
    ("pattern", "deny", "message"),
    [
        ("", True, "empty"),
        ("   ", False, "empty"),
        ("#x", False, "comment"),
        ("!x", True, "can only grow"),
        ("a\nb", False, "line breaks"),
        ("[z-a]", False, "not a valid"),
        ("[Z-a]", True, "not a valid"),  # valid as written, invalid once lower-cased
    ],
)
def test_check_pattern_refuses(pattern: str, deny: bool, message: str) -> None:
    with pytest.raises(PatternError, match=message):
        check_pattern(pattern, deny=deny)


def test_check_pattern_accepts_negated_allow_patterns() -> None:
    check_pattern("!package/dist/**/*.map", deny=False)


# --- allowlists ---------------------------------------------------------------------------

NPM = ArtifactRules(
    name="npm-*",
    allow=("package/package.json", "package/dist/**", "!package/dist/**/*.map"),
)


def not_allowed(policy: Policy, *entries: Entry, name: str = "npm-package") -> list[str]:
    return [o.path for o in check(policy, *entries, name=name) if o.rule is Rule.NOT_ALLOWED]


def test_allowlist_flags_files_outside_it_and_names_the_rule() -> None:
    policy = Policy(artifacts=(NPM,))
    observations = check(policy, entry("package/src/index.ts"), name="npm-package")
    [obs] = observations
    assert obs.rule is Rule.NOT_ALLOWED
    assert "'npm-*'" in obs.message
    assert "package/src/index.ts" in obs.message
    assert "'npm-package'" in obs.message


def test_allowlist_matches_inner_or_logical_path() -> None:
    policy = Policy(artifacts=(NPM, ArtifactRules("zipped", ("/pkg.tgz!/package/README.md",))))
    assert not_allowed(policy, entry("package/dist/a/b.js")) == []
    assert not_allowed(policy, entry("package/dist/a/b.js", outer="pkg-1.0.0.tgz!/")) == []
    assert not_allowed(policy, entry("package/README.md", outer="pkg.tgz!/"), name="zipped") == []
    assert len(not_allowed(policy, entry("package/LICENSE", outer="pkg.tgz!/"), name="zipped")) == 1


def test_allowlist_negation_narrows_it() -> None:
    policy = Policy(artifacts=(NPM,))
    assert not_allowed(policy, entry("package/dist/index.js.map")) == [
        f"{ARTIFACT}!/package/dist/index.js.map"
    ]


def test_allowlist_is_case_sensitive() -> None:
    policy = Policy(artifacts=(NPM,))
    assert len(not_allowed(policy, entry("package/DIST/index.js"))) == 1


def test_nested_archives_are_containers_for_the_allowlist_but_not_for_the_deny_list() -> None:
    policy = Policy(artifacts=(NPM,), deny=("*.tgz",))
    archive = entry("pkg-1.0.0.tgz", kind=EntryKind.ARCHIVE)
    [obs] = check(policy, archive, name="npm-package")
    assert obs.rule is Rule.FORBIDDEN
    assert check(Policy(artifacts=(NPM,)), archive, name="npm-package") == []


def test_allowlist_applies_by_first_matching_artifact_rule() -> None:
    policy = Policy(artifacts=(ArtifactRules("npm-docs"), NPM))
    assert not_allowed(policy, entry("anything.txt"), name="npm-docs") == []
    assert len(not_allowed(policy, entry("anything.txt"), name="npm-lib")) == 1
    assert not_allowed(policy, entry("anything.txt"), name="wheel") == []


def test_allowing_a_denied_file_does_not_exempt_it() -> None:
    policy = Policy(artifacts=(ArtifactRules("*", ("**",)),))
    assert [o.rule for o in check(policy, entry(".env"))] == [Rule.FORBIDDEN]


def test_forbidden_file_outside_the_allowlist_is_reported_once_by_default() -> None:
    policy = Policy(artifacts=(NPM,))
    rules = [o.rule for o in check(policy, entry("package/.npmrc"), name="npm-x")]
    assert rules == [Rule.FORBIDDEN]
    folder = check(policy, entry("package/.git/HEAD"), entry("package/.git/a"), name="npm-x")
    assert [o.rule for o in folder] == [Rule.FORBIDDEN]


@pytest.mark.parametrize(
    ("forbidden_severity", "expected"),
    [
        (None, [Rule.FORBIDDEN, Rule.NOT_ALLOWED]),
        (Severity.NOTICE, [Rule.FORBIDDEN, Rule.NOT_ALLOWED]),
        (Severity.ERROR, [Rule.FORBIDDEN]),
    ],
)
def test_not_allowed_is_kept_when_forbidden_ranks_lower(
    forbidden_severity: Severity | None, expected: list[Rule]
) -> None:
    policy = Policy(artifacts=(NPM,), severities={Rule.FORBIDDEN: forbidden_severity})
    assert [o.rule for o in check(policy, entry("package/.npmrc"), name="npm-x")] == expected


def test_empty_allow_means_no_allowlist() -> None:
    policy = Policy(artifacts=(ArtifactRules("*"),))
    assert check(policy, entry("whatever/file.txt")) == []


# --- the pattern engine -------------------------------------------------------------------

_SEGMENTS = st.sampled_from(
    ["a", "b", ".git", ".env", ".env.local", "x.pem", "dist", "package", "pkg.tgz!", "A.PEM"]
)
_PATHS = st.lists(_SEGMENTS, min_size=1, max_size=5).map("/".join)
_GLOB_SEGMENTS = st.sampled_from(["a", "*", "**", "?", "*.pem", ".git", "dist", "[ab]", "x*"])
_PATTERNS = st.builds(
    lambda neg, lead, segs, trail: ("!" if neg else "") + lead + "/".join(segs) + trail,
    st.booleans(),
    st.sampled_from(["", "/", "**/"]),
    st.lists(_GLOB_SEGMENTS, min_size=1, max_size=3),
    st.sampled_from(["", "/"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PATTERNS, min_size=1, max_size=6), st.lists(_PATHS, min_size=1, max_size=10))
def test_pattern_set_agrees_with_pathspec(patterns: list[str], paths: list[str]) -> None:
    reference = PathSpec.from_lines("gitignore", patterns)
    compiled = PatternSet(patterns)
    for path in paths + [p + "/" for p in paths]:
        result = reference.check_file(path)
        want = result.index if result.include else None
        assert compiled.which(path) == want
        assert compiled.selects(path) is (want is not None)


def test_deny_list_match_path_reports_folder() -> None:
    deny = DenyList()
    assert deny.match_path("src/index.js") is None
    found = deny.match_path("a/.Git/x")
    assert found is not None and found[1] == "a/.Git/"


def test_hundred_thousand_members_stay_fast() -> None:
    policy = Policy(artifacts=(NPM,))
    rules = FileRules(policy, "npm-package")
    members = [
        entry(f"package/dist/chunk{i % 100}/file{i}.js", outer="pkg-1.0.0.tgz!/")
        for i in range(100_000)
    ]
    start = time.perf_counter()
    for member in members:
        rules.check(member)
    # About 1 s on a laptop; the budget leaves room for slow CI machines.
    assert time.perf_counter() - start < 15
