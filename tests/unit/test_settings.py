from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from healthway.errors import ConfigurationError
from healthway.settings import MIB, Settings
from healthway.storage.db import parse_url


def test_defaults_follow_the_design(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    settings = Settings(_env_file=None)
    assert (settings.http_port, settings.mllp_port, settings.sftp_port) == (8080, 2575, 2222)
    assert settings.public_url == "http://127.0.0.1:8080"
    assert settings.token_url == "http://127.0.0.1:8080/v2/auth/token"
    assert settings.resolved_database_url == f"sqlite:///{tmp_path / 'healthway' / 'healthway.db'}"
    assert (settings.stream_max_bytes, settings.http_max_bytes) == (30 * MIB, 40 * MIB)
    assert settings.delivery_max_age == 86400
    assert settings.request_timeout == 30


def test_every_design_variable_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    values = {
        "DATABASE_URL": "postgresql://u@db/x",
        "DATA_DIR": str(tmp_path),
        "PUBLIC_URL": "https://hw.example.org/",
        "HTTP_PORT": "0",
        "MLLP_PORT": "3000",
        "SFTP_PORT": "0",
        "HOST": "0.0.0.0",
        "MAX_MESSAGE_BYTES": "1000",
        "REQUEST_TIMEOUT": "5",
        "DELIVERY_MAX_AGE": "2h",
        "REDIS_URL": "redis://127.0.0.1/0",
        "ALLOW_PRIVATE_JWKS_URLS": "1",
        "RATE_LIMIT_PER_ADDRESS": "none",
        "RATE_LIMIT_PER_SOURCE": "5/second",
    }
    for key, value in values.items():
        monkeypatch.setenv(f"HEALTHWAY_{key}", value)
    s = Settings(_env_file=None)
    assert s.resolved_database_url == "postgresql://u@db/x" and s.data_dir == tmp_path
    assert s.token_url == "https://hw.example.org/v2/auth/token"
    assert (s.http_port, s.mllp_port, s.sftp_port, s.host) == (0, 3000, 0, "0.0.0.0")
    assert s.stream_max_bytes == s.http_max_bytes == 1000
    assert (s.request_timeout, s.delivery_max_age) == (5, 7200)
    assert s.redis_url == "redis://127.0.0.1/0" and s.allow_private_jwks_urls
    assert (s.rate_limit_per_address, s.rate_limit_per_source) == ("none", "5/second")


def test_the_data_dir_does_not_depend_on_the_working_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    seen = set()
    for cwd in (tmp_path, tmp_path / "elsewhere"):
        cwd.mkdir(exist_ok=True)
        monkeypatch.chdir(cwd)
        seen.add(Settings(_env_file=None).resolved_database_url)
    assert seen == {f"sqlite:///{tmp_path / '.local' / 'share' / 'healthway' / 'healthway.db'}"}


@pytest.mark.parametrize(
    ("env", "public_url"),
    [
        ({"HTTP_PORT": "8099"}, "http://127.0.0.1:8099"),
        ({"HOST": "0.0.0.0", "HTTP_PORT": "9000"}, "http://127.0.0.1:9000"),
        ({"HOST": "::1"}, "http://[::1]:8080"),
        (
            {"HOST": "hw.example.org", "TLS_CERT": "/c.pem", "TLS_KEY": "/k.pem", "HTTP_PORT": "8443"},
            "https://hw.example.org:8443",
        ),
        ({"HTTP_PORT": "8099", "PUBLIC_URL": "https://hw.example.org"}, "https://hw.example.org"),
    ],
)
def test_an_unset_public_url_follows_the_bound_host_and_port(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], public_url: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(f"HEALTHWAY_{key}", value)
    settings = Settings(_env_file=None)
    assert settings.public_url == public_url
    assert settings.token_url == f"{public_url}/v2/auth/token"


def test_dotenv_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HEALTHWAY_HTTP_PORT=9999\n")
    monkeypatch.chdir(tmp_path)
    assert Settings().http_port == 9999


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEALTHWAY_HTTP_PORT", "70000")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)


@pytest.mark.parametrize(
    ("raw", "driver"),
    [
        ("sqlite:////tmp/x.db", "sqlite+pysqlite"),
        ("postgresql://u@h/d", "postgresql+psycopg"),
        ("postgres://u@h/d", "postgresql+psycopg"),
    ],
)
def test_database_urls_pick_our_drivers(raw: str, driver: str) -> None:
    assert parse_url(raw).drivername == driver


@pytest.mark.parametrize("raw", ["mysql://u@h/d", "oracle://x", "not a url"])
def test_unknown_database_schemes_are_configuration_errors(raw: str) -> None:
    with pytest.raises(ConfigurationError, match="HEALTHWAY_DATABASE_URL"):
        parse_url(raw)
