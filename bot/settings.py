"""Read the App's settings once, from the environment and a `.env` file, into a frozen object.

CONTRACT.md fixes the variables and their defaults. The environment wins over `.env`; an empty
value counts as unset (templates often carry `WEBHOOK_SECRET=`). Every bad value is reported
with the variable's name and what was expected, never with the value itself when it could be a
secret.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from bot.errors import ReleaseGuardError
from bot.secrets import PrivateKey, Secret

DEFAULT_API_URL: Final = "https://api.github.com"
DEFAULT_GITHUB_URL: Final = "https://github.com"
DEFAULT_WEBHOOK_PATH: Final = "/api/github/webhooks"
DEFAULT_HOST: Final = "0.0.0.0"
DEFAULT_PORT: Final = 3000
DEFAULT_DATA_DIR: Final = "data"
DATABASE_FILE: Final = "release-guard.sqlite3"
RETAINED_FOLDER: Final = "retained"

LogFormat = Literal["json", "text"]

# Probot's (pino's) level names are accepted too, so a Probot user's LOG_LEVEL keeps working.
_LEVELS: Final = {
    "trace": "debug",
    "debug": "debug",
    "info": "info",
    "warn": "warning",
    "warning": "warning",
    "error": "error",
    "fatal": "critical",
    "critical": "critical",
}
_FORMATS: Final[dict[str, LogFormat]] = {"json": "json", "text": "text", "pretty": "text"}

REGISTER_HELP: Final = """\
APP_ID is not set: release-guard needs a registered GitHub App.
  1. Register one at https://github.com/settings/apps/new (or under your organisation's
     settings), with the permissions and events listed in app.yml, the webhook URL
     https://<this host>{webhook_path} and a random webhook secret
     (for example: python -c "import secrets; print(secrets.token_hex(32))").
  2. Generate a private key on the App's page and download the .pem file.
  3. Put the values in the environment or in .env in the working directory:
       APP_ID=123456
       PRIVATE_KEY_PATH=/path/to/app.private-key.pem
       WEBHOOK_SECRET=<the same random secret>
  4. Install the App on the repositories to guard, then run `release-guard serve` again.
Or let the setup page do steps 1 to 3: run `release-guard serve` in the folder that holds
app.yml and open it in a browser.
README.md ("Run the GitHub App") walks through it."""


_AWS_SECRET_VARIABLES: Final = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


class SettingsError(ReleaseGuardError):
    """A setting is missing or has a value that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class SqliteDatabase:
    """The embedded database: one SQLite file (shared by processes on one machine)."""

    path: Path


@dataclass(frozen=True, slots=True)
class PostgresDatabase:
    """A PostgreSQL server for scale-out; the URL may hold a password, so it is a Secret."""

    url: Secret


