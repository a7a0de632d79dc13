"""Read the repository's `.github/release-guard.yml` at the scanned commit.

An organisation's `.github` repository can hold defaults that the repository's own file
extends (CONTRACT.md). A file that is missing means the defaults; a file that is invalid is
reported as such (never a silent pass), with the line the loader names.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Final

from bot.config import load_policy
from bot.engine.policy import Policy
from bot.errors import ConfigError
from bot.github import GitHubClient, NotFound, PermissionMissing

CONFIG_PATH: Final = ".github/release-guard.yml"
ORG_CONFIG_REPOSITORY: Final = ".github"


@dataclass(frozen=True, slots=True)
class RepoConfig:
    """The policy a scan runs under, and where it came from."""

    policy: Policy
    present: bool
    """Whether the repository itself has the config file at the scanned commit."""
    text: str | None = None
    """The repository file's text, for pointing annotations at its lines."""
    error: ConfigError | None = None
    """Set when a config file is invalid; `policy` is then the defaults and must not be used
    to pass anything."""


async def read_text_file(
    gh: GitHubClient, repository: str, path: str, ref: str | None
) -> str | None:
    """Return a file's text at `ref` (the default branch when None), or None when absent.

    https://docs.github.com/en/rest/repos/contents#get-repository-content
    """
    url = f"/repos/{repository}/contents/{path}" + ("{?ref}" if ref else "")
    try:
        data: Any = await gh.getitem(url, url_vars={"ref": ref} if ref else {})
    except NotFound:
        return None
    if not isinstance(data, dict) or data.get("type") != "file":
        return None
    raw = data.get("content")
    if data.get("encoding") != "base64" or not isinstance(raw, str):
        raise ConfigError("the file is too large to read through the contents API", path=path)
    try:
        content = base64.b64decode(raw)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("GitHub returned content that is not base64", path=path) from exc
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", path=path) from exc


async def _organisation_defaults(gh: GitHubClient, repository: str) -> Policy | None:
    owner = repository.split("/", 1)[0]
    try:
        text = await read_text_file(gh, f"{owner}/{ORG_CONFIG_REPOSITORY}", CONFIG_PATH, None)
    except (NotFound, PermissionMissing):
        # The App may not be installed on the organisation's .github repository.
        return None
    if text is None:
        return None
    return load_policy(text, path=f"{owner}/{ORG_CONFIG_REPOSITORY}:{CONFIG_PATH}")


async def load_repo_config(gh: GitHubClient, repository: str, ref: str) -> RepoConfig:
    """Return the policy for `repository` at `ref`: organisation defaults, then its own file."""
    try:
        base = await _organisation_defaults(gh, repository)
        text = await read_text_file(gh, repository, CONFIG_PATH, ref)
        if text is None:
            return RepoConfig(policy=base or Policy(), present=False)
        return RepoConfig(
            policy=load_policy(text, path=CONFIG_PATH, base=base), present=True, text=text
        )
    except ConfigError as error:
        return RepoConfig(policy=Policy(), present=error.path == CONFIG_PATH, error=error)
