"""Accounts from the real command line and server: users, roles, tokens, login over HTTP, and `audit verify`."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Cli, Server


def _json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def _db_file(cli: Cli) -> Path:
    return Path(cli.env["HEALTHWAY_DATA_DIR"]) / "healthway.db"


def test_user_role_and_token_commands(cli: Cli) -> None:
    cli.invoke("init", "--admin-email", "admin@example.org")
    created = _json(cli.invoke("user", "create", "--email", "Dana@Example.org", "--org-role", "admin", "--json"))
    assert set(created) == {"email", "password"} and created["email"] == "dana@example.org"
    assert len(created["password"]) >= 20

    change = _json(
        cli.invoke(
            "user", "set-role", "--email", "dana@example.org", "--env", "production", "--role", "analyst", "--json"
        )
    )
    assert (change["role"], change["previous_role"]) == ("analyst", None)
    assert "logs:read_payload" in change["gained"]
    text = cli.invoke("user", "set-role", "--email", "dana@example.org", "--env", "production", "--role", "none").stdout
    assert "analyst -> none" in text and "logs:read_payload" in text

    listed = _json(cli.invoke("user", "list", "--json"))
    by_email = {u["email"]: u for u in listed["users"]}
    assert by_email["dana@example.org"]["org_role"] == "admin"
    assert by_email["dana@example.org"]["roles"] == {"development": None, "staging": None, "production": None}
    assert by_email["admin@example.org"]["roles"]["production"] == "admin"

    token = _json(cli.invoke("token", "create", "--email", "dana@example.org", "--name", "ci", "--json"))
    assert set(token) == {"token", "name"} and token["name"] == "ci"
    assert re.fullmatch(r"hwpat_[A-Za-z0-9_\-]{43}", token["token"])
    assert cli.invoke("token", "revoke", "--token", token["token"]).returncode == 0
    again = cli.invoke("token", "revoke", "--token", token["token"], check=False)
    assert again.returncode == 1 and again.stderr.strip() == "error: token not found"

    for secret in (created["password"], token["token"]):
        assert secret.encode() not in _db_file(cli).read_bytes()


def test_user_create_errors_are_one_line(cli: Cli) -> None:
    cli.invoke("init", "--admin-email", "admin@example.org")
    cli.invoke("user", "create", "--email", "x@example.org")
    for args, needle in [
        (["user", "create", "--email", "x@example.org"], "already a member"),
        (["user", "create", "--email", "not-an-email"], "e-mail"),
        (["user", "set-role", "--email", "ghost@example.org", "--env", "staging", "--role", "viewer"], "not found"),
        (["user", "set-role", "--email", "x@example.org", "--env", "prod", "--role", "viewer"], "unknown environment"),
        (["token", "create", "--email", "ghost@example.org", "--name", "n"], "no user"),
        (["token", "revoke"], "exactly one"),
    ]:
        result = cli.invoke(*args, check=False)
        assert result.returncode == 1, args
        assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert needle in result.stderr, (args, result.stderr)


def test_existing_user_joins_another_organization_without_a_new_password(cli: Cli) -> None:
    cli.invoke("init", "--admin-email", "admin@example.org")
    other = _json(cli.invoke("org", "create", "--name", "Lakeview", "--owner-email", "o@example.org", "--json"))
    joined = _json(
        cli.invoke("user", "create", "--email", "admin@example.org", "--org", other["organization_id"], "--json")
    )
    assert joined == {"email": "admin@example.org"}
    members = _json(cli.invoke("user", "list", "--org", other["organization_id"], "--json"))["users"]
    assert sorted(u["email"] for u in members) == ["admin@example.org", "o@example.org"]


def test_audit_verify_detects_a_modified_event(cli: Cli) -> None:
    cli.invoke("init", "--admin-email", "admin@example.org")
    cli.invoke("user", "create", "--email", "dana@example.org")
    cli.invoke("user", "set-role", "--email", "dana@example.org", "--env", "staging", "--role", "engineer")
    cli.invoke("token", "create", "--email", "dana@example.org", "--name", "ci")
    intact = cli.invoke("audit", "verify")
    assert intact.stdout.strip() == "audit chain intact: 4 events"
    with closing(sqlite3.connect(_db_file(cli))) as conn, conn:
        actors = conn.execute("SELECT id, actor_type, actor_id FROM audit_events ORDER BY id").fetchall()
        assert {(a[1], a[2]) for a in actors} == {("cli", "cli")}  # every CLI action is the operator's
        conn.execute(
            "UPDATE audit_events SET summary = ? WHERE action = 'role:assign'", (json.dumps({"role": "admin"}),)
        )
        broken_id = conn.execute("SELECT id FROM audit_events WHERE action = 'role:assign'").fetchone()[0]
    broken = cli.invoke("audit", "verify", check=False)
    assert broken.returncode == 1 and f"event {broken_id}" in broken.stderr


def test_login_over_http_then_manage_with_the_token(cli: Cli, server: Server) -> None:
    cli.invoke("init", "--admin-email", "admin@example.org")
    dana = _json(cli.invoke("user", "create", "--email", "dana@example.org", "--json"))
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        first = http.post("/platform/v1/tokens", auth=(dana["email"], dana["password"]))
        assert first.status_code == 403 and first.json()["error"]["code"] == "password_change_required"
        own = "dana's own long passphrase"
        changed = http.put(
            "/platform/v1/account/password", auth=(dana["email"], dana["password"]), json={"password": own}
        )
        assert changed.status_code == 204, changed.text
        login = http.post("/platform/v1/tokens", auth=(dana["email"], own), json={"name": "laptop"})
        assert login.status_code == 201, login.text
        token = login.json()["token"]
        me = http.get("/platform/v1/users/dana@example.org", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 403  # a member without users:read
        envs = http.get("/platform/v1/environments", headers={"Authorization": f"Bearer {token}"})
        assert [e["role"] for e in envs.json()["environments"]] == [None, None, None]
        cli.invoke("user", "set-role", "--email", "dana@example.org", "--env", "development", "--role", "engineer")
        source = http.post(
            "/platform/v1/sources",
            headers={"Authorization": f"Bearer {token}"},
            json={"environment": "development", "name": "EHR"},
        )
        assert source.status_code == 201
        wrong = http.post("/platform/v1/tokens", auth=(dana["email"], "not her password"))
        assert wrong.status_code == 401
    assert dana["password"] not in server.log and token not in server.log
    assert cli.invoke("audit", "verify").returncode == 0
