"""``healthway key create-legacy``, ``key list-legacy`` and ``key rotate-secret``."""

from __future__ import annotations

from typing import Annotated

import typer

from healthway.cli import EnvFilter, JsonFlag, OrgOption, database_session, emit, environments, fail, key_app
from healthway.domain.actors import CLI
from healthway.services import legacy_keys, sources
from healthway.storage.models import utcnow


@key_app.command("create-legacy")
def create_legacy(
    source: Annotated[str, typer.Option("--source", help="Source ID")], as_json: JsonFlag = False
) -> None:
    """A legacy API key (deprecated) for one source; the secret is shown once."""
    with database_session() as session:
        found = sources.find(session, source)
        if found is None:
            fail(f"source {source[:40]!r} not found")
        key, secret = legacy_keys.create(session, actor=CLI, source=found[0], environment=found[1])
    emit(
        {"api_key": key.api_key, "secret": secret},
        as_json=as_json,
        text=f"api_key: {key.api_key}\nsecret:  {secret}   (shown once)",
    )


@key_app.command("rotate-secret")
def rotate_secret(api_key: Annotated[str, typer.Option("--api-key")], as_json: JsonFlag = False) -> None:
    """A new secret for a legacy key; the old secret and every token issued under it stop working at once."""
    with database_session() as session:
        key = legacy_keys.find(session, api_key)
        if key is None:
            fail(f"legacy key {api_key[:40]!r} not found")
        secret = legacy_keys.rotate_secret(session, actor=CLI, key=key, now=utcnow())
    emit(
        {"api_key": api_key, "secret": secret},
        as_json=as_json,
        text=f"api_key: {api_key}\nsecret:  {secret}   (shown once)",
    )


@key_app.command("list-legacy")
def list_legacy(env: EnvFilter = None, org: OrgOption = None, as_json: JsonFlag = False) -> None:
    """Sources that still hold a legacy key, and when each was last used: when ``last_used_at`` stops moving, the
    system has switched to OAuth and ``key rotate-secret`` can shut the legacy key off."""
    with database_session() as session:
        views = [
            legacy_keys.view(key, source) | {"environment": environment.name}
            for environment in environments(session, org, env)
            for source, key in legacy_keys.legacy_sources(session, actor=CLI, environment=environment)
        ]
    lines = [
        f"{v['api_key']}  {v['environment']:<11}  source {v['source_id']} ({v['source_name']})  "
        f"last used {v['last_used_at'] or 'never'}"
        for v in views
    ]
    emit({"legacy_keys": views}, as_json=as_json, text="\n".join(lines) or "no legacy keys")
