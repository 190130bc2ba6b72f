"""Configuration: one frozen Settings object built from ``HEALTHWAY_*`` variables (or ``.env``).

Built once in the entry point and passed down; nothing here is read at import time.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MIB = 2**20
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: object) -> object:
    """Accept seconds (``86400``) or a number with a unit (``24h``, ``30m``, ``500ms``)."""
    if isinstance(value, str) and (match := _DURATION.match(value)):
        return float(match[1]) * _UNIT_SECONDS[match[2]]
    return value


def parse_networks(value: object) -> object:
    """A comma- or space-separated list of CIDRs (``10.0.0.0/8, 192.168.0.0/16``); an address alone is a /32 (/128)."""
    if isinstance(value, str):
        return tuple(ipaddress.ip_network(part, strict=False) for part in re.split(r"[\s,]+", value) if part)
    return value


def default_data_dir() -> Path:
    """The user's data directory (``$XDG_DATA_HOME/healthway``, else ``~/.local/share/healthway``): the same from
    any working directory, so that every command finds the installation that ``init`` made."""
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "healthway"


def _url_host(host: str) -> str:
    """How clients reach ``host``: a wildcard bind is reached on loopback here; IPv6 needs brackets in a URL."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 (naming the wildcard, not binding it)
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


Seconds = Annotated[float, BeforeValidator(parse_duration), Field(gt=0)]
Port = Annotated[int, Field(ge=0, le=65535)]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Networks = Annotated[tuple[Network, ...], NoDecode, BeforeValidator(parse_networks)]


class Settings(BaseSettings):
    """Every setting DESIGN §6 names; a port of 0 disables that listener."""

    model_config = SettingsConfigDict(env_prefix="HEALTHWAY_", env_file=".env", frozen=True, extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None  # default: sqlite:///<data dir>/healthway.db
    public_url: str = ""  # default: derived from the scheme, host and HTTP port (see _derive_public_url)
    host: str = "127.0.0.1"
    http_port: Port = 8080
    mllp_port: Port = 2575
    sftp_port: Port = 2222
    tls_cert: Path | None = None
    tls_key: Path | None = None
    mllp_tls_cert: Path | None = None
    mllp_tls_key: Path | None = None
    mllp_tls_client_ca: Path | None = None  # MLLP clients must present a certificate signed by this CA
    mllp_idle_timeout: Seconds = 600.0  # an MLLP connection with no bytes for this long is closed
    max_message_bytes: int | None = Field(default=None, gt=0)
    request_timeout: Seconds = 30.0
    delivery_max_age: Seconds = 24 * 3600.0
    redis_url: str | None = None
    allow_private_jwks_urls: bool = False
    allow_loopback_destinations: bool = False  # loopback and link-local destinations and token URLs
    allow_http_destinations: bool = False  # plain http:// webhook, FHIR and token URLs
    destination_deny_networks: Networks = ()  # no destination may reach these
    trusted_proxies: Networks = ()  # peers whose X-Forwarded-For / Forwarded headers are believed
    metrics_address: str | None = None  # host:port serving /metrics instead of the public port
    http_header_timeout: Seconds = 10.0  # a request's line and headers must arrive within this
    http_body_timeout: Seconds = 30.0  # longest stall between two body chunks while the body is being read
    http_max_connections: int = Field(default=1000, gt=0)  # beyond: 503
    http_max_large_uploads: int = Field(default=16, gt=0)  # data bodies over 1 MiB read at once; beyond: 503
    rate_limit_per_address: str = "10000/5 minutes"
    rate_limit_per_source: str = "10000/5 minutes"
    log_level: str = "info"

    @model_validator(mode="after")
    def _derive_public_url(self) -> Settings:
        """Unset, the public URL is where this server listens, so that a changed port changes the URL that
        discovery advertises and that client assertions must name."""
        if not self.public_url:
            scheme = "https" if self.tls_cert and self.tls_key else "http"
            object.__setattr__(self, "public_url", f"{scheme}://{_url_host(self.host)}:{self.http_port}")
        return self

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir.resolve() / 'healthway.db'}"

    @property
    def token_url(self) -> str:
        """The one audience client assertions must name; never derived from a request's Host header."""
        return f"{self.public_url.rstrip('/')}/v2/auth/token"

    @property
    def http_max_bytes(self) -> int:
        return self.max_message_bytes or 40 * MIB

    @property
    def stream_max_bytes(self) -> int:
        """MLLP and SFTP."""
        return self.max_message_bytes or 30 * MIB
