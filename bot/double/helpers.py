"""Small things tests need beside the double: an App key pair, a sleep that only records.

Import these freely; import the fixtures only through `pytest_plugins`.
"""

from __future__ import annotations

import asyncio

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.secrets import PrivateKey


def make_keypair() -> tuple[PrivateKey, bytes]:
    """Return a fresh App key and its public PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return PrivateKey(pem), public


class SleepRecorder:
    """An injectable sleep: records each delay and only yields to the event loop."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)
