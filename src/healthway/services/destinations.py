"""Destinations: where data goes (webhook, MLLP, SFTP, FHIR server), per environment.

Credentials a sender must present are stored usable, because Healthway has to send them: the webhook signing
secret (generated here and returned once), an SFTP password or private key, a verification token, a FHIR server's
OAuth client secret or private key, an MLLP client certificate's key (``key_pem``). They live in
``Destination.config`` and are never returned by ``view`` or the API after creation.
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey
from sqlalchemy.orm import Session

from healthway.domain.actors import DELIVERY, Actor
from healthway.domain.audit import AuditAction
from healthway.domain.outbound import OutboundPolicy
from healthway.domain.permissions import Permission
from healthway.domain.routing import DestinationKind
from healthway.errors import InvalidRequest
from healthway.net.tls_material import MAX_PEM, TlsMaterialError, tls_context
from healthway.services import audit, authz, callers, deliveries
from healthway.services.paging import EnvironmentScope, Page, View
from healthway.storage.models import Destination, Environment

SECRET_FIELDS = frozenset(
    {"signing_secret", "password", "private_key", "verification_token", "client_secret", "key_pem"}
)
_FINGERPRINT = re.compile(r"^(SHA256:)?[A-Za-z0-9+/]{43}=?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def new_signing_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 256 random bits."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def _text(
    config: Mapping[str, Any], key: str, *, required: bool = True, max_length: int = 2000, multiline: bool = False
) -> str | None:
    """A text field. Control characters are refused unless ``multiline`` (PEM text): a value that ends up in a
    header, a form field, a URL or a file name must not be able to add lines to it (issue 14 item 20)."""
    value = config.get(key)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"{key} is required for this destination kind")
        return None
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidRequest(f"{key} must be text of at most {max_length} characters")
    if _CONTROL.search(value.replace("\r", "").replace("\n", "") if multiline else value):
        raise InvalidRequest(f"{key} must not contain control characters")
    return value


def _url(config: Mapping[str, Any], policy: OutboundPolicy, key: str = "url") -> str:
    url = _text(config, key)
    assert url is not None
    return policy.check_url(url, key)


def _host_port(config: Mapping[str, Any], policy: OutboundPolicy) -> dict[str, Any]:
    host = _text(config, "host", max_length=255)
    assert host is not None
    policy.check_host(host)
    port = config.get("port")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise InvalidRequest("port must be a number from 1 to 65535")
    return {"host": host, "port": port}


def _webhook(config: Mapping[str, Any], policy: OutboundPolicy) -> dict[str, Any]:
    token = _text(config, "verification_token", required=False, max_length=500)
    return {"url": _url(config, policy), "verification_token": token, "signing_secret": new_signing_secret()}


_TLS_FIELDS = ("ca_pem", "cert_pem", "key_pem")
_PATH_FIELDS = ("ca_file", "cert_file", "key_file")


def _mllp(config: Mapping[str, Any], policy: OutboundPolicy) -> dict[str, Any]:
    """``tls`` (bool) with optional ``ca_pem`` (verify the server against it instead of the system CAs) and
    ``cert_pem`` + ``key_pem`` (a client certificate and its unencrypted key), all PEM text given by value and
    checked now. The server never opens a path its caller names, so file paths are refused, and the error names
    no file."""
    if any(config.get(key) not in (None, "") for key in _PATH_FIELDS):
        raise InvalidRequest("TLS material is given by value (ca_pem, cert_pem, key_pem as PEM text), not as paths")
    tls = config.get("tls", False)
    if not isinstance(tls, bool):
        raise InvalidRequest("tls must be true or false")
    material = {key: _text(config, key, required=False, max_length=MAX_PEM, multiline=True) for key in _TLS_FIELDS}
    if any(material.values()) and not tls:
        raise InvalidRequest("ca_pem, cert_pem and key_pem are for TLS: set tls to true")
    if bool(material["cert_pem"]) != bool(material["key_pem"]):
        raise InvalidRequest("a client certificate needs both cert_pem and key_pem")
    if any(material.values()):
        try:
            tls_context(material["ca_pem"], material["cert_pem"], material["key_pem"])
        except TlsMaterialError as exc:
            raise InvalidRequest(str(exc)) from None  # names the field, never echoes its content
    return {**_host_port(config, policy), "tls": tls, **material}


def _sftp(config: Mapping[str, Any], policy: OutboundPolicy) -> dict[str, Any]:
    """``host_key_sha256`` pins the server's host key; without it the key met on first use is pinned (see
    ``pin_host_key``), and from then on a server presenting another key gets neither the password nor the file."""
    password = _text(config, "password", required=False, max_length=1000)
    private_key = _text(config, "private_key", required=False, max_length=20000, multiline=True)
    if not password and not private_key:
        raise InvalidRequest("an sftp destination needs a password or a private key")
    fingerprint = _text(config, "host_key_sha256", required=False, max_length=60)
    if fingerprint and not _FINGERPRINT.match(fingerprint):
        raise InvalidRequest("host_key_sha256 must be a SHA256 fingerprint as ssh-keygen -l prints it")
    return {
        **_host_port(config, policy),
        "username": _text(config, "username", max_length=100),
        "password": password,
        "private_key": private_key,
        "path": _text(config, "path", required=False, max_length=1000) or ".",
        "host_key_sha256": fingerprint,
    }


def _fhir(config: Mapping[str, Any], policy: OutboundPolicy) -> dict[str, Any]:
    return {"url": _url(config, policy)} | _fhir_oauth(config, policy)


def _fhir_oauth(config: Mapping[str, Any], policy: OutboundPolicy) -> dict[str, Any]:
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
        "token_url": _url(config, policy, "token_url"),
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
    pem = _text(config, "private_key", max_length=20000, multiline=True)
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
_CONFIGS: dict[str, Callable[[Mapping[str, Any], OutboundPolicy], dict[str, Any]]] = {
    DestinationKind.WEBHOOK: _webhook,
    DestinationKind.MLLP: _mllp,
    DestinationKind.SFTP: _sftp,
    DestinationKind.FHIR: _fhir,
}


def create(
    session: Session,
    *,
    actor: Actor,
    environment: Environment,
    name: str,
    kind: str,
    config: Mapping[str, Any],
    outbound: OutboundPolicy,
) -> tuple[Destination, str | None]:
    """(destination, the webhook signing secret in clear — shown once; None for other kinds). ``outbound`` is the
    operator's outbound-address policy: URLs and literal addresses it refuses are refused here (host names are
    checked again at every connection)."""
    authz.require_env(session, actor, Permission.DESTINATIONS_WRITE, environment)
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("destination name must be 1 to 200 characters")
    if kind not in _CONFIGS:
        raise InvalidRequest(f"kind must be one of: {', '.join(_CONFIGS)}")
    stored = {k: v for k, v in _CONFIGS[kind](config, outbound).items() if v is not None}
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


def visible(
    session: Session, *, actor: Actor, destination_id: str, permission: Permission
) -> tuple[Destination, Environment]:
    """The destination and its environment, if the actor holds ``permission`` there; else NotFound (or 403)."""
    return authz.visible(session, actor, permission, find(session, destination_id), "destination")


def list_page(
    session: Session, *, actor: Actor, scope: EnvironmentScope, cursor: str | None = None, limit: int = 100
) -> Page[View]:
    """Destinations of the scope's environments that the actor may read, oldest first."""
    envs, rows, next_cursor = callers.environment_rows(
        session,
        actor=actor,
        scope=scope,
        permission=Permission.DESTINATIONS_READ,
        query_for=in_environments,
        created_at=Destination.created_at,
        row_id=Destination.id,
        cursor=cursor,
        limit=limit,
    )
    return Page([view(d, envs[d.environment_id]) for d in rows], next_cursor)


def in_environments(environment_ids: Sequence[str]) -> sa.Select[Destination]:
    return sa.select(Destination).where(Destination.environment_id.in_(environment_ids))


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


def pin_host_key(session: Session, destination_id: str, fingerprint: str) -> str:
    """Trust on first use: an sftp destination without a host key fingerprint keeps the one its server presented
    first. The row is locked (FOR UPDATE; SQLite's single writer), so concurrent workers agree on one pin. Returns
    the pinned fingerprint (the one given, unless another was pinned first)."""
    destination = session.get(Destination, destination_id, with_for_update=True)
    if destination is None:  # deleted meanwhile: nothing to keep
        return fingerprint
    if pinned := destination.config.get("host_key_sha256"):
        return str(pinned)
    destination.config = {**destination.config, "host_key_sha256": fingerprint}
    environment = session.get(Environment, destination.environment_id)
    assert environment is not None
    audit.record(
        session,
        actor=DELIVERY,
        action=AuditAction.DESTINATION_UPDATE,
        organization_id=environment.organization_id,
        subject_type="destination",
        subject_id=destination.id,
        summary={"host_key_sha256": fingerprint, "pinned": "on first use"},
    )
    return fingerprint


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
