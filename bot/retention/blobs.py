"""The artifact store: content-addressed blobs in a folder or an S3 bucket, through obstore.

Why obstore (https://developmentseed.org/obstore), and not aiobotocore:

- One library, one code path for both backends. `ARTIFACT_STORE=file:///…` and
  `s3://bucket/prefix` are both an `obstore` store (Rust's `object_store` crate, the one
  Apache Arrow, DataFusion and Delta Lake use), and everything here — put, head, get,
  list, delete — is written once. aiobotocore speaks S3 only, so the folder backend would be a
  second, hand-written implementation that the S3 tests do not exercise.
- Atomic puts on both: a folder write goes to a staging file renamed into place, an S3
  write is a single PUT or a multipart upload that becomes visible only when it completes.
  An upload fed from an iterator that raises is aborted, which is how the digest is checked
  before anything becomes visible (`_verified_chunks`).
- It reads the standard `AWS_*` variables (access key, session token, region,
  `AWS_ENDPOINT_URL`, web identity and container credentials) and streams large files in
  parts without holding them in memory.
- It is typed (`py.typed`, checked by mypy --strict here), one wheel with no dependencies,
  and does not pin botocore, which `moto` (the tests' S3 server) also needs.
  aiobotocore's exact botocore pin and its separate stub packages cost more than they give
  here: this store needs six operations, not the AWS API.

What it does not do: AWS profiles and SSO (`AWS_PROFILE`) are not read; use access keys,
a web identity (EKS, GitHub OIDC) or instance/container credentials.

Layout: `<root>/sha256/<first two hex digits>/<64 hex digits>`. A blob's name is its digest,
so identical bytes are stored once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final, cast
from urllib.parse import unquote, urlsplit

import obstore
from obstore.store import LocalStore, S3Store

from bot.errors import ReleaseGuardError
from bot.settings import SettingsError

if TYPE_CHECKING:
    from obstore.store import ClientConfig, ObjectStore, RetryConfig, S3Config

log = logging.getLogger(__name__)

CHUNK: Final = 8 * 1024 * 1024
"""Bytes read from the local file per step of an upload (and S3 multipart part size)."""
PARTIAL_GRACE: Final = 3600.0
"""Seconds before a staging file left by an interrupted write counts as abandoned."""

_DIGEST = re.compile(r"[0-9a-f]{64}")
_STAGING = re.compile(r"([0-9a-f]{64})#\d+")

# The standard AWS variables an S3 store reads, and obstore's name for each.
_S3_VARIABLES: Final = {
    "AWS_ACCESS_KEY_ID": "access_key_id",
    "AWS_SECRET_ACCESS_KEY": "secret_access_key",
    "AWS_SESSION_TOKEN": "session_token",
    "AWS_REGION": "region",
    "AWS_DEFAULT_REGION": "default_region",
    "AWS_ENDPOINT_URL": "endpoint",
    "AWS_ENDPOINT_URL_S3": "aws_endpoint_url_s3",
    "AWS_ROLE_ARN": "role_arn",
    "AWS_ROLE_SESSION_NAME": "role_session_name",
    "AWS_WEB_IDENTITY_TOKEN_FILE": "web_identity_token_file",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "container_credentials_relative_uri",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": "container_credentials_full_uri",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": "container_authorization_token_file",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "virtual_hosted_style_request",
    "AWS_SERVER_SIDE_ENCRYPTION": "server_side_encryption",
    "AWS_SSE_KMS_KEY_ID": "sse_kms_key_id",
}


class BlobStoreError(ReleaseGuardError):
    """The artifact store failed (unreachable, full, refused); the message says which blob."""


class DigestMismatch(BlobStoreError):
    """Bytes do not hash to the digest they are stored or claimed under (tampered, corrupt)."""


@dataclass(frozen=True, slots=True)
class BlobInfo:
    """A stored blob: its digest, size and when it was written (seconds since the epoch)."""

    digest: str
    size: int
    modified: float


def check_digest(digest: str) -> str:
    """Return `digest` if it is a SHA-256 in lowercase hex, else raise ValueError."""
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"not a SHA-256 hex digest: {digest!r}")
    return digest


def blob_key(digest: str) -> str:
    """The object key a digest is stored under, relative to the store's root."""
    check_digest(digest)
    return f"sha256/{digest[:2]}/{digest}"


