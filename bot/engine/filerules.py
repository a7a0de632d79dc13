"""Path rules: `files/forbidden` (the deny list) and `files/not-allowed` (the allowlist).

Both judge an archive member by its path alone, so they run for every member of every
archive, nested ones included. Patterns are gitignore-style (pathspec's `gitignore` flavour,
last matching pattern wins, `!` negates) and a member is judged by its inner path (inside its
innermost container) and by its logical path (from the artifact's root, nested archives
joined with `!/`), so one pattern works whether a package is scanned directly or inside an
Actions artifact zip.

Deny list
    `BUILTIN_DENY` (below) plus the config's `deny` patterns. The config can only add to it;
    an exemption is an explicit `deny_exceptions` entry that names a path (see
    `normalize_exception`). Matching is case-insensitive: `.ENV` or `ID_RSA` leak as much as
    their lower-case spellings, and case-insensitive file systems open them by either name.
    A denied folder (`.git/`, `.ssh/`, …) is reported once, not once per file inside it.

Allowlist
    The `allow` patterns of the first `ArtifactRules` whose `name` matches the artifact.
    Matching is case-sensitive (stricter). Nested archives are containers: their members are
    judged, not the archive itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from pathspec import PathSpec

from bot.engine.model import Entry, EntryKind, Observation, Rule, Severity
from bot.engine.policy import ArtifactRules, Policy


@dataclass(frozen=True, slots=True)
class DenyGroup:
    """A family of files that must not ship, with the reason a finding gives."""

    title: str
    reason: str
    patterns: tuple[str, ...]


BUILTIN_DENY: tuple[DenyGroup, ...] = (
    # Environment files hold the runtime secrets of an app (API keys, database URLs, session
    # secrets). `.env.example`/`.env.sample`/`.env.template` are the conventional committed
    # templates with placeholder values, so they are re-included. This group comes first: the
    # last matching pattern wins, so its `!` exemptions can never undo a later group (a
    # `.git/.env.example` is still inside a VCS folder).
    DenyGroup(
        title="environment file",
        reason=(
            "environment files hold an application's runtime secrets (API keys, database "
            "URLs, tokens) and belong on the machine that runs it, never in a release"
        ),
        patterns=(
            ".env",
            ".env.*",
            "!.env.example",
            "!.env.sample",
            "!.env.template",
            ".envrc",
        ),
    ),
    # Private keys and keystores, by the names tools give them: OpenSSH's default key files
    # (their `.pub` halves are harmless and not matched), PEM/PKCS#8 files, PKCS#12 bundles,
    # Java/Android keystores, PuTTY keys, GnuPG secret keyrings, macOS keychains and KeePass
    # databases. `*.pem` also catches certificate bundles, which are public: exempt one by
    # its path when it is meant to ship.
    DenyGroup(
        title="private key or keystore",
        reason=(
            "a private key or keystore lets anyone who downloads the release sign, decrypt "
            "or log in as its owner; once published it must be revoked"
        ),
        patterns=(
            "id_rsa",
            "id_dsa",
            "id_ecdsa",
            "id_ed25519",
            "id_ecdsa_sk",
            "id_ed25519_sk",
            ".ssh/",
            "*.key",
            "*.pem",
            "*.p8",
            "*.p12",
            "*.pfx",
            "*.pkcs12",
            "*.jks",
            "*.keystore",
            "*.bks",
            "*.ppk",
            ".gnupg/",
            "secring.gpg",
            "*.keychain",
            "*.keychain-db",
            "*.kdbx",
        ),
    ),
    # Credential files of package registries (npm, PyPI, RubyGems, crates.io, Composer), of
    # HTTP/git clients (netrc, git's credential store), of clouds and cluster tools (AWS,
    # Google Cloud, Azure, Docker, Kubernetes, s3cmd, gsutil, Vault, Terraform CLI and state),
    # of the GitHub CLI, of databases (PostgreSQL, MySQL) and web servers (htpasswd). Names
    # with a folder match that folder at any depth. Composer's `auth.json` is matched only at
    # a package's root (`auth.json`, `package/auth.json`), where Composer reads it: the same
    # name is common for translation files deeper down (`locales/en/auth.json`).
    DenyGroup(
        title="credential file",
        reason=(
            "credential files hold tokens and passwords for registries, clouds and services; "
            "a published one hands them to everyone"
        ),
        patterns=(
            ".npmrc",
            ".pypirc",
            "/auth.json",
            "/package/auth.json",
            "**/.composer/auth.json",
            "**/.config/composer/auth.json",
            ".netrc",
            "_netrc",
            ".git-credentials",
            "**/.aws/credentials",
            "**/.docker/config.json",
            ".dockercfg",
            "**/.kube/config",
            "kubeconfig",
            "*.kubeconfig",
            "application_default_credentials.json",
            "**/.config/gcloud/",
            "client_secret*.apps.googleusercontent.com.json",
            "**/.azure/",
            ".boto",
            ".vault-token",
            "**/.config/gh/hosts.yml",
            "**/.gem/credentials",
            "**/.cargo/credentials",
            "**/.cargo/credentials.toml",
            ".s3cfg",
            ".terraformrc",
            "terraform.rc",
            "*.tfstate",
            "*.tfstate.backup",
            ".pgpass",
            ".my.cnf",
            ".htpasswd",
        ),
    ),
    # Version-control metadata: `.git` is both the repository folder and the file that
    # worktrees and submodules use to point at one; Mercurial, Subversion and Bazaar keep
    # folders.
    DenyGroup(
        title="version-control metadata",
        reason=(
            "version-control metadata carries the whole history (deleted secrets included), "
            "unreleased work and internal remote URLs"
        ),
        patterns=(".git", ".hg/", ".svn/", ".bzr/"),
    ),
    # Interactive shell and REPL histories record commands typed with passwords and tokens.
    DenyGroup(
        title="shell history",
        reason="shell and REPL histories record commands typed with passwords and tokens",
        patterns=(
            ".bash_history",
            ".zsh_history",
            ".sh_history",
            ".python_history",
            ".node_repl_history",
            ".psql_history",
            ".mysql_history",
        ),
    ),
)
"""The built-in deny list, in matching order (gitignore semantics: the last match wins)."""

BUILTIN_DENY_PATTERNS: tuple[str, ...] = tuple(p for g in BUILTIN_DENY for p in g.patterns)

_CONFIG_DENY = DenyGroup(
    title="file on the repository's deny list",
    reason="the repository's release-guard config lists it under `deny`",
    patterns=(),
)

_SEVERITY_RANK: dict[Severity | None, int] = {
    None: 0,
    Severity.NOTICE: 1,
    Severity.WARNING: 2,
    Severity.ERROR: 3,
}


class PatternError(ValueError):
    """A deny, allow or exception pattern is unusable; the message says why."""


def check_pattern(pattern: str, *, deny: bool) -> None:
    """Raise PatternError unless `pattern` is a gitignore-style pattern that can match a path.

    A deny pattern may not start with `!` (the deny list never shrinks; an allowlist may
    narrow itself) and must also work lower-cased, the way it is matched.
    """
    if not pattern.strip():
        raise PatternError("a pattern cannot be empty")
    if any(ch in pattern for ch in "\n\r\0"):
        raise PatternError("a pattern cannot contain line breaks or NUL characters")
    if pattern.startswith("#"):
        raise PatternError("a pattern starting with '#' is a gitignore comment; write '\\#'")
    if deny and pattern.startswith("!"):
        raise PatternError(
            "a deny pattern cannot start with '!': the deny list can only grow; "
            "exempt a named path under deny_exceptions instead"
        )
    for spelling in (pattern, pattern.lower()) if deny else (pattern,):
        _compile_one(spelling)


def _compile_one(pattern: str) -> None:
    try:
        compiled = PathSpec.from_lines("gitignore", [pattern]).patterns[0]
    except (ValueError, re.error) as exc:
        detail = re.sub(r" at position \d+$", "", str(exc))
        raise PatternError(f"not a valid gitignore pattern ({detail})") from exc
    if compiled.include is None:
        raise PatternError("the pattern matches nothing")


def normalize_exception(path: str) -> str:
    """Return the canonical form of a `deny_exceptions` entry, or raise PatternError.

    An exception names what it exempts: a relative path without wildcards (`fixtures/k.pem`,
    or a logical path such as `pkg.tgz!/package/fixtures/k.pem`), or a folder ending with `/`
    (`fixtures/repo/.git/`) that exempts everything under it. A leading `/` is dropped. The
    config loader also requires that the deny list match what an exception names.
    """
    if any(ch in path for ch in "\n\r\0"):
        raise PatternError("a path cannot contain line breaks or NUL characters")
    if path.startswith("!"):
        raise PatternError("an exception is a path, not a negated pattern: drop the '!'")
    if any(ch in path for ch in "*?[\\"):
        raise PatternError(
            "an exception must name a path: wildcards, character classes and escapes "
            "(*, ?, [, \\) are not allowed"
        )
    stripped = path.lstrip("/")
    folder = stripped.endswith("/")
    segments = stripped.rstrip("/").split("/")
    if not stripped.rstrip("/") or any(s in ("", ".", "..") for s in segments):
        raise PatternError("an exception must be a relative path without empty, . or .. parts")
    return "/".join(segments) + ("/" if folder else "")


_NAMED_GROUP = re.compile(r"\(\?P<[A-Za-z_][A-Za-z0-9_]*>")
_ANY_FOLDER = "^(?:.+/)?"


class PatternSet:
    """A compiled gitignore-style pattern list: which pattern (if any) selects a path.

    pathspec tries each pattern's regular expression in turn, which costs about 20 µs per
    path for the built-in deny list. Nearly every path matches no pattern at all, so a single
    combined expression of the positive patterns answers that common case first; pathspec
    decides only the paths it lets through (negations can only unselect, never select).
    """

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        self._spec = PathSpec.from_lines("gitignore", self.patterns)
        if len(self._spec.patterns) != len(self.patterns):  # from_lines drops empty lines
            raise PatternError("a pattern cannot be empty")
        self._any = _combined_regex(self._spec.patterns)
        self._positive_only = not any(p.startswith("!") for p in self.patterns)

    def selects(self, path: str) -> bool:
        """Whether some pattern selects `path`; without negations the combined regex decides."""
        if self._any is not None and self._positive_only:
            return self._any.search(path) is not None
        return self.which(path) is not None

    def which(self, path: str) -> int | None:
        """The index of the pattern that selects `path` (normalized, `/`-separated), or None."""
        if self._any is not None and self._any.search(path) is None:
            return None
        result = self._spec.check_file(path, separators=())
        return result.index if result.include else None


def _combined_regex(compiled: Sequence[object]) -> re.Pattern[str] | None:
    """One expression matching whenever any positive pattern does; None if not derivable.

    The unanchored patterns share the prefix `^(?:.+/)?`, which is factored out so the
    engine walks the folders of a path once instead of once per pattern.
    """
    anywhere: list[str] = []
    anchored: list[str] = []
    for pattern in compiled:
        if getattr(pattern, "include", None) is not True:
            continue
        regex = getattr(pattern, "regex", None)
        if not isinstance(regex, re.Pattern) or not isinstance(regex.pattern, str):
            return None
        if regex.flags & ~re.UNICODE:
            return None
        source = _NAMED_GROUP.sub("(?:", regex.pattern)
        if source.startswith(_ANY_FOLDER):
            anywhere.append(source[len(_ANY_FOLDER) :])
        else:
            anchored.append(source)
    alternatives = [f"(?:{s})" for s in anchored]
    if anywhere:
        alternatives.append(_ANY_FOLDER + "(?:" + "|".join(f"(?:{s})" for s in anywhere) + ")")
    if not alternatives:
        return re.compile(r"(?!)")
    try:
        return re.compile("|".join(alternatives))
    except re.error:
        return None


@lru_cache(maxsize=64)
def _pattern_set(patterns: tuple[str, ...]) -> PatternSet:
    """Pattern sets are immutable, so artifacts scanned under one policy share them."""
    return PatternSet(patterns)


def _normalize(path: str) -> str:
    while path.startswith(("/", "./")):
        path = path[1:] if path.startswith("/") else path[2:]
    return path


@dataclass(frozen=True, slots=True)
class DenyMatch:
    """Why a path is denied: the pattern, its group, and the denied folder if it is one.

    `folder` is the path of the denied folder (ending with `/`, in the same spelling as the
    matched path) when a folder such as `.git/` is what the pattern selects, else None.
    `on_logical` says whether the logical path (rather than the inner path) matched.
    """

    pattern: str
    group: DenyGroup
    folder: str | None
    on_logical: bool

    @property
    def builtin(self) -> bool:
        return self.group is not _CONFIG_DENY


class DenyList:
    """The built-in deny list plus a config's `deny` patterns, minus its named exceptions."""

    def __init__(self, extra: Sequence[str] = (), exceptions: Sequence[str] = ()) -> None:
        for pattern in extra:
            check_pattern(pattern, deny=True)
        origin = [(p, g) for g in BUILTIN_DENY for p in g.patterns]
        origin += [(p, _CONFIG_DENY) for p in extra]
        self._origin = tuple(origin)
        self._set = _pattern_set(tuple(p.lower() for p, _ in origin))
        files: list[str] = []
        folders: list[str] = []
        for raw in exceptions:
            try:
                exception = normalize_exception(raw)
            except PatternError:
                continue  # a malformed exception exempts nothing: fail closed
            (folders if exception.endswith("/") else files).append(exception)
        self._exempt_files = frozenset(files)
        self._exempt_folders = tuple(folders)

    def is_exempt(self, *paths: str) -> bool:
        """Whether a `deny_exceptions` entry names one of `paths` or a folder above it."""
        if not self._exempt_files and not self._exempt_folders:
            return False
        return any(p in self._exempt_files or p.startswith(self._exempt_folders) for p in paths)

    def match_path(self, path: str) -> tuple[int, str | None] | None:
        """The deciding pattern's index and the denied folder (if any) for one path."""
        original = _normalize(path)
        lowered = original.lower()
        index = self._set.which(lowered)
        if index is None:
            return None
        return self._folder(original, lowered) or (index, None)

    def _folder(self, original: str, lowered: str) -> tuple[int, str] | None:
        """The shortest denied folder above a denied path, so a folder is reported once.

        Counted in `/`-separated segments: lower-casing can change a string's length but
        never its slashes. A folder's patterns select everything below it (gitignore: a
        path under an excluded folder stays excluded), so being denied is monotone along
        a path's prefixes and a binary search finds the shortest in O(log n) probes: trying
        every prefix in turn was quadratic in the path's length.
        """
        slashes = [i for i, char in enumerate(lowered) if char == "/"]
        if not slashes or self._set.which(lowered[: slashes[-1] + 1]) is None:
            return None
        low, high = 0, len(slashes) - 1  # the answer's index in `slashes`
        while low < high:
            middle = (low + high) // 2
            if self._set.which(lowered[: slashes[middle] + 1]) is None:
                low = middle + 1
            else:
                high = middle
        index = self._set.which(lowered[: slashes[low] + 1])
        if index is None:  # a negation broke the monotony: report the path itself
            return None
        depth = low + 1
        return index, "/".join(original.split("/")[:depth]) + "/"

    def match(self, inner_path: str, logical_path: str) -> DenyMatch | None:
        """Why the member at these paths is denied, or None (also when it is exempt)."""
        if self.is_exempt(inner_path, logical_path):
            return None
        found = self.match_path(inner_path)
        on_logical = False
        if found is None and logical_path != inner_path:
            found = self.match_path(logical_path)
            on_logical = True
        if found is None:
            return None
        index, folder = found
        pattern, group = self._origin[index]
        return DenyMatch(pattern=pattern, group=group, folder=folder, on_logical=on_logical)


