"""``healthway source ...``"""

from __future__ import annotations

from typing import Annotated

import typer

from healthway.cli import JsonFlag, OrgOption, app, database_session, emit
from healthway.domain.actors import CLI
from healthway.services import organizations, sources
from healthway.transports.views import source_view

source_app = typer.Typer(help="Sources (sending systems).", no_args_is_help=True)
app.add_typer(source_app, name="source")


@source_app.command("create")
def source_create(
    env: Annotated[str, typer.Option("--env", help="development, staging or production")],
    name: Annotated[str, typer.Option("--name")],
    org: OrgOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A sending system in one environment."""
    with database_session() as session:
        environment = organizations.environment(session, organizations.resolve(session, org).id, env)
        source = sources.create(session, actor=CLI, environment=environment, name=name)
        result = source_view(source, environment)
    emit(result, as_json=as_json, text=f"Created source {source.name!r} ({source.id}) in {environment.name}")
