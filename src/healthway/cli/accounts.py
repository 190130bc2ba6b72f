"""``healthway user ...`` and ``healthway token ...``: accounts, roles and personal access tokens.

The CLI acts as the installation's operator (full rights); every change is audited with the actor ``cli``.
Named ``accounts`` because ``healthway.cli`` already binds ``users`` and ``tokens`` to the services.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.orm import Session

from healthway.cli import JsonFlag, OrgOption, app, database_session, emit, fail, parts, read_secret_file
from healthway.domain.actors import CLI
from healthway.domain.permissions import EnvRole, OrgRole
from healthway.errors import InvalidRequest, NotFound
from healthway.services import invitations, organizations, personal_tokens, users
from healthway.services.paging import every
from healthway.storage.models import User, utcnow

user_app = typer.Typer(help="Users and their roles.", no_args_is_help=True)
app.add_typer(user_app, name="user")

Email = Annotated[str, typer.Option("--email", help="The user's e-mail address.")]


class RoleChoice(StrEnum):
    """The environment roles plus ``none`` (no access), as one choice list for --role."""

    ADMIN = EnvRole.ADMIN.value
    ENGINEER = EnvRole.ENGINEER.value
    ANALYST = EnvRole.ANALYST.value
    VIEWER = EnvRole.VIEWER.value
    NONE = "none"


@user_app.command("create")
def user_create(
    ctx: typer.Context,
    email: Email,
    org_role: Annotated[OrgRole, typer.Option("--org-role", help="owner, admin or member")] = OrgRole.MEMBER,
    org: OrgOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Add a user to the organization; a new account gets a generated password, printed once."""
    with database_session() as session:
        organization = organizations.resolve(session, org)
        user, password = users.add_member(
            session,
            actor=CLI,
            organization=organization,
            email=email,
            passwords=parts(ctx).passwords,
            org_role=org_role,
        )
    result: dict[str, Any] = {"email": user.email}
    text = f"Added {user.email} as {org_role.value}"
    if password:
        result["password"] = password
        text += f"\n  Password: {password}   (shown once; it must be changed at first use)"
    else:
        text += " (existing account: their password is unchanged)"
    emit(result, as_json=as_json, text=text)


@user_app.command("remove")
def user_remove(email: Email, org: OrgOption = None, as_json: JsonFlag = False) -> None:
    """End a user's membership of the organization (their roles there go, their tokens for it are revoked)."""
    with database_session() as session:
        organization = organizations.resolve(session, org)
        if not invitations.withdraw(session, actor=CLI, organization=organization, email=email):
            users.remove_member(session, actor=CLI, organization=organization, email=email, now=utcnow())
    emit({"email": email.strip().lower(), "removed": True}, as_json=as_json, text=f"Removed {email}")


@user_app.command("set-password")
def user_set_password(
    ctx: typer.Context,
    email: Email,
    password_file: Annotated[
        Path | None,
        typer.Option("--password-file", help="File holding the new password; else one is generated (shown once)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Set a user's password. A generated one is printed once and must be changed at first use."""
    password = read_secret_file(password_file) if password_file else None
    with database_session() as session:
        user = users.find_by_email(session, email)
        if user is None:
            raise NotFound("no user with that e-mail")
        generated = users.set_password(session, actor=CLI, user=user, password=password, passwords=parts(ctx).passwords)
    result: dict[str, Any] = {"email": user.email}
    text = f"Password set for {user.email}"
    if generated:
        result |= {"password": generated, "must_change": True}
        text += f"\n  Password: {generated}   (shown once; it must be changed at first use)"
    emit(result, as_json=as_json, text=text)


@user_app.command("set-role")
def user_set_role(
    email: Email,
    env: Annotated[str, typer.Option("--env", help="development, staging or production")],
    role: Annotated[RoleChoice, typer.Option("--role", help="admin, engineer, analyst, viewer or none")],
    org: OrgOption = None,
    as_json: JsonFlag = False,
) -> None:
    """Give a user one role in one environment (``none`` removes their access to it)."""
    new_role = None if role is RoleChoice.NONE else EnvRole(role.value)
    with database_session() as session:
        environment = organizations.environment(session, organizations.resolve(session, org).id, env)
        change = users.set_env_role(session, actor=CLI, environment=environment, email=email, role=new_role)
        result = users.role_change_view(change)
    text = f"{change.user.email} in {environment.name}: {change.previous or 'none'} -> {role.value}"
    text += f"\n  gained: {', '.join(change.gained) or '-'}\n  lost:   {', '.join(change.lost) or '-'}"
    emit(result, as_json=as_json, text=text)


@user_app.command("list")
def user_list(org: OrgOption = None, as_json: JsonFlag = False) -> None:
    """Every member of the organization with their roles."""
    with database_session() as session:
        views = every(lambda cursor: users.list_page(session, actor=CLI, organization_id=org, cursor=cursor))
    lines = [
        f"{v['email']:<40} {v['org_role']:<7} " + " ".join(f"{env}={role or '-'}" for env, role in v["roles"].items())
        for v in views
    ]
    emit({"users": views}, as_json=as_json, text="\n".join(lines) or "no users")


token_app = typer.Typer(help="Personal access tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    email: Annotated[str, typer.Option("--email", help="Whose token it is; it acts with their roles.")],
    name: Annotated[str, typer.Option("--name", help="What the token is for.")],
    org: OrgOption = None,
    as_json: JsonFlag = False,
) -> None:
    """A new personal access token bound to one of the user's organizations, printed once."""
    with database_session() as session:
        user = users.find_by_email(session, email)
        if user is None:
            raise NotFound("no user with that e-mail")
        organization_id = _membership(session, user, org)
        row, token = personal_tokens.issue(session, actor=CLI, user=user, name=name, organization_id=organization_id)
    emit({"token": token, "name": row.name}, as_json=as_json, text=f"{token}   (personal access token, shown once)")


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str | None, typer.Option("--id", help="The token's ID.")] = None,
    token: Annotated[str | None, typer.Option("--token", help="The token itself.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Revoke a token at once (by ID, or by its value)."""
    if (token_id is None) == (token is None):
        fail("give exactly one of --id and --token")
    with database_session() as session:
        row = personal_tokens.find_for(session, actor=CLI, token_id=token_id, token=token)
        personal_tokens.revoke(session, actor=CLI, token=row, now=utcnow())
    emit({"id": row.id, "revoked": True}, as_json=as_json, text=f"Revoked token {row.name!r} ({row.id})")


def _membership(session: Session, user: User, org: str | None) -> str | None:
    """The organization a token is bound to: ``--org`` (one of the user's), else their only one."""
    memberships = users.organization_ids(session, user)
    if org is not None:
        if org not in memberships:
            raise NotFound("the user is not a member of that organization")
        return org
    if len(memberships) > 1:
        raise InvalidRequest("the user belongs to several organizations; name one with --org")
    return memberships[0] if memberships else None
