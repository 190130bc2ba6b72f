"""The ``healthway`` command line: parse, call one service, print. ``--json`` prints one JSON object."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from sqlalchemy.orm import Session

from healthway import logconfig
from healthway.domain.actors import CLI
from healthway.errors import ConfigurationError, HealthwayError
from healthway.services import organizations, tokens, users
from healthway.settings import Settings
from healthway.storage.db import Database

app = typer.Typer(
    name="healthway",
    help="Healthway health data exchange gateway.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Groups shared by several modules (each module adds its own commands to them).
key_app = typer.Typer(help="API keys: OAuth keys and legacy keys.", no_args_is_help=True)
app.add_typer(key_app, name="key")
logs_app = typer.Typer(help="The message log: list, show, replay.", no_args_is_help=True)
app.add_typer(logs_app, name="logs")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]
OrgOption = Annotated[str | None, typer.Option("--org", help="Organization ID (default: the only one).")]


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "HEALTHWAY_" + str(first["loc"][0]).upper() if first.get("loc") else "a setting"
        raise ConfigurationError(f"invalid {name}: {first['msg']}") from None


@contextmanager
def database_session() -> Iterator[Session]:
    """A migrated database and one unit of work for a CLI command."""
    settings = load_settings()
    logconfig.configure(settings.log_level if settings.log_level != "info" else "warning")
    db = Database(settings.resolved_database_url)
    try:
        db.migrate()
        with db.session() as session:
            yield session
    finally:
        db.dispose()


def emit(obj: dict[str, Any], *, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(obj) if as_json else text)


def fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


# -- serve / migrate / init ----------------------------------------------------------------------------------


@app.command()
def serve() -> None:
    """Migrate, then run HTTP, MLLP, SFTP and the delivery workers in one process until SIGTERM/SIGINT."""
    from healthway import server  # noqa: PLC0415 (uvicorn is only needed here)
    from healthway.app import build  # noqa: PLC0415

    settings = load_settings()
    logconfig.configure(settings.log_level)
    db = Database(settings.resolved_database_url)
    db.check_reachable()
    http_socket = server.bind(settings.host, settings.http_port, "HTTP")
    db.migrate()
    if not server.run(build(settings, db=db), http_socket):
        fail("the server did not start; see the log above")


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    with database_session():
        pass
    typer.echo("database is up to date")


@app.command()
def init(
    admin_email: Annotated[str, typer.Option("--admin-email", help="The first administrator's e-mail.")],
    org: Annotated[str, typer.Option("--org", help="Organization name.")] = "Healthway",
    admin_password_file: Annotated[
        Path | None, typer.Option("--admin-password-file", help="File holding the password; else one is generated.")
    ] = None,
    if_needed: Annotated[
        bool, typer.Option("--if-needed", help="Do nothing (exit 0) when already initialized.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """First run: the organization, its three environments, the admin user and a personal access token."""
    password = read_secret_file(admin_password_file) if admin_password_file else None
    with database_session() as session:
        if if_needed and organizations.is_initialized(session):
            typer.echo("already initialized; nothing to do", err=True)
            return
        created = organizations.initialize(
            session, actor=CLI, name=org, admin_email=admin_email, admin_password=password
        )
        owner = users.find_by_email(session, created.owner_email)
        assert owner is not None
        _, token = tokens.create(session, user=owner, name="initial", organization_id=created.organization.id)
        url = load_settings().public_url
    result: dict[str, Any] = {"organization_id": created.organization.id, "admin_email": created.owner_email}
    if created.owner_password:
        result["admin_password"] = created.owner_password
    result["personal_access_token"] = token
    lines = [f"Initialized organization {org!r} ({created.organization.id}).", f"  URL:      {url}/"]
    lines.append(f"  Admin:    {created.owner_email}")
    if created.owner_password:
        lines.append(f"  Password: {created.owner_password}   (shown once)")
    lines.append(f"  Token:    {token}   (personal access token, shown once)")
    emit(result, as_json=as_json, text="\n".join(lines))


def read_secret_file(path: Path) -> str:
    try:
        return path.read_text().rstrip("\r\n")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


def main() -> None:
    # Sub-command groups register themselves on import; importing here keeps `healthway.cli` import-light.
    from healthway.cli import (  # noqa: F401, PLC0415
        accounts,
        audit,
        destinations,
        keys,
        legacy_keys,
        logs,
        orgs,
        replay,
        sources,
        subscriptions,
    )

    try:
        app()
    except HealthwayError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