class AllowList:
    """The allowlist of one artifact rule: a member is allowed when either path matches."""

    def __init__(self, rules: ArtifactRules) -> None:
        for pattern in rules.allow:
            check_pattern(pattern, deny=False)
        self.rules = rules
        self._set = _pattern_set(tuple(rules.allow))

    def allows(self, inner_path: str, logical_path: str) -> bool:
        if self._set.selects(_normalize(inner_path)):
            return True
        return logical_path != inner_path and self._set.selects(_normalize(logical_path))


class FileRules:
    """The path checks for one artifact; `check` is called for every member the walker finds.

    It remembers which denied folders it has reported, so one instance serves one artifact.
    When a member is both forbidden and outside the allowlist, `files/not-allowed` is left
    out unless the policy ranks it above `files/forbidden` (one finding per cause is enough).
    """

    def __init__(self, policy: Policy, artifact_name: str) -> None:
        self.artifact_name = artifact_name
        self._deny = DenyList(policy.deny, policy.deny_exceptions)
        rules = policy.rules_for(artifact_name)
        self._allow = AllowList(rules) if rules is not None and rules.allow else None
        forbidden = _SEVERITY_RANK[policy.severity(Rule.FORBIDDEN)]
        not_allowed = _SEVERITY_RANK[policy.severity(Rule.NOT_ALLOWED)]
        self._forbidden_covers = forbidden > 0 and forbidden >= not_allowed
        self._reported_folders: set[str] = set()
        self._reported_lengths: set[int] = set()

    def check(self, entry: Entry) -> list[Observation]:
        observations: list[Observation] = []
        forbidden = self._check_deny(entry, observations)
        if (
            self._allow is not None
            and entry.kind is EntryKind.FILE
            and not (forbidden and self._forbidden_covers)
            and not self._allow.allows(entry.inner_path, entry.logical_path)
        ):
            observations.append(self._not_allowed(entry, self._allow.rules))
        return observations

    def _check_deny(self, entry: Entry, out: list[Observation]) -> bool:
        """Append the `files/forbidden` observation, if any; True when the member is denied."""
        if self._reported_folders and self._in_reported_folder(entry.logical_path):
            return not self._deny.is_exempt(entry.inner_path, entry.logical_path)
        found = self._deny.match(entry.inner_path, entry.logical_path)
        if found is None:
            return False
        if found.folder is None:
            out.append(_forbidden_file(entry, found))
            return True
        logical_folder = _logical_folder(entry, found)
        if logical_folder not in self._reported_folders:
            self._reported_folders.add(logical_folder)
            self._reported_lengths.add(len(logical_folder))
            out.append(_forbidden_folder(entry, found, logical_folder))
        return True

    def _in_reported_folder(self, logical_path: str) -> bool:
        """Whether a reported folder holds `logical_path`: one probe per distinct folder
        length (slicing at every slash was quadratic in the path's length)."""
        for length in self._reported_lengths:
            if (
                length <= len(logical_path)
                and logical_path[length - 1] == "/"
                and logical_path[:length] in self._reported_folders
            ):
                return True
        return False

    def _not_allowed(self, entry: Entry, rules: ArtifactRules) -> Observation:
        count = len(rules.allow)
        return Observation(
            rule=Rule.NOT_ALLOWED,
            path=entry.path,
            message=(
                f"{entry.inner_path} is outside the allowlist of the artifact rule "
                f"'{rules.name}' ({count} pattern{'s' if count != 1 else ''}) that applies "
                f"to '{self.artifact_name}'; add a pattern to its 'allow' list if it is "
                "meant to ship."
            ),
        )


