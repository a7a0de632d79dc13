"""Settings: CONTRACT's variables and defaults, .env parsing, and clear errors for bad values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bot.errors import ReleaseGuardError
from bot.secrets import PrivateKey, Secret
from bot.settings import (
    PostgresDatabase,
    Settings,
    SettingsError,
    SqliteDatabase,
    is_loopback,
    read_dotenv,
)


@pytest.fixture(scope="module")
def pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def parse(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_environment(env, cwd=tmp_path)


def test_defaults_follow_the_contract(tmp_path: Path) -> None:
    settings = parse(tmp_path)
    assert settings.app_id is None
    assert settings.private_key is None
    assert settings.webhook_secret is None
    assert settings.github_api_url == "https://api.github.com"
    assert settings.webhook_path == "/api/github/webhooks"
    assert (settings.host, settings.port) == ("0.0.0.0", 3000)
    assert settings.data_dir == tmp_path / "data"
    assert settings.database == SqliteDatabase(tmp_path / "data" / "release-guard.sqlite3")
    assert settings.artifact_store == (tmp_path / "data" / "retained").as_uri()
    assert settings.log_level == "info"
    assert settings.log_format is None  # text on a terminal, JSON otherwise


def test_every_variable_is_read(tmp_path: Path, pem: str) -> None:
    key_file = tmp_path / "app.pem"
    key_file.write_text(pem)
    settings = parse(
        tmp_path,
        APP_ID="12345",
        PRIVATE_KEY_PATH="app.pem",
        WEBHOOK_SECRET="s3cret-value",
        GITHUB_API_URL="https://ghes.example.com/api/v3/",
        WEBHOOK_PATH="/hooks",
        HOST="127.0.0.1",
        PORT="8080",
        DATA_DIR="/var/lib/rg",
        DATABASE_URL="sqlite:////var/lib/rg/jobs.db",
        ARTIFACT_STORE="s3://bucket/prefix/",
        LOG_LEVEL="DEBUG",
        LOG_FORMAT="json",
    )
    assert settings.app_id == 12345
    assert isinstance(settings.private_key, PrivateKey)
    assert settings.private_key.reveal() == pem.encode()
    assert settings.webhook_secret == Secret("s3cret-value")
    assert settings.github_api_url == "https://ghes.example.com/api/v3"
    assert settings.webhook_path == "/hooks"
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.data_dir == Path("/var/lib/rg")
    assert settings.database == SqliteDatabase(Path("/var/lib/rg/jobs.db"))
    assert settings.artifact_store == "s3://bucket/prefix"
    assert (settings.log_level, settings.log_format) == ("debug", "json")


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = parse(tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


def test_repr_shows_no_secret(tmp_path: Path, pem: str) -> None:
    settings = parse(
        tmp_path,
        PRIVATE_KEY=pem,
        WEBHOOK_SECRET="s3cret-value",
        DATABASE_URL="postgresql://rg:hunter22@db/rg",
    )
    text = repr(settings)
    assert "s3cret-value" not in text
    assert "hunter22" not in text
    assert "PRIVATE KEY" not in text


def test_inline_key_accepts_literal_backslash_n(tmp_path: Path, pem: str) -> None:
    one_line = pem.strip().replace("\n", "\\n")
    settings = parse(tmp_path, PRIVATE_KEY=one_line)
    assert settings.private_key is not None
    assert settings.private_key.reveal().strip() == pem.strip().encode()


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PORT=4000\nHOST=127.0.0.2\n")
    settings = parse(tmp_path, PORT="5000")
    assert (settings.host, settings.port) == ("127.0.0.2", 5000)


def test_empty_values_count_as_unset(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("WEBHOOK_SECRET=\nAPP_ID=\n")
    settings = parse(tmp_path, PORT="")
    assert settings.webhook_secret is None and settings.app_id is None
    assert settings.port == 3000


def test_dotenv_syntax(tmp_path: Path, pem: str) -> None:
    env = tmp_path / ".env"
    env.write_text(
        "# a comment\n"
        "\n"
        "export APP_ID=77\n"
        "WEBHOOK_SECRET='single # quoted'\n"
        'LOG_LEVEL="warn"  # trailing comment\n'
        "HOST=127.0.0.1 # comment after an unquoted value\n"
        'ESCAPED="a\\"b\\\\c\\td"\n'
        f'PRIVATE_KEY="{pem.strip()}"\n'
    )
    values = read_dotenv(env)
    assert values["APP_ID"] == "77"
    assert values["WEBHOOK_SECRET"] == "single # quoted"
    assert values["LOG_LEVEL"] == "warn"
    assert values["HOST"] == "127.0.0.1"
    assert values["ESCAPED"] == 'a"b\\c\td'
    assert values["PRIVATE_KEY"] == pem.strip()  # a double-quoted value may span lines
    settings = parse(tmp_path)
    assert settings.app_id == 77 and settings.private_key is not None
    assert settings.log_level == "warning"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("JUST_A_WORD\n", ":1: expected KEY=value"),
        ("1KEY=x\n", ":1: expected KEY=value"),
        ('KEY="never closed\n', "unterminated double-quoted"),
        ("KEY='never closed\n", "unterminated single-quoted"),
    ],
)
def test_dotenv_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / ".env").write_text(text)
    with pytest.raises(SettingsError, match=message):
        parse(tmp_path)


def test_missing_dotenv_is_fine(tmp_path: Path) -> None:
    assert read_dotenv(tmp_path / "absent.env") == {}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"APP_ID": "abc"}, "APP_ID must be the App's numeric id"),
        ({"APP_ID": "0"}, "APP_ID must be the App's numeric id"),
        ({"PORT": "70000"}, "PORT must be a port number"),
        ({"PORT": "http"}, "PORT must be a port number"),
        ({"GITHUB_API_URL": "api.github.com"}, "GITHUB_API_URL must be an http"),
        ({"GITHUB_API_URL": "https://x/api?y=1"}, "must not carry a query"),
        ({"WEBHOOK_PATH": "hooks"}, "WEBHOOK_PATH must be a path"),
        ({"WEBHOOK_PATH": "/healthz"}, "WEBHOOK_PATH must be a path"),
        ({"HOST": "bad host"}, "HOST must be"),
        ({"DATABASE_URL": "mysql://db/x"}, "DATABASE_URL must be sqlite"),
        ({"DATABASE_URL": "sqlite:///:memory:"}, "in-memory"),
        ({"DATABASE_URL": "postgresql://"}, "needs a host"),
        ({"ARTIFACT_STORE": "gs://bucket"}, "ARTIFACT_STORE must be"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be one of"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be json or text"),
        ({"PRIVATE_KEY": "not a key", "PRIVATE_KEY_PATH": "x.pem"}, "not both"),
        ({"PRIVATE_KEY": "not a key"}, "PRIVATE_KEY: not a PEM private key"),
        ({"PRIVATE_KEY_PATH": "missing.pem"}, "PRIVATE_KEY_PATH: cannot read"),
    ],
)
def test_bad_values_are_clear_errors(tmp_path: Path, env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        parse(tmp_path, **env)
    assert isinstance(caught.value, ReleaseGuardError)
    assert "not a key" not in str(caught.value)  # a bad key's text is never echoed


def test_a_non_rsa_key_file_is_refused(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ec.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(SettingsError, match=r"PRIVATE_KEY_PATH: .*RSA"):
        parse(tmp_path, PRIVATE_KEY_PATH=str(path))


def test_database_urls(tmp_path: Path) -> None:
    relative = parse(tmp_path, DATABASE_URL="sqlite:///state/rg.db").database
    assert relative == SqliteDatabase(tmp_path / "state" / "rg.db")
    postgres = parse(tmp_path, DATABASE_URL="postgresql://rg:pw-secret@db:5432/rg").database
    assert isinstance(postgres, PostgresDatabase)
    assert postgres.url.reveal() == "postgresql://rg:pw-secret@db:5432/rg"
    assert isinstance(parse(tmp_path, DATABASE_URL="postgres://db/rg").database, PostgresDatabase)


def test_data_dir_moves_the_embedded_defaults(tmp_path: Path) -> None:
    settings = parse(tmp_path, DATA_DIR="state")
    assert settings.database == SqliteDatabase(tmp_path / "state" / "release-guard.sqlite3")
    assert settings.artifact_store == (tmp_path / "state" / "retained").as_uri()
    file_store = parse(tmp_path, ARTIFACT_STORE="file:///srv/kept").artifact_store
    assert file_store == "file:///srv/kept"


@pytest.mark.parametrize(
    ("value", "level"), [("trace", "debug"), ("warn", "warning"), ("fatal", "critical")]
)
def test_probot_level_names_are_understood(tmp_path: Path, value: str, level: str) -> None:
    assert parse(tmp_path, LOG_LEVEL=value).log_level == level


def test_pretty_is_text(tmp_path: Path) -> None:
    assert parse(tmp_path, LOG_FORMAT="pretty").log_format == "text"


def test_serve_without_app_id_explains_registration(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        parse(tmp_path).require_app()
    message = str(caught.value)
    assert "https://github.com/settings/apps/new" in message
    assert "app.yml" in message and "PRIVATE_KEY_PATH" in message
    assert "/api/github/webhooks" in message


def test_app_id_without_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="private key"):
        parse(tmp_path, APP_ID="1").require_app()


def test_require_app_returns_id_and_key(tmp_path: Path, pem: str) -> None:
    app_id, key = parse(tmp_path, APP_ID="9", PRIVATE_KEY=pem).require_app()
    assert app_id == 9 and isinstance(key, PrivateKey)


def test_no_webhook_secret_only_for_a_local_demo(tmp_path: Path) -> None:
    settings = parse(tmp_path)
    with pytest.raises(SettingsError, match="--local-demo"):
        settings.require_webhook_secret(local_demo=False)
    assert settings.require_webhook_secret(local_demo=True) is None
    signed = parse(tmp_path, WEBHOOK_SECRET="abc123def")
    assert signed.require_webhook_secret(local_demo=True) == Secret("abc123def")


def test_secret_values_lists_what_logging_must_mask(tmp_path: Path, pem: str) -> None:
    settings = parse(
        tmp_path,
        WEBHOOK_SECRET="webhook-secret-1",
        PRIVATE_KEY=pem,
        DATABASE_URL="postgresql://rg:db-password-2@db/rg",
    )
    values = settings.secret_values()
    assert "webhook-secret-1" in values
    assert "db-password-2" in values
    assert pem.strip() in [v.strip() for v in values]


def test_for_data_dir_builds_test_settings(tmp_path: Path) -> None:
    settings = Settings.for_data_dir(tmp_path, port=0, webhook_secret=Secret("x" * 10))
    assert settings.database == SqliteDatabase(tmp_path / "release-guard.sqlite3")
    assert settings.port == 0 and settings.webhook_secret == Secret("x" * 10)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.1", False),
        ("example.com", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_aws_secrets_are_masked_in_logs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-test-only-value")
    settings = Settings.for_data_dir(tmp_path)
    assert "wJalrXUtnFEMI-test-only-value" in settings.secret_values()