def file_digest(path: Path) -> tuple[str, int]:
    """Return the SHA-256 (hex) and size of a file, read in chunks (blocking)."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _verified_chunks(path: Path, digest: str, size: int) -> Iterator[bytes]:
    """Yield a file's bytes for an upload, holding the last chunk back until they are checked.

    When the bytes read do not hash to `digest` (or their count is not `size`) the iterator
    raises DigestMismatch instead of yielding the last chunk, so the store aborts the upload
    and nothing appears under the digest. Runs in obstore's I/O thread, not the event loop.
    """
    hasher = hashlib.sha256()
    count = 0
    held: bytes | None = None
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            if held is not None:
                yield held
            hasher.update(chunk)
            count += len(chunk)
            held = chunk
    if count != size or hasher.hexdigest() != digest:
        raise DigestMismatch(
            f"{path.name}: the file hashes to sha256 {hasher.hexdigest()} ({count} bytes), "
            f"not to the {digest} ({size} bytes) it is being stored under"
        )
    yield held if held is not None else b""


def _short(exc: BaseException) -> str:
    """The first line of an error (obstore appends a multi-line debug dump)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class BlobStore:
    """Blobs named by their SHA-256 in one obstore store.

    Build it with `BlobStore.from_url(ARTIFACT_STORE)`. Every failure of the store is a
    BlobStoreError (a DigestMismatch when bytes do not match their digest); none is
    swallowed here: the Retainer decides what a failure means for a job.
    """

    def __init__(self, url: str, *, local_root: Path | None, s3: ObjectStore | None) -> None:
        self.url = url
        self._local_root = local_root
        self._store: ObjectStore | None = s3

    def __repr__(self) -> str:
        return f"BlobStore({self.url!r})"

    @classmethod
    def from_url(cls, url: str, environ: Mapping[str, str] | None = None) -> BlobStore:
        """Return the store that `url` names: `file:///path` or `s3://bucket[/prefix]`.

        `environ` (default `os.environ`) gives the `AWS_*` variables of an S3 store. Nothing
        is contacted here; a folder is created on first use.
        """
        parts = urlsplit(url)
        if parts.scheme == "file" and not parts.netloc and parts.path:
            return cls(url, local_root=Path(unquote(parts.path)), s3=None)
        if parts.scheme == "s3" and parts.netloc:
            environ = os.environ if environ is None else environ
            return cls(url.rstrip("/"), local_root=None, s3=_s3_store(url, environ))
        raise SettingsError(
            f"ARTIFACT_STORE must be file:///PATH or s3://BUCKET[/PREFIX], got {url!r}"
        )

    @property
    def is_local(self) -> bool:
        return self._local_root is not None

    def _objects(self) -> ObjectStore:
        if self._store is None:
            root = self._local_root
            if root is None:  # pragma: no cover - from_url sets one of the two
                raise BlobStoreError("the artifact store has no location")
            try:
                self._store = LocalStore(root, mkdir=True)
            except Exception as exc:  # obstore raises its own types and OSError
                raise BlobStoreError(f"{self.url}: cannot use the folder: {_short(exc)}") from exc
        return self._store

    async def stat(self, digest: str) -> BlobInfo | None:
        """Return a blob's size and time, or None when it is not stored."""
        key = blob_key(digest)
        try:
            meta = await obstore.head_async(self._objects(), key)
        except FileNotFoundError:
            return None
        except BlobStoreError:
            raise
        except Exception as exc:
            raise BlobStoreError(f"{self.url}: cannot look up {digest}: {_short(exc)}") from exc
        return BlobInfo(digest, int(meta["size"]), meta["last_modified"].timestamp())

    async def put_file(self, digest: str, path: Path, *, size: int) -> bool:
        """Store a file under its digest; return False when the blob was already there.

        The bytes are hashed while they are sent and the upload is aborted when they do not
        match `digest` and `size` (DigestMismatch): what appears under a digest is complete and
        verified. A local write is flushed to disk before this returns.
        """
        key = blob_key(digest)
        existing = await self.stat(digest)
        if existing is not None and existing.size == size:
            return False
        try:
            await obstore.put_async(
                self._objects(),
                key,
                _verified_chunks(path, digest, size),
                chunk_size=CHUNK,
                max_concurrency=4,
            )
        except BlobStoreError:
            raise
        except Exception as exc:
            raise BlobStoreError(f"{self.url}: cannot store {digest}: {_short(exc)}") from exc
        stored = await self.stat(digest)
        if stored is None or stored.size != size:
            raise BlobStoreError(
                f"{self.url}: {digest} is not there with {size} bytes right after it was written"
            )
        if self._local_root is not None:
            await asyncio.to_thread(_fsync, self._local_root / key)
        return True

    async def read(self, digest: str) -> AsyncIterator[bytes]:
        """Yield a blob's bytes as they arrive (BlobStoreError when it is missing)."""
        key = blob_key(digest)
        try:
            result = await obstore.get_async(self._objects(), key)
            async for chunk in result:
                yield bytes(chunk)
        except FileNotFoundError as exc:
            raise BlobStoreError(f"{self.url}: {digest} is not in the store") from exc
        except BlobStoreError:
            raise
        except Exception as exc:
            raise BlobStoreError(f"{self.url}: cannot read {digest}: {_short(exc)}") from exc

    async def delete(self, digest: str) -> None:
        """Delete a blob; a blob that is already gone is not an error."""
        key = blob_key(digest)
        try:
            await obstore.delete_async(self._objects(), key)
        except FileNotFoundError:
            return
        except BlobStoreError:
            raise
        except Exception as exc:
            raise BlobStoreError(f"{self.url}: cannot delete {digest}: {_short(exc)}") from exc

    async def list_blobs(self) -> list[BlobInfo]:
        """Return every blob in the store (objects under `sha256/` named by a digest)."""
        try:
            metas = await obstore.list(self._objects(), "sha256").collect_async()
        except BlobStoreError:
            raise
        except Exception as exc:
            raise BlobStoreError(f"{self.url}: cannot list the store: {_short(exc)}") from exc
        found = []
        for meta in metas:
            name = str(meta["path"]).rsplit("/", 1)[-1]
            if _DIGEST.fullmatch(name):
                found.append(BlobInfo(name, int(meta["size"]), meta["last_modified"].timestamp()))
        return found

    async def sweep_partial(self, *, older_than: float) -> list[str]:
        """Delete staging files that an interrupted folder write left; return their names.

        Only a folder store has them (`<digest>#<n>`, invisible to readers). An S3 upload
        that was interrupted is an incomplete multipart upload, invisible too; S3 removes
        those with a lifecycle rule (see the README).
        """
        if self._local_root is None:
            return []
        return await asyncio.to_thread(_sweep_staging, self._local_root / "sha256", older_than)


