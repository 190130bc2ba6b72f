"""The command line as a user runs it: JSON shapes of DESIGN §6, and one-line errors for bad input (most through
typer's in-process runner, a few through a real `healthway` process)."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from healthway.domain.passwords import Passwords
from healthway.storage.db import Database
from healthway.storage.models import User
from tests.e2e.conftest import Cli


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(result.stdout)
    return value


def _assert_one_line_error(result: object, *needles: str) -> None:
    assert result.returncode != 0  # type: ignore[attr-defined]
    err = result.stderr.strip()  # type: ignore[attr-defined]
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and err.startswith("error: ")
    for needle in needles:
        assert needle in err


def test_init_then_source_create_print_design_shapes(cli: Cli) -> None:
    init = _json(cli.run("init", "--org", "Northwind", "--admin-email", "admin@example.org", "--json"))
    assert set(init) == {"organization_id", "admin_email", "admin_password", "personal_access_token"}
    uuid.UUID(str(init["organization_id"]))
    assert init["admin_email"] == "admin@example.org"
    assert len(str(init["admin_password"])) >= 20
    assert re.fullmatch(r"hwpat_[A-Za-z0-9_\-]{43}", str(init["personal_access_token"]))
    source = _json(cli.run("source", "create", "--env", "development", "--name", "EHR", "--json"))
    assert set(source) == {"id", "name", "environment"}
    assert (source["name"], source["environment"]) == ("EHR", "development")
    uuid.UUID(str(source["id"]))
    db_file = Path(cli.env["HEALTHWAY_DATA_DIR"]) / "healthway.db"
    assert str(init["admin_password"]).encode() not in db_file.read_bytes()
    assert str(init["personal_access_token"]).encode() not in db_file.read_bytes()
    # A real process hashes with argon2's recommended parameters (only in-process tests pass cheap ones).
    db = Database(f"sqlite:///{db_file}")
    with db.read_session() as session:
        stored = session.scalars(sa.select(User.password_hash)).one()
    db.dispose()
    assert Passwords().verify(stored, str(init["admin_password"])) == (True, None)
    assert not PasswordHasher().check_needs_rehash(stored)


def test_init_with_password_file_prints_no_password(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("a long enough passphrase\n")
    init = _json(
        cli.invoke("init", "--admin-email", "a@example.org", "--admin-password-file", str(tmp_path / "pw"), "--json")
    )
    assert "admin_password" not in init


def test_init_refuses_weak_password_file(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("short")
    _assert_one_line_error(
        cli.invoke(
            "init", "--admin-email", "a@example.org", "--admin-password-file", str(tmp_path / "pw"), check=False
        ),
        "at least 12",
    )


def test_second_init_fails_and_changes_nothing(cli: Cli) -> None:
    first = _json(cli.invoke("init", "--admin-email", "a@example.org", "--json"))
    second = cli.invoke("init", "--admin-email", "b@example.org", "--json", check=False)
    _assert_one_line_error(second, "already initialized")
    assert second.stdout == ""
    again = cli.invoke("init", "--if-needed", "--admin-email", "b@example.org")
    assert again.returncode == 0 and again.stdout == ""
    org = _json(cli.invoke("org", "set", "--no-allow-legacy-keys", "--json"))
    assert org == {"organization_id": first["organization_id"], "allow_legacy_keys": False}


def test_org_create_and_org_selection(cli: Cli) -> None:
    cli.invoke("init", "--admin-email", "a@example.org")
    other = _json(cli.invoke("org", "create", "--name", "Lakeview Clinic", "--owner-email", "o@example.org", "--json"))
    assert set(other) == {"organization_id", "owner_email", "owner_password"}
    existing_owner = _json(cli.invoke("org", "create", "--name", "Third", "--owner-email", "a@example.org", "--json"))
    assert "owner_password" not in existing_owner  # the user already existed
    _assert_one_line_error(cli.invoke("source", "create", "--env", "staging", "--name", "X", check=False), "--org")
    source = _json(
        cli.invoke(
            "source", "create", "--env", "staging", "--name", "X", "--org", str(other["organization_id"]), "--json"
        )
    )
    assert source["environment"] == "staging"


def test_unknown_environment(cli: Cli) -> None:
    cli.invoke("init", "--admin-email", "a@example.org")
    _assert_one_line_error(
        cli.invoke("source", "create", "--env", "prod", "--name", "EHR", check=False), "unknown environment", "prod"
    )


def test_source_create_before_init(cli: Cli) -> None:
    _assert_one_line_error(cli.invoke("source", "create", "--env", "staging", "--name", "X", check=False), "init")


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("mysql://root@127.0.0.1/x", "unsupported database scheme 'mysql'"),
        ("postgresql://postgres@127.0.0.1:1/none", "cannot connect to PostgreSQL at 127.0.0.1:1"),
    ],
)
def test_bad_database_urls(cli: Cli, url: str, needle: str) -> None:
    for command in (["migrate"], ["init", "--admin-email", "a@example.org"], ["serve"]):
        _assert_one_line_error(cli.run(*command, check=False, HEALTHWAY_DATABASE_URL=url), needle)


def test_unwritable_data_dir(cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for command in (["migrate"], ["serve"]):
        _assert_one_line_error(
            cli.run(*command, check=False, HEALTHWAY_DATA_DIR=str(blocker / "data")), "data directory"
        )


def test_invalid_setting_is_named(cli: Cli) -> None:
    _assert_one_line_error(cli.invoke("migrate", check=False, HEALTHWAY_HTTP_PORT="eighty"), "HEALTHWAY_HTTP_PORT")


def test_org_set_needs_a_flag(cli: Cli) -> None:
    cli.invoke("init", "--admin-email", "a@example.org")
    _assert_one_line_error(cli.invoke("org", "set", check=False), "--allow-legacy-keys")
