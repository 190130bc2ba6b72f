"""The ``healthway`` command line: parse, call one service, print. ``--json`` prints one JSON object."""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from sqlalchemy.orm import Session

from healthway import logconfig
from healthway.domain.actors import CLI
from healthway.domain.passwords import Passwords
from healthway.errors import ConfigurationError, HealthwayError
from healthway.services import organizations, personal_tokens, users
from healthway.settings import Settings
from healthway.storage.db import Database, describe, parse_url, sqlite_file
from healthway.storage.models import Environment

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
EnvFilter = Annotated[str | None, typer.Option("--env", help="Only this environment (default: all three)")]


@dataclass(frozen=True)
class Parts:
    """The collaborators of one command beyond its database. A real run takes these defaults; a test invoking
    the app in-process passes its own as the root context's ``obj`` (``CliRunner().invoke(app, args, obj=...)``),
    e.g. ``testing.CHEAP_PASSWORDS``."""

    passwords: Passwords = field(default_factory=Passwords)


def parts(ctx: typer.Context) -> Parts:
    return ctx.obj if isinstance(ctx.obj, Parts) else Parts()


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        name = "HEALTHWAY_" + str(first["loc"][0]).upper() if first.get("loc") else "a setting"
        raise ConfigurationError(f"invalid {name}: {first['msg']}") from None


@contextmanager
def database_session(*, create: bool = False) -> Iterator[Session]:
    """A migrated database and one unit of work for a CLI command. Only ``init`` and ``migrate`` create the
    database; any other command refuses to run without one rather than start a second, empty installation."""
    settings = load_settings()
    logconfig.configure(settings.log_level if settings.log_level != "info" else "warning")
    url = settings.resolved_database_url
    path = sqlite_file(url)
    if not create and path is not None and not path.is_file():
        _no_database(describe(parse_url(url)))
    db = Database(url)
    try:
        if not create and not db.has_schema():
            _no_database(describe(db.url))
        db.migrate()
        with db.session() as session:
            yield session
    finally:
        db.dispose()


def _no_database(where: str) -> NoReturn:
    fail(
        f"no Healthway installation at {where}. Run `healthway init` to create one, or point at an existing one "
        "with HEALTHWAY_DATA_DIR (or HEALTHWAY_DATABASE_URL)"
    )


def environments(session: Session, org: str | None, env: str | None) -> list[Environment]:
    """``--env``, or all three environments of the organization (``--org``, or the only one)."""
    organization = organizations.resolve(session, org)
    if env:
        return [organizations.environment(session, organization.id, env)]
    return organizations.environments(session, organization.id)


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
    sockets = server.bind_all(settings)
    db.migrate()
    if not server.run(build(settings, db=db, sockets=sockets)):
        fail("the server did not start; see the log above")


@app.command()
def migrate() -> None:
    """Create or upgrade the database schema."""
    with database_session(create=True):
        pass
    typer.echo("database is up to date")


@app.command()
def init(
    ctx: typer.Context,
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
    with database_session(create=True) as session:
        if if_needed and organizations.is_initialized(session):
            typer.echo("already initialized; nothing to do", err=True)
            return
        created = organizations.initialize(
            session,
            actor=CLI,
            name=org,
            admin_email=admin_email,
            admin_password=password,
            passwords=parts(ctx).passwords,
        )
        owner = users.find_by_email(session, created.owner_email)
        assert owner is not None
        _, token = personal_tokens.create(session, user=owner, name="initial", organization_id=created.organization.id)
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
    emit(result, as_json=as_json, text="\n".join([*lines, "", next_steps(url)]))


def next_steps(url: str) -> str:
    """Three commands that take a new installation to its first message, runnable as printed (from any
    directory, while the server runs)."""
    healthway, python = shlex.quote(str(Path(sys.argv[0]).resolve())), shlex.quote(sys.executable)
    return "\n".join(
        [
            "Next steps, while the server runs (paste them as they are):",
            "  1. A source: the system that will send data",
            f"     {healthway} source create --env development --name 'My EHR'",
            "  2. An OAuth API key for it; the file holds the private key (shown once), keep it safe",
            f"     {healthway} key create-oauth --env development --generate --json > healthway-key.json",
            "  3. Get a token with the key and send a test message (healthway/examples/smart_client.py shows how)",
            f"     {python} -m healthway.examples.smart_client healthway-key.json --url {shlex.quote(url)}",
        ]
    )


def read_secret_file(path: Path) -> str:
    try:
        return path.read_text().rstrip("\r\n")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


def load_commands() -> typer.Typer:
    """The app with every sub-command group registered (they register themselves on import; importing them only
    here keeps ``import healthway.cli`` light)."""
    from healthway.cli import (  # noqa: F401, PLC0415
        accounts,
        audit,
        destinations,
        keys,
        legacy_keys,
        logs,
        mllp_peers,
        orgs,
        replay,
        sources,
        subscriptions,
    )

    return app


def main() -> None:
    # Everything Healthway writes (the database and its -wal/-shm, uploads, exports) holds PHI or secrets: private
    # to the user running it, whatever the shell's umask. The database file is also created 0600 explicitly.
    os.umask(0o077)
    try:
        load_commands()()
    except HealthwayError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
