"""Turn a GitHub answer that is not a success into the matching error.

Client errors are described in
https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api; the error
body is `{"message": ..., "documentation_url": ..., "errors": [...]}`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bot.github import permissions
from bot.github.errors import (
    AuthenticationFailed,
    GitHubError,
    GitHubUnavailable,
    NotFound,
    PermissionMissing,
    ValidationFailed,
    Where,
)


def decode_json(body: bytes) -> Any:
    """Return the JSON in `body`, or None when it is empty or not JSON."""
    if not body:
        return None
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def message_of(body: bytes) -> str | None:
    """Return GitHub's `message` from an error body, if there is one."""
    data = decode_json(body)
    if isinstance(data, dict) and isinstance(data.get("message"), str):
        return str(data["message"])
    return None


def error_for(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    path: str,
    as_app: bool,
) -> GitHubError:
    """Return the error for a final, unsuccessful answer to `method path`.

    `as_app` says the request was authenticated with the App's JWT rather than with an
    installation token, which changes what a 401 or a 403 means.
    """
    data = decode_json(body)
    said = message_of(body) or f"HTTP {status}"
    where: Where = {"method": method, "path": path, "status_code": status}
    if status == 401:
        if as_app:
            hint = "check APP_ID, the private key, and this machine's clock"
        else:
            hint = "a freshly minted installation token was refused too"
        return AuthenticationFailed(f"GitHub refused the credentials ({said}); {hint}", **where)
    if status == 403:
        if as_app:
            return PermissionMissing(
                f"GitHub refused the App ({said}); the installation may be suspended",
                permission=None,
                **where,
            )
        permission = permissions.required_permission(method, path, headers)
        hint = (
            f"the App likely lacks the `{permission}` permission: grant it in the App's "
            "settings and have the installation accept the new permissions"
            if permission
            else "the App likely lacks a permission for this endpoint"
        )
        return PermissionMissing(f"{said}; {hint}", permission=permission, **where)
    if status in (404, 410):
        return NotFound(said, **where)
    if status == 422:
        errors = data.get("errors") if isinstance(data, dict) else None
        detail = f"{said}: {json.dumps(errors)}" if errors else said
        return ValidationFailed(detail, errors=errors, **where)
    if status >= 500:
        return GitHubUnavailable(said, **where)
    return GitHubError(said, **where)
