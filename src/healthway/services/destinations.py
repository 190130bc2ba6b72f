"""Destinations: where data goes (webhook, MLLP, SFTP, FHIR server), per environment.

Credentials a sender must present are stored usable, because Healthway has to send them: the webhook signing
secret (generated here and returned once), an SFTP password or private key, a verification token, a FHIR server's
OAuth client secret or private key. They live in ``Destination.config`` and are never returned by ``view`` or the API
after creation.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import ssl
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy.orm import Session

from healthway.domain.actors import Actor
from healthway.domain.audit import AuditAction
from healthway.domain.permissions import Permission
from healthway.domain.routing import DestinationKind
from healthway.errors import InvalidRequest
from healthway.services import audit, authz, deliveries
from healthway.storage.models import Destination, Environment

SECRET_FIELDS = frozenset({"signing_secret", "password", "private_key", "verification_token", "client_secret"})
_FINGERPRINT = re.compile(r"^(SHA256:)?[A-Za-z0-9+/]{43}=?$")


def new_signing_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 256 random bits."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _text(config: Mapping[str, Any], key: str, *, required: bool = True, max_length: int = 2000) -> str | None:
    value = config.get(key)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"{key} is required for this destination kind")
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidRequest(f"{key} must be text of at most {max_length} characters")
    return value


def _url(config: Mapping[str, Any], key: str = "url") -> str:
    url = _text(config, key)
    assert url is not None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"{key} must be an http:// or https:// URL")
    return url


def _host_port(config: Mapping[str, Any]) -> dict[str, Any]:
    host = _text(config, "host", max_length=255)
    port = config.get("port")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise InvalidRequest("port must be a number from 1 to 65535")
    return {"host": host, "port": port}


def _webhook(config: Mapping[str, Any]) -> dict[str, Any]:
    token = _text(config, "verification_token", required=False, max_length=500)
    return {"url": _url(config), "verification_token": token, "signing_secret": new_signing_secret()}


_TLS_FILES = ("ca_file", "cert_file", "key_file")


def _mllp(config: Mapping[str, Any]) -> dict[str, Any]:
    """``tls`` (bool) with optional ``ca_file`` (verify the server against it instead of the system CAs) and
    ``cert_file`` + ``key_file`` (a client certificate). The files are paths on the Healthway server, stored as
    absolute paths; they must be readable now. Their contents are never stored, shown or echoed."""
    tls = config.get("tls", False)
    if not isinstance(tls, bool):
        raise InvalidRequest("tls must be true or false")
    files = {key: _tls_file(config, key) for key in _TLS_FILES}
    if any(files.values()) and not tls:
        raise InvalidRequest("ca_file, cert_file and key_file are for TLS: set tls to true")
    if bool(files["cert_file"]) != bool(files["key_file"]):
        raise InvalidRequest("a client certificate needs both cert_file and key_file")
    _check_tls_files(files)
    return {**_host_port(config), "tls": tls, **files}


def _tls_file(config: Mapping[str, Any], key: str) -> str | None:
    path = _text(config, key, required=False, max_length=1000)
    if path is None:
        return None
    # abspath, not resolve(): a symlink such as certbot's live/ must stay a symlink so that renewals are picked up.
    path = os.path.abspath(path)
    if not os.path.isfile(path):  # checked first: opening a FIFO would block
        raise InvalidRequest(f"{key} {path} {'is not a file' if os.path.exists(path) else 'does not exist'}")
    try:
        with open(path, "rb") as file:
            file.read(1)
    except OSError as exc:
        raise InvalidRequest(f"{key} {path} cannot be read: {exc.strerror}") from None
    return path


def _check_tls_files(files: Mapping[str, str | None]) -> None:
    """Load the files as the MLLP sender will, so that a wrong file is refused now rather than at every retry.
    The messages name the files, never their contents."""
    if not any(files.values()):
        return
    try:
        context = ssl.create_default_context(cafile=files["ca_file"])
    except (ssl.SSLError, ValueError):
        raise InvalidRequest("ca_file holds no PEM CA certificate") from None
    if files["cert_file"]:
        try:
            context.load_cert_chain(files["cert_file"], files["key_file"], password=lambda: b"")
        except (ssl.SSLError, ValueError):
            raise InvalidRequest(
                "cert_file and key_file must be a PEM certificate and its matching unencrypted private key"
            ) from None


def _sftp(config: Mapping[str, Any]) -> dict[str, Any]:
    password = _text(config, "password", required=False, max_length=1000)
    private_key = _text(config, "private_key", required=False, max_length=20000)
    if not password and not private_key:
        raise InvalidRequest("an sftp destination needs a password or a private key")
    fingerprint = _text(config, "host_key_sha256", required=False, max_length=60)
    if fingerprint and not _FINGERPRINT.match(fingerprint):
        raise InvalidRequest("host_key_sha256 must be a SHA256 fingerprint as ssh-keygen -l prints it")
    return {
        **_host_port(config),
        "username": _text(config, "username", max_length=100),
        "password": password,
        "private_key": private_key,
        "path": _text(config, "path", required=False, max_length=1000) or ".",
        "host_key_sha256": fingerprint,
    }


def _fhir(config: Mapping[str, Any]) -> dict[str, Any]:
    return {"url": _url(config)} | _fhir_oauth(config)


def _fhir_oauth(config: Mapping[str, Any]) -> dict[str, Any]:
    """OAuth client_credentials for the FHIR server: token_url and client_id with exactly one of client_secret
    (client_secret_basic or client_secret_post) or private_key (private_key_jwt, SMART Backend Services)."""
    given = {k for k in ("token_url", "client_id", "client_secret", "private_key") if config.get(k) not in (None, "")}
    if not given:
        return {}
    if not {"token_url", "client_id"} <= given:
        raise InvalidRequest("a fhir destination's OAuth credentials need token_url and client_id")
    if ("client_secret" in given) == ("private_key" in given):
        raise InvalidRequest("a fhir destination with token_url needs exactly one of client_secret or private_key")
    stored = {
        "token_url": _url(config, "token_url"),
        "client_id": _text(config, "client_id", max_length=500),
        "scope": _text(config, "scope", required=False, max_length=1000),
    }
    return stored | (_fhir_key(config) if "private_key" in given else _fhir_secret(config))


def _fhir_secret(config: Mapping[str, Any]) -> dict[str, Any]:
    method = _text(config, "token_auth_method", required=False, max_length=40) or "client_secret_basic"
    if method not in ("client_secret_basic", "client_secret_post"):
        raise InvalidRequest("token_auth_method must be client_secret_basic or client_secret_post with a client_secret")
    return {"client_secret": _text(config, "client_secret", max_length=1000), "token_auth_method": method}


_FHIR_KEYS: dict[str, tuple[type[RSAKey] | type[ECKey], str]] = {
    "RS384": (RSAKey, "an RSA private key"),
    "ES384": (ECKey, "an EC P-384 private key"),
}


def _fhir_key(config: Mapping[str, Any]) -> dict[str, Any]:
    alg = _text(config, "alg", required=False, max_length=10) or "RS384"
    if alg not in _FHIR_KEYS:
        raise InvalidRequest("alg must be RS384 or ES384")
    if _text(config, "token_auth_method", required=False, max_length=40) not in (None, "private_key_jwt"):
        raise InvalidRequest("token_auth_method must be private_key_jwt with a private_key")
    pem = _text(config, "private_key", max_length=20000)
    key_class, wanted = _FHIR_KEYS[alg]
    try:
        key = key_class.import_key(str(pem))
    except (ValueError, TypeError, JoseError):
        key = None
    if key is None or not key.is_private or (isinstance(key, ECKey) and key.curve_name != "P-384"):
        raise InvalidRequest(f"private_key must be {wanted} in PEM form for {alg}")  # never echo the key
    kid = _text(config, "kid", required=False, max_length=200)
    return {"private_key": pem, "token_auth_method": "private_key_jwt", "alg": alg, "kid": kid}


# One validator per kind; each returns the config to store (unknown keys dropped).
_CONFIGS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    DestinationKind.WEBHOOK: _webhook,
    DestinationKind.MLLP: _mllp,
    DestinationKind.SFTP: _sftp,
    DestinationKind.FHIR: _fhir,
}


def create(
    session: Session, *, actor: Actor, environment: Environment, name: str, kind: str, config: Mapping[str, Any]
) -> tuple[Destination, str | None]:
    """(destination, the webhook signing secret in clear — shown once; None for other kinds)."""
    authz.require_env(session, actor, Permission.DESTINATIONS_WRITE, environment)
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("destination name must be 1 to 200 characters")
    if kind not in _CONFIGS:
        raise InvalidRequest(f"kind must be one of: {', '.join(_CONFIGS)}")
    stored = {k: v for k, v in _CONFIGS[kind](config).items() if v is not None}
    destination = Destination(environment_id=environment.id, name=name, kind=kind, config=stored)
    session.add(destination)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action=AuditAction.DESTINATION_CREATE,
        organization_id=environment.organization_id,
        subject_type="destination",
        subject_id=destination.id,
        summary={"name": name, "kind": kind, "environment": environment.name},
    )
    return destination, stored.get("signing_secret")


def find(session: Session, destination_id: str) -> tuple[Destination, Environment] | None:
    row = session.execute(
        sa.select(Destination, Environment).join(Environment).where(Destination.id == destination_id)
    ).first()
    return (row[0], row[1]) if row else None


def in_environment(environment: Environment) -> sa.Select[Destination]:
    return sa.select(Destination).where(Destination.environment_id == environment.id)


def delete(session: Session, *, actor: Actor, destination: Destination, environment: Environment) -> None:
    """Deletes its subscriptions and delivery history with it (foreign keys cascade)."""
    authz.require_env(session, actor, Permission.DESTINATIONS_WRITE, environment)
    session.delete(destination)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.DESTINATION_DELETE,
        organization_id=environment.organization_id,
        subject_type="destination",
        subject_id=destination.id,
        summary={"name": destination.name, "kind": destination.kind},
    )


def set_enabled(
    session: Session, *, actor: Actor, destination: Destination, environment: Environment, enabled: bool, now: datetime
) -> None:
    """A disabled destination gets no new deliveries and its queued ones wait (retried on the usual schedule);
    switching it back on makes them due at once. The caller wakes the workers after the commit."""
    authz.require_env(session, actor, Permission.DESTINATIONS_WRITE, environment)
    destination.enabled = enabled
    if enabled:
        deliveries.resume(session, destination.id, now=now)
    audit.record(
        session,
        actor=actor,
        action=AuditAction.DESTINATION_UPDATE,
        organization_id=environment.organization_id,
        subject_type="destination",
        subject_id=destination.id,
        summary={"enabled": enabled},
    )


def view(destination: Destination, environment: Environment) -> dict[str, Any]:
    """The wire shape, without any credential (``has_*`` flags say which are set)."""
    config = {k: v for k, v in destination.config.items() if k not in SECRET_FIELDS}
    config |= {f"has_{k}": True for k in SECRET_FIELDS if destination.config.get(k)}
    return {
        "id": destination.id,
        "name": destination.name,
        "kind": destination.kind,
        "environment": environment.name,
        "enabled": destination.enabled,
        "config": config,
        "created_at": destination.created_at.isoformat(),
    }
