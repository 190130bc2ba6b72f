"""``healthway source ...``"""

from __future__ import annotations

from typing import Annotated

import typer

from healthway.cli import EnvFilter, JsonFlag, OrgOption, app, database_session, emit
from healthway.domain.actors import CLI
from healthway.services import organizations, sources
from healthway.services.paging import EnvironmentScope, every

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
        result = sources.view(source, environment)
    emit(result, as_json=as_json, text=f"Created source {source.name!r} ({source.id}) in {environment.name}")


@source_app.command("list")
def source_list(env: EnvFilter = None, org: OrgOption = None, as_json: JsonFlag = False) -> None:
    """Sources, of one environment or of all three."""
    scope = EnvironmentScope(org, env)
    with database_session() as session:
        views = every(lambda cursor: sources.list_page(session, actor=CLI, scope=scope, cursor=cursor))
    lines = [f"{v['id']}  {v['environment']:<11}  {v['name']}" for v in views]
    emit({"sources": views}, as_json=as_json, text="\n".join(lines) or "no sources")
