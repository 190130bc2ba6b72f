"""``healthway destination ...``"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from healthway.cli import JsonFlag, OrgOption, app, database_session, emit, fail, load_settings
from healthway.domain.actors import CLI
from healthway.domain.outbound import OutboundPolicy
from healthway.services import destinations, organizations
from healthway.services.paging import EnvironmentScope, every
from healthway.storage.models import utcnow

destination_app = typer.Typer(help="Destinations (where data goes).", no_args_is_help=True)
app.add_typer(destination_app, name="destination")

Text = Annotated[str | None, typer.Option()]


def _read(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text().rstrip("\r\n")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


def _pem(path: Path | None) -> str | None:
    """A PEM file's content: the CLI reads local files, the server stores what they hold (DESIGN §6)."""
    if path is None:
        return None
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {path}: {getattr(exc, 'strerror', None) or 'not a PEM text file'}")


@destination_app.command("create")
def destination_create(
    env: Annotated[str, typer.Option("--env", help="development, staging or production")],
    name: Annotated[str, typer.Option("--name")],
    kind: Annotated[str, typer.Option("--kind", help="webhook, mllp, sftp or fhir")],
    url: Annotated[str | None, typer.Option("--url", help="webhook or fhir: the URL")] = None,
    verification_token: Annotated[str | None, typer.Option("--verification-token", help="webhook")] = None,
    host: Annotated[str | None, typer.Option("--host", help="mllp or sftp")] = None,
    port: Annotated[int | None, typer.Option("--port", help="mllp or sftp")] = None,
    tls: Annotated[bool, typer.Option("--tls", help="mllp: connect with TLS")] = False,
    tls_ca_file: Annotated[
        Path | None, typer.Option("--tls-ca-file", help="mllp: PEM CA to verify the peer (default: system CAs)")
    ] = None,
    tls_cert_file: Annotated[
        Path | None, typer.Option("--tls-cert-file", help="mllp: PEM client certificate (with --tls-key-file)")
    ] = None,
    tls_key_file: Annotated[Path | None, typer.Option("--tls-key-file", help="mllp: its PEM private key")] = None,
    username: Annotated[str | None, typer.Option("--username", help="sftp")] = None,
    password_file: Annotated[Path | None, typer.Option("--password-file", help="sftp: file with the password")] = None,
    private_key_file: Annotated[
        Path | None, typer.Option("--private-key-file", help="sftp: OpenSSH key; fhir: PEM key for private_key_jwt")
    ] = None,
    path: Annotated[str | None, typer.Option("--path", help="sftp: remote directory")] = None,
    host_key_sha256: Annotated[
        str | None,
        typer.Option("--host-key-sha256", help="sftp (required): the server's key fingerprint (ssh-keygen -l format)"),
    ] = None,
    token_url: Annotated[str | None, typer.Option("--token-url", help="fhir: OAuth token endpoint")] = None,
    client_id: Annotated[str | None, typer.Option("--client-id", help="fhir: OAuth client ID")] = None,
    client_secret_file: Annotated[
        Path | None, typer.Option("--client-secret-file", help="fhir: file with the OAuth client secret")
    ] = None,
    token_auth_method: Annotated[
        str | None, typer.Option("--token-auth-method", help="fhir: client_secret_basic or client_secret_post")
    ] = None,
    alg: Annotated[str | None, typer.Option("--alg", help="fhir: private_key_jwt algorithm, RS384 or ES384")] = None,
    kid: Annotated[str | None, typer.Option("--kid", help="fhir: key ID the token endpoint knows the key by")] = None,
    scope: Annotated[str | None, typer.Option("--scope", help="fhir: OAuth scope, e.g. system/*.read")] = None,
    org: OrgOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A destination. A webhook's signing secret is printed once and never again; other credentials never."""
    config: dict[str, Any] = {
        "url": url,
        "verification_token": verification_token,
        "host": host,
        "port": port,
        "tls": tls,
        "ca_pem": _pem(tls_ca_file),
        "cert_pem": _pem(tls_cert_file),
        "key_pem": _pem(tls_key_file),
        "username": username,
        "password": _read(password_file),
        "private_key": _read(private_key_file),
        "path": path,
        "host_key_sha256": host_key_sha256,
        "token_url": token_url,
        "client_id": client_id,
        "client_secret": _read(client_secret_file),
        "token_auth_method": token_auth_method,
        "alg": alg,
        "kid": kid,
        "scope": scope,
    }
    with database_session() as session:
        environment = organizations.environment(session, organizations.resolve(session, org).id, env)
        destination, secret = destinations.create(
            session,
            actor=CLI,
            environment=environment,
            name=name,
            kind=kind,
            config=config,
            outbound=OutboundPolicy.from_settings(load_settings()),
        )
        result = destinations.view(destination, environment) | ({"signing_secret": secret} if secret else {})
    text = f"Created {kind} destination {name!r} ({destination.id}) in {environment.name}"
    if secret:
        text += f"\n  Signing secret: {secret}   (shown once)"
    emit(result, as_json=as_json, text=text)


@destination_app.command("list")
def destination_list(
    env: Annotated[str, typer.Option("--env", help="development, staging or production")],
    org: OrgOption = None,
    as_json: JsonFlag = False,
) -> None:
    """The destinations of one environment."""
    scope = EnvironmentScope(org, env)
    with database_session() as session:
        views = every(lambda cursor: destinations.list_page(session, actor=CLI, scope=scope, cursor=cursor))
    lines = [f"{v['id']}  {v['kind']:<7} {v['name']}" for v in views]
    emit({"destinations": views}, as_json=as_json, text="\n".join(lines) or "no destinations")


@destination_app.command("set")
def destination_set(
    destination_id: Annotated[str, typer.Argument(help="Destination ID")],
    enabled: Annotated[bool, typer.Option("--enabled/--disabled", help="Resume (queued deliveries at once) or pause")],
    as_json: JsonFlag = False,
) -> None:
    """Pause a destination (its deliveries wait) or resume it. A running server sees the change within a second."""
    with database_session() as session:
        found = destinations.find(session, destination_id)
        if found is None:
            fail(f"destination {destination_id[:64]!r} not found")
        destination, environment = found
        destinations.set_enabled(
            session, actor=CLI, destination=destination, environment=environment, enabled=enabled, now=utcnow()
        )
        result = destinations.view(destination, environment)
    emit(result, as_json=as_json, text=f"Destination {destination_id} is {'enabled' if enabled else 'paused'}")


@destination_app.command("delete")
def destination_delete(
    destination_id: Annotated[str, typer.Argument(help="Destination ID")], as_json: JsonFlag = False
) -> None:
    """Delete a destination with its subscriptions and delivery history (the logs themselves stay)."""
    with database_session() as session:
        found = destinations.find(session, destination_id)
        if found is None:
            fail(f"destination {destination_id[:64]!r} not found")
        destinations.delete(session, actor=CLI, destination=found[0], environment=found[1])
    emit({"id": destination_id, "deleted": True}, as_json=as_json, text=f"Deleted destination {destination_id}")
