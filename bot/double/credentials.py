"""Check the credentials a request carries, the way GitHub does.

App JWTs: https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/
generating-a-json-web-token-jwt-for-a-github-app (RS256, `iss` the App id, `iat` in the past,
`exp` at most ten minutes ahead). Installation tokens: `Authorization: token <t>` or
`Bearer <t>`, refused once expired.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from typing import Final

import jwt

from bot.double.state import IssuedToken, State

MAX_JWT_LIFETIME: Final = 600
TOKEN_ALPHABET: Final = string.ascii_letters + string.digits


class CredentialError(Exception):
    """Answer 401 with this message."""


@dataclass(frozen=True)
class Presented:
    scheme: str  # "bearer" or "token"
    value: str


def presented(header: str | None) -> Presented | None:
    """Split an `Authorization` header into its scheme and value."""
    if not header or " " not in header:
        return None
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme not in ("bearer", "token") or not value.strip():
        return None
    return Presented(scheme, value.strip())


def looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2 and not value.startswith("ghs_")


def verify_app_jwt(
    value: str, *, public_key: bytes, app_id: int, now: float, leeway: float = 0.0
) -> None:
    """Raise CredentialError unless `value` is a JWT GitHub would take from this App."""
    try:
        claims = jwt.decode(
            value,
            public_key,
            algorithms=["RS256"],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
        )
    except jwt.PyJWTError as exc:
        raise CredentialError("A JSON web token could not be decoded") from exc
    iat, exp, iss = claims.get("iat"), claims.get("exp"), claims.get("iss")
    if not isinstance(iat, int) or iat > now + leeway:
        raise CredentialError(
            "'Issued at' claim ('iat') must be an Integer representing the time that the "
            "assertion was issued"
        )
    if not isinstance(exp, int | float) or exp <= now - leeway:
        raise CredentialError(
            "'Expiration time' claim ('exp') must be a numeric value representing the future "
            "time at which the assertion expires"
        )
    if exp > now + MAX_JWT_LIFETIME + leeway:
        raise CredentialError("'Expiration time' claim ('exp') is too far in the future")
    if str(iss) != str(app_id):
        raise CredentialError("'Issuer' claim ('iss') must be an Integer")


def issue_token(
    state: State, *, installation_id: int, ttl: float, now: float
) -> tuple[str, IssuedToken]:
    """Mint an installation token (GitHub's `ghs_` shape) valid for `ttl` seconds."""
    value = "ghs_" + "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(36))
    installation = state.installations[installation_id]
    issued = IssuedToken(installation_id, now + ttl, dict(installation.permissions))
    state.tokens[value] = issued
    return value, issued


def installation_token(state: State, value: str, *, now: float) -> IssuedToken:
    """Return the live token `value`, or raise CredentialError("Bad credentials")."""
    issued = state.tokens.get(value)
    if issued is None or issued.expires_at <= now:
        raise CredentialError("Bad credentials")
    return issued
