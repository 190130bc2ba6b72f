"""``healthway org ...``"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from healthway.cli import JsonFlag, OrgOption, app, database_session, emit, fail, parts
from healthway.domain.actors import CLI
from healthway.services import organizations

org_app = typer.Typer(help="Organizations.", no_args_is_help=True)
app.add_typer(org_app, name="org")


@org_app.command("create")
def org_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name")],
    owner_email: Annotated[str, typer.Option("--owner-email")],
    as_json: JsonFlag = False,
) -> None:
    """Another organization, with its owner (created when new, with a generated password)."""
    with database_session() as session:
        created = organizations.create(
            session, actor=CLI, name=name, owner_email=owner_email, passwords=parts(ctx).passwords
        )
    result: dict[str, Any] = {"organization_id": created.organization.id, "owner_email": created.owner_email}
    text = f"Created organization {name!r} ({created.organization.id}), owner {created.owner_email}"
    if created.owner_password:
        result["owner_password"] = created.owner_password
        text += f"\n  Password: {created.owner_password}   (shown once)"
    emit(result, as_json=as_json, text=text)


@org_app.command("list")
def org_list(as_json: JsonFlag = False) -> None:
    """Every organization of this installation (the ID is what --org takes)."""
    with database_session() as session:
        # The CLI acts for the installation, not as a member: no caller's role to show.
        views = [organizations.view(org, None) for org in organizations.all_organizations(session)]
    for view in views:
        del view["role"]
    lines = [f"{v['id']}  {v['name']}  (legacy keys {'allowed' if v['allow_legacy_keys'] else 'off'})" for v in views]
    emit({"organizations": views}, as_json=as_json, text="\n".join(lines) or "no organizations")


@org_app.command("set")
def org_set(
    org: OrgOption = None,
    allow_legacy_keys: Annotated[
        bool | None, typer.Option("--allow-legacy-keys/--no-allow-legacy-keys", help="Allow new legacy API keys.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Change organization settings."""
    if allow_legacy_keys is None:
        fail("nothing to set: give --allow-legacy-keys or --no-allow-legacy-keys")
    with database_session() as session:
        organization = organizations.resolve(session, org)
        organizations.set_allow_legacy_keys(session, actor=CLI, organization=organization, allow=allow_legacy_keys)
        result = {"organization_id": organization.id, "allow_legacy_keys": organization.allow_legacy_keys}
    emit(result, as_json=as_json, text=f"allow_legacy_keys = {str(allow_legacy_keys).lower()}")