def _pattern_source(found: DenyMatch) -> str:
    return "the built-in deny pattern" if found.builtin else "the config's deny pattern"


def _forbidden_file(entry: Entry, found: DenyMatch) -> Observation:
    shown = entry.logical_path if found.on_logical else entry.inner_path
    return Observation(
        rule=Rule.FORBIDDEN,
        path=entry.path,
        message=(
            f"{shown} must not ship: it matches {_pattern_source(found)} "
            f"'{found.pattern}' ({found.group.title}): {found.group.reason}."
        ),
    )


def _logical_folder(entry: Entry, found: DenyMatch) -> str:
    """The denied folder as a logical path: the key that reports each folder once."""
    folder = found.folder or ""
    if found.on_logical:
        return folder
    outer = entry.logical_path[: len(entry.logical_path) - len(entry.inner_path)]
    return outer + folder if entry.logical_path.endswith(entry.inner_path) else folder


def _forbidden_folder(entry: Entry, found: DenyMatch, logical_folder: str) -> Observation:
    """One observation for a whole denied folder, at the folder's display path."""
    path = entry.path
    if path.endswith(entry.logical_path):
        path = path[: len(path) - len(entry.logical_path)] + logical_folder
    return Observation(
        rule=Rule.FORBIDDEN,
        path=path,
        message=(
            f"the folder {found.folder} must not ship: it matches {_pattern_source(found)} "
            f"'{found.pattern}' ({found.group.title}): {found.group.reason}. "
            f"Reported once for the whole folder (first member: {entry.inner_path})."
        ),
    )
