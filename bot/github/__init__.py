"""Everything release-guard says to GitHub: authentication, retries, downloads, errors."""

from bot.github.app import DEFAULT_API_URL, GitHubApp
from bot.github.auth import InstallationToken, TokenCache, app_jwt
from bot.github.client import GitHubClient
from bot.github.errors import (
    ArtifactGone,
    AuthenticationFailed,
    DownloadTooLarge,
    GitHubError,
    GitHubUnavailable,
    NotFound,
    PermissionMissing,
    RateLimited,
    ValidationFailed,
)
from bot.github.ratelimit import (
    LocalRateLimitGate,
    RateLimitGate,
    RateLimitState,
    RateLimitTracker,
)
from bot.github.retry import RetryPolicy

__all__ = [
    "DEFAULT_API_URL",
    "ArtifactGone",
    "AuthenticationFailed",
    "DownloadTooLarge",
    "GitHubApp",
    "GitHubClient",
    "GitHubError",
    "GitHubUnavailable",
    "InstallationToken",
    "LocalRateLimitGate",
    "NotFound",
    "PermissionMissing",
    "RateLimitGate",
    "RateLimitState",
    "RateLimitTracker",
    "RateLimited",
    "RetryPolicy",
    "TokenCache",
    "ValidationFailed",
    "app_jwt",
]