Database = SqliteDatabase | PostgresDatabase


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the App reads from its environment, validated.

    Tests build it directly; `Settings.from_environment()` is the one place that reads
    `os.environ` and `.env`.
    """

    data_dir: Path
    database: Database
    artifact_store: str
    app_id: int | None = None
    private_key: PrivateKey | None = None
    webhook_secret: Secret | None = None
    github_api_url: str = DEFAULT_API_URL
    webhook_path: str = DEFAULT_WEBHOOK_PATH
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    log_level: str = "info"
    log_format: LogFormat | None = None  # None: text on a terminal, JSON otherwise
    # The web side of GitHub (the setup page sends the App manifest there): github.com, or
    # a GitHub Enterprise Server's URL, or a local test double.
    github_url: str = DEFAULT_GITHUB_URL
    # How GitHub and browsers reach this server (https://host[:port]); None: from each
    # request's Host and X-Forwarded-* headers.
    public_url: str | None = None

    @classmethod
    def for_data_dir(cls, data_dir: Path, **overrides: Any) -> Settings:
        """Return defaults whose database and artifact store live under `data_dir` (for tests)."""
        data_dir = data_dir.absolute()
        base = cls(
            data_dir=data_dir,
            database=SqliteDatabase(data_dir / DATABASE_FILE),
            artifact_store=(data_dir / RETAINED_FOLDER).as_uri(),
        )
        return replace(base, **overrides)

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, *, cwd: Path | None = None
    ) -> Settings:
        """Parse the settings from `environ` (default `os.environ`) over `cwd/.env`."""
        cwd = (cwd or Path.cwd()).absolute()
        merged = dict(read_dotenv(cwd / ".env"))
        merged.update(os.environ if environ is None else environ)
        values = {key: value for key, value in merged.items() if value != ""}
        return _parse(values, cwd)

    def secret_values(self) -> list[str]:
        """Return the secret strings that logging must mask should one slip into a message."""
        found: list[str] = []
        if self.webhook_secret:
            found.append(self.webhook_secret.reveal())
        if self.private_key is not None:
            found.append(self.private_key.reveal().decode("ascii", "replace"))
        if isinstance(self.database, PostgresDatabase):
            password = urlsplit(self.database.url.reveal()).password
            if password:
                found.append(password)
        # The artifact store's S3 credentials come from the standard AWS variables.
        for name in _AWS_SECRET_VARIABLES:
            value = os.environ.get(name)
            if value:
                found.append(value)
        return found

    def require_app(self) -> tuple[int, PrivateKey]:
        """Return the App id and key, or explain how to register the App."""
        if self.app_id is None:
            raise SettingsError(REGISTER_HELP.format(webhook_path=self.webhook_path))
        if self.private_key is None:
            raise SettingsError(
                "APP_ID is set but the App's private key is not: set PRIVATE_KEY_PATH to the "
                ".pem file generated on the App's settings page (or PRIVATE_KEY to its text)"
            )
        return self.app_id, self.private_key

    def require_webhook_secret(self, *, local_demo: bool) -> Secret | None:
        """Return the webhook secret; without one, only an explicit local demo may go on.

        Unsigned deliveries are accepted only then, and `serve` listens on loopback only.
        """
        if self.webhook_secret is not None:
            return self.webhook_secret
        if local_demo:
            return None
        raise SettingsError(
            "WEBHOOK_SECRET is not set: release-guard will not accept unsigned deliveries. "
            "Set it to the secret entered when the App was registered, or pass --local-demo to "
            "run a local demo that accepts unsigned deliveries on the loopback interface only"
        )


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a `.env` file: `KEY=value` lines, `export ` prefixes, comments, quoted values.

    Double-quoted values may span lines (Probot writes the PEM key that way) and understand
    `\\n`, `\\"` and `\\\\`; single-quoted values are literal; unquoted values end at ` #`.
    A missing file is an empty mapping.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: cannot read the .env file: {exc}") from exc
    values: dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        number = index + 1
        line = lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise SettingsError(f"{path}:{number}: expected KEY=value")
        rest = rest.strip()
        if rest.startswith('"'):
            body = rest[1:]
            while (end := _closing_quote(body)) < 0:
                if index >= len(lines):
                    raise SettingsError(f"{path}:{number}: unterminated double-quoted value")
                body += "\n" + lines[index]
                index += 1
            values[key] = _unescape(body[:end])
        elif rest.startswith("'"):
            end = rest.find("'", 1)
            if end < 0:
                raise SettingsError(f"{path}:{number}: unterminated single-quoted value")
            values[key] = rest[1:end]
        else:
            values[key] = rest.split(" #", 1)[0].rstrip()
    return values


def _closing_quote(body: str) -> int:
    """Return the index of the first unescaped `"` in `body`, or -1."""
    escaped = False
    for position, char in enumerate(body):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return position
    return -1


def _unescape(body: str) -> str:
    out: list[str] = []
    chars = iter(body)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        nxt = next(chars, "")
        out.append({"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(nxt, "\\" + nxt))
    return "".join(out)


def _parse(env: Mapping[str, str], cwd: Path) -> Settings:
    data_dir = _resolve(cwd, env.get("DATA_DIR", DEFAULT_DATA_DIR))
    return Settings(
        app_id=_app_id(env.get("APP_ID")),
        private_key=_private_key(env.get("PRIVATE_KEY"), env.get("PRIVATE_KEY_PATH"), cwd),
        webhook_secret=Secret(env["WEBHOOK_SECRET"]) if "WEBHOOK_SECRET" in env else None,
        github_api_url=_api_url(env.get("GITHUB_API_URL", DEFAULT_API_URL)),
        webhook_path=_webhook_path(env.get("WEBHOOK_PATH", DEFAULT_WEBHOOK_PATH)),
        host=_host(env.get("HOST", DEFAULT_HOST)),
        port=_port(env.get("PORT", str(DEFAULT_PORT)), "PORT"),
        data_dir=data_dir,
        database=_database(env.get("DATABASE_URL"), data_dir, cwd),
        artifact_store=_artifact_store(env.get("ARTIFACT_STORE"), data_dir, cwd),
        log_level=_log_level(env.get("LOG_LEVEL", "info")),
        log_format=_log_format(env.get("LOG_FORMAT")),
        github_url=_base_url(env.get("GITHUB_URL", DEFAULT_GITHUB_URL), "GITHUB_URL"),
        public_url=_base_url(env["PUBLIC_URL"], "PUBLIC_URL") if "PUBLIC_URL" in env else None,
    )


def _resolve(cwd: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else cwd / path


def _app_id(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit() or int(value) <= 0:
        raise SettingsError(
            f"APP_ID must be the App's numeric id (shown on its settings page), got {value!r}"
        )
    return int(value)


def _private_key(inline: str | None, path_value: str | None, cwd: Path) -> PrivateKey | None:
    if inline is not None and path_value is not None:
        raise SettingsError("set PRIVATE_KEY or PRIVATE_KEY_PATH, not both")
    if inline is not None:
        try:
            return PrivateKey.from_text(inline)
        except ValueError as exc:
            raise SettingsError(f"PRIVATE_KEY: {exc}") from None
    if path_value is None:
        return None
    path = _resolve(cwd, path_value)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"PRIVATE_KEY_PATH: cannot read {path}: {exc.strerror}") from None
    try:
        return PrivateKey(pem)
    except ValueError as exc:
        raise SettingsError(f"PRIVATE_KEY_PATH: {path}: {exc}") from None


def _api_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"GITHUB_API_URL must be an http(s) URL such as {DEFAULT_API_URL} "
            f"or https://ghes.example.com/api/v3, got {value!r}"
        )
    if parts.query or parts.fragment:
        raise SettingsError("GITHUB_API_URL must not carry a query or a fragment")
    return value.rstrip("/")


def _base_url(value: str, name: str) -> str:
    """Validate an http(s) base URL (no query, no fragment) and drop its trailing slash."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(
            f"{name} must be an http(s) URL such as https://example.com, got {value!r}"
        )
    if parts.query or parts.fragment:
        raise SettingsError(f"{name} must not carry a query or a fragment")
    return value.rstrip("/")


