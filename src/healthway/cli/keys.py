"""``healthway key create-oauth``, ``healthway key list`` and ``healthway key delete`` (OAuth API keys)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from healthway.cli import EnvFilter, JsonFlag, OrgOption, database_session, emit, fail, key_app
from healthway.domain.actors import CLI
from healthway.services import oauth_keys, organizations, sources
from healthway.services.oauth_keys import KeyMaterial
from healthway.services.paging import EnvironmentScope, every
from healthway.storage.models import Environment

EnvOption = Annotated[str | None, typer.Option("--env", help="development, staging or production")]


def _environment(session: Session, env: str | None, source_ids: list[str], org: str | None) -> Environment:
    """--env, or the environment of the --source IDs (which must all be in it: the service checks)."""
    if env:
        return organizations.environment(session, organizations.resolve(session, org).id, env)
    if not source_ids:
        fail("give --env or --source")
    found = sources.find(session, source_ids[0])
    if found is None:
        fail(f"source {source_ids[0][:40]!r} not found")
    return found[1]


def _read_jwks(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    except ValueError:
        fail(f"{path} is not JSON")


@key_app.command("create-oauth")
def create_oauth(
    env: EnvOption = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", help="Limit the key to this source (repeatable).")
    ] = None,
    generate: Annotated[
        bool, typer.Option("--generate", help="Generate the key pair; the private key is shown once.")
    ] = False,
    jwks_file: Annotated[Path | None, typer.Option("--jwks-file", help="A JWK Set of public keys.")] = None,
    jwks_url: Annotated[str | None, typer.Option("--jwks-url", help="Where the JWK Set is published.")] = None,
    alg: Annotated[
        str | None,
        typer.Option(
            "--alg",
            help="With --generate: RS384 (default) or ES384. With --jwks-file or --jwks-url: also RS256, ES256, "
            "PS384 or EdDSA.",
        ),
    ] = None,
    name: Annotated[str, typer.Option("--name")] = "",
    scope: Annotated[list[str] | None, typer.Option("--scope", help="An allowed scope (repeatable).")] = None,
    org: OrgOption = None,
    as_json: JsonFlag = False,
) -> None:
    """An OAuth API key for an environment (or only some of its sources)."""
    if sum((generate, jwks_file is not None, jwks_url is not None)) != 1:
        fail("give exactly one of --generate, --jwks-file or --jwks-url")
    jwks = _read_jwks(jwks_file) if jwks_file else None
    material = KeyMaterial(generate=generate, jwks=jwks, jwks_url=jwks_url, alg=alg)
    with database_session() as session:
        environment = _environment(session, env, source or [], org)
        created = oauth_keys.create(
            session,
            actor=CLI,
            environment=environment,
            material=material,
            source_ids=source or [],
            name=name,
            allowed_scopes=scope,
        )
        result = oauth_keys.describe_new(created)
    text = (
        f"Created OAuth key {result['id']} in {result['environment']}\n  client_id: {result['client_id']}\n"
        f"  kid:       {result['kid']}   (the header of every client assertion names it)\n  alg:       {result['alg']}"
    )
    if "private_key_pem" in result:
        text += f"\n{result['private_key_pem']}(private key, shown once; Healthway keeps only the public key)"
    emit(result, as_json=as_json, text=text)


@key_app.command("list")
def list_keys(env: EnvFilter = None, org: OrgOption = None, as_json: JsonFlag = False) -> None:
    """OAuth keys, of one environment or of all three."""
    scope = EnvironmentScope(org, env)
    with database_session() as session:
        views = every(lambda cursor: oauth_keys.list_page(session, actor=CLI, scope=scope, cursor=cursor))
    lines = [
        f"{v['id']}  {v['environment']:<11}  {v['alg']:<6}  client_id {v['client_id']}  kid {v['kid']}  {v['name']}"
        + ("  (disabled: its sources were deleted)" if v["disabled"] else "")
        for v in views
    ]
    emit({"oauth_keys": views}, as_json=as_json, text="\n".join(lines) or "no OAuth keys")


@key_app.command("delete")
def delete_key(key_id: Annotated[str, typer.Argument(help="Key ID or client_id")], as_json: JsonFlag = False) -> None:
    """Delete an OAuth key; its access tokens stop working at once."""
    with database_session() as session:
        found = oauth_keys.find(session, key_id)
        if found is None:
            fail(f"OAuth key {key_id[:40]!r} not found")
        key, environment = found
        oauth_keys.delete(session, actor=CLI, key=key, environment=environment)
    emit({"id": key.id, "deleted": True}, as_json=as_json, text=f"Deleted OAuth key {key.id}")