def _s3_store(url: str, environ: Mapping[str, str]) -> ObjectStore:
    values = {
        key: environ[name] for name, key in _S3_VARIABLES.items() if environ.get(name, "").strip()
    }
    endpoint = values.get("aws_endpoint_url_s3") or values.get("endpoint") or ""
    client: ClientConfig = {"connect_timeout": timedelta(seconds=5)}
    if endpoint.startswith("http://"):
        client["allow_http"] = True  # a local S3-compatible server (MinIO, moto) on plain HTTP
    retry: RetryConfig = {"max_retries": 3, "retry_timeout": timedelta(seconds=30)}
    try:
        return S3Store.from_url(
            url,
            config=cast("S3Config", values),
            client_options=client,
            retry_config=retry,
        )
    except Exception as exc:
        # The message names the setting, never its value (it could be a secret key).
        raise SettingsError(f"ARTIFACT_STORE {url}: cannot configure S3: {_short(exc)}") from exc


def _fsync(path: Path) -> None:
    """Flush a file and its folder to disk, so a power cut cannot undo a completed write."""
    for target, flags in ((path, os.O_RDONLY), (path.parent, os.O_RDONLY | os.O_DIRECTORY)):
        fd = os.open(target, flags)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _sweep_staging(root: Path, older_than: float) -> list[str]:
    removed: list[str] = []
    if not root.is_dir():
        return removed
    for folder in root.iterdir():
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if not _STAGING.fullmatch(entry.name):
                continue
            try:
                if entry.stat().st_mtime < older_than:
                    entry.unlink()
                    removed.append(entry.name)
            except FileNotFoundError:
                continue
    if removed:
        log.info("removed %d interrupted write(s) from the artifact store", len(removed))
    return removed