def _webhook_path(value: str) -> str:
    reserved = ("/healthz", "/readyz", "/metrics")
    if not value.startswith("/") or any(c in value for c in "?# ") or value in reserved:
        raise SettingsError(
            f"WEBHOOK_PATH must be a path starting with '/' (default {DEFAULT_WEBHOOK_PATH}), "
            f"got {value!r}"
        )
    return value


def _host(value: str) -> str:
    host = value.strip()
    if not host or any(c.isspace() for c in host):
        raise SettingsError(f"HOST must be an address or a host name, got {value!r}")
    return host


def _port(value: str, name: str) -> int:
    if not value.strip().isdigit() or not 0 <= int(value) <= 65535:
        raise SettingsError(f"{name} must be a port number from 0 to 65535, got {value!r}")
    return int(value)


def _database(value: str | None, data_dir: Path, cwd: Path) -> Database:
    if value is None:
        return SqliteDatabase(data_dir / DATABASE_FILE)
    if value.startswith("sqlite:///"):
        # SQLAlchemy's spelling: sqlite:///relative/to/cwd.db, sqlite:////absolute.db
        rest = value[len("sqlite:///") :]
        if not rest or "?" in rest or rest == ":memory:":
            raise SettingsError(
                "DATABASE_URL: sqlite:///PATH needs a file path (an in-memory database would "
                "lose the jobs it acknowledged)"
            )
        return SqliteDatabase(_resolve(cwd, rest))
    scheme = value.split(":", 1)[0]
    if scheme in ("postgresql", "postgres"):
        parts = urlsplit(value)
        if not parts.hostname and not parts.path.strip("/"):
            raise SettingsError("DATABASE_URL: a postgresql:// URL needs a host or a database")
        return PostgresDatabase(Secret(value))
    raise SettingsError(
        "DATABASE_URL must be sqlite:///PATH or postgresql://USER:PASSWORD@HOST/DB, "
        f"got a {scheme!r} URL"
    )


def _artifact_store(value: str | None, data_dir: Path, cwd: Path) -> str:
    if value is None:
        return (data_dir / RETAINED_FOLDER).as_uri()
    parts = urlsplit(value)
    if parts.scheme == "file" and parts.path and not parts.netloc:
        return _resolve(cwd, parts.path).as_uri()
    if parts.scheme == "s3" and parts.netloc:
        return value.rstrip("/")
    raise SettingsError(
        f"ARTIFACT_STORE must be file:///PATH or s3://BUCKET[/PREFIX], got {value!r}"
    )


def _log_level(value: str) -> str:
    level = _LEVELS.get(value.strip().lower())
    if level is None:
        raise SettingsError(f"LOG_LEVEL must be one of {', '.join(_LEVELS)}, got {value!r}")
    return level


def _log_format(value: str | None) -> LogFormat | None:
    if value is None:
        return None
    fmt = _FORMATS.get(value.strip().lower())
    if fmt is None:
        raise SettingsError(f"LOG_FORMAT must be json or text, got {value!r}")
    return fmt


def is_loopback(host: str) -> bool:
    """Tell whether `host` names only this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
