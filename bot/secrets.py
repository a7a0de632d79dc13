"""Secret values that never show themselves: in logs, reprs, reports or exceptions.

`Secret` wraps a string (a webhook secret, an installation token); `PrivateKey` wraps the App's
PEM key. Both print as a short fingerprint so two values can be told apart in a log without
revealing either; the value itself comes out only through `reveal()`, which makes every use
easy to find in review.
"""

from __future__ import annotations

import hashlib
from typing import Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

_FINGERPRINT_CHARS: Final = 12


def fingerprint(data: bytes) -> str:
    """Return a short, non-reversible identifier of `data` (SHA-256, hex, truncated)."""
    return hashlib.sha256(data).hexdigest()[:_FINGERPRINT_CHARS]


class Secret:
    """A secret string: `str()` and `repr()` show a fingerprint, never the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        """Return the secret itself, for the one place that must use it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return self._value == other._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return f"Secret(sha256:{fingerprint(self._value.encode())})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not pickled")


class PrivateKey:
    """The App's RSA private key, validated on load; prints as its public key's fingerprint."""

    __slots__ = ("_fingerprint", "_pem")

    def __init__(self, pem: bytes) -> None:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                "not a PEM private key (expected the .pem file GitHub gives for the App)"
            ) from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the App's private key must be an RSA key (RS256)")
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self._pem = pem
        self._fingerprint = fingerprint(public)

    @classmethod
    def from_text(cls, text: str) -> PrivateKey:
        """Load a key given inline, as environment variables carry it (literal `\\n` accepted)."""
        return cls(text.strip().replace("\\n", "\n").encode())

    @property
    def public_fingerprint(self) -> str:
        return self._fingerprint

    def reveal(self) -> bytes:
        """Return the PEM bytes, for signing the App's JWT."""
        return self._pem

    def __repr__(self) -> str:
        return f"PrivateKey(public sha256:{self._fingerprint})"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a PrivateKey is not pickled")
