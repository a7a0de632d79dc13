"""Errors from talking to GitHub, one subclass per thing a caller does differently.

Every message names the request (method and path, never the query, which for a storage URL
holds a signature) and what GitHub said; no message ever holds a token, a JWT or a key.
"""

from __future__ import annotations

from typing import TypedDict

from bot.errors import ReleaseGuardError


class Where(TypedDict):
    """The request an error is about, as keyword arguments of every GitHubError."""

    status_code: int | None
    method: str | None
    path: str | None


class GitHubError(ReleaseGuardError):
    """GitHub refused or failed a request; `status_code` is the HTTP status (None: no answer)."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.method = method
        self.path = path
        self.detail = message
        where = f"{method} {path}: " if method and path else ""
        status = f" (HTTP {status_code})" if status_code is not None else ""
        super().__init__(f"{where}{message}{status}")


class GitHubUnavailable(GitHubError):
    """Every allowed attempt ended in a 5xx, a timeout or a connection error: try again later."""


class RateLimited(GitHubError):
    """A primary or secondary rate limit longer than the client will wait in place.

    `retry_after` is how many seconds GitHub asked for (or until `x-ratelimit-reset`); a job
    queue can reschedule the work that far ahead.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        status_code: int | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, status_code=status_code, method=method, path=path)


class AuthenticationFailed(GitHubError):
    """GitHub answered 401 even with a freshly minted credential (wrong key, App id, or clock)."""


class PermissionMissing(GitHubError):
    """A 403 that is not a rate limit: the App lacks a permission, named in `permission`.

    See https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api
    ("Insufficient permission errors").
    """

    def __init__(
        self,
        message: str,
        *,
        permission: str | None,
        status_code: int | None = 403,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.permission = permission
        super().__init__(message, status_code=status_code, method=method, path=path)


class NotFound(GitHubError):
    """404: the resource does not exist, or this installation cannot see it."""


class ValidationFailed(GitHubError):
    """422: GitHub understood the request but rejected its content; `errors` as GitHub sent them."""

    def __init__(
        self,
        message: str,
        *,
        errors: object = None,
        status_code: int | None = 422,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.errors = errors
        super().__init__(message, status_code=status_code, method=method, path=path)


class ArtifactGone(GitHubError):
    """The artifact or asset to download has expired or was deleted (404 or 410)."""


class DownloadTooLarge(GitHubError):
    """A download went past `max_bytes`; nothing was left on disk."""

    def __init__(
        self,
        message: str,
        *,
        max_bytes: int,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        super().__init__(message, method=method, path=path)
