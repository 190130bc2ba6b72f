"""``healthway key create-legacy`` and ``healthway key rotate-secret``."""

from __future__ import annotations

from typing import Annotated

import typer

from healthway.cli import JsonFlag, database_session, emit, fail, key_app
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
