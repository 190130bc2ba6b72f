"""A new integration engineer's first hour (issue 16): every place where one lost time, as that user meets it."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import Cli, free_port, start_server


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


def test_every_directory_finds_the_one_installation_and_nothing_else_creates_one(cli: Cli, tmp_path: Path) -> None:
    env = {k: v for k, v in cli.env.items() if k != "HEALTHWAY_DATA_DIR"} | {"XDG_DATA_HOME": str(tmp_path / "xdg")}
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    database = tmp_path / "xdg" / "healthway" / "healthway.db"

    before = Cli(env, there).invoke("source", "create", "--env", "development", "--name", "EHR", check=False)
    assert before.returncode == 1
    assert f"no Healthway installation at SQLite database {database}" in before.stderr
    assert "healthway init" in before.stderr and "HEALTHWAY_DATA_DIR" in before.stderr
    assert not (tmp_path / "xdg").exists()  # the command looked, and created nothing

    Cli(env, here).invoke("init", "--admin-email", "admin@example.org")
    made = _json(Cli(env, there).invoke("source", "create", "--env", "development", "--name", "EHR", "--json"))
    listed = _json(Cli(env, here).invoke("source", "list", "--json"))
    assert listed == {"sources": [made]} and database.is_file()
    assert list(here.iterdir()) == list(there.iterdir()) == []  # no second database in a working directory


def test_a_postgresql_url_without_a_schema_is_named_not_migrated(cli: Cli, postgres_url: str) -> None:
    fresh = postgres_url.rsplit("/", 1)[0] + "/postgres"  # the server's own database: reachable, no Healthway
    result = cli.invoke("source", "list", check=False, HEALTHWAY_DATABASE_URL=fresh)
    assert result.returncode == 1 and "no Healthway installation at PostgreSQL at" in result.stderr
    assert "/postgres." in result.stderr


def test_a_changed_port_changes_every_advertised_url(cli: Cli) -> None:
    port = cli.env["HEALTHWAY_HTTP_PORT"]
    assert port != "8080"
    text = cli.invoke("init", "--admin-email", "admin@example.org").stdout
    assert f"URL:      http://127.0.0.1:{port}/" in text
    server = start_server(cli)
    try:
        discovery = httpx.get(f"{server.base_url}/.well-known/smart-configuration").json()
    finally:
        server.stop()
    assert discovery["token_endpoint"] == f"http://127.0.0.1:{port}/v2/auth/token"


def test_the_kid_is_shown_without_json(cli: Cli) -> None:
    cli.invoke("init", "--admin-email", "admin@example.org")
    created = cli.invoke("key", "create-oauth", "--env", "staging", "--generate").stdout
    kid = _json(cli.invoke("key", "list", "--json"))["oauth_keys"][0]["kid"]
    assert f"kid:       {kid}" in created
    assert f"kid {kid}" in cli.invoke("key", "list").stdout


def test_the_commands_a_user_reaches_for_exist_with_json(cli: Cli) -> None:
    cli.invoke("init", "--org", "Northwind", "--admin-email", "admin@example.org")
    env = ["--env", "development"]
    source = _json(cli.invoke("source", "create", *env, "--name", "EHR", "--json"))
    assert _json(cli.invoke("source", "list", "--env", "staging", "--json")) == {"sources": []}
    assert _json(cli.invoke("source", "list", "--json")) == {"sources": [source]}

    legacy = _json(cli.invoke("key", "create-legacy", "--source", source["id"], "--json"))
    listed = _json(cli.invoke("key", "list-legacy", *env, "--json"))["legacy_keys"]
    assert [(k["api_key"], k["source_id"], k["last_used_at"]) for k in listed] == [
        (legacy["api_key"], source["id"], None)
    ]
    assert legacy["secret"] not in json.dumps(listed)

    destination = _json(
        cli.invoke(
            "destination",
            "create",
            *env,
            "--name",
            "Hook",
            "--kind",
            "webhook",
            "--url",
            "https://hook.example.org/in",
            "--json",
        )
    )
    subscription = _json(
        cli.invoke("subscription", "create", "--source", source["id"], "--destination", destination["id"], "--json")
    )
    assert _json(cli.invoke("subscription", "delete", subscription["id"], "--json")) == {
        "id": subscription["id"],
        "deleted": True,
    }
    assert _json(cli.invoke("subscription", "list", *env, "--json")) == {"subscriptions": []}
    assert _json(cli.invoke("destination", "delete", destination["id"], "--json"))["deleted"] is True
    assert _json(cli.invoke("destination", "list", *env, "--json")) == {"destinations": []}
    gone = cli.invoke("destination", "delete", destination["id"], check=False)
    assert gone.returncode == 1 and "not found" in gone.stderr

    orgs = _json(cli.invoke("org", "list", "--json"))["organizations"]
    assert [(o["name"], o["allow_legacy_keys"]) for o in orgs] == [("Northwind", True)]


def test_wrong_input_is_refused_naming_what_is_allowed(cli: Cli) -> None:
    cli.invoke("init", "--admin-email", "admin@example.org")
    weird = cli.invoke("logs", "list", "--status", "weird", check=False)
    assert (weird.returncode, weird.stdout) == (1, "")
    assert "status must be one of: received, delivered, failed" in weird.stderr

    no_material = cli.invoke("key", "create-oauth", "--env", "development", check=False)
    assert no_material.returncode == 1
    assert "give exactly one of --generate, --jwks-file or --jwks-url" in no_material.stderr
    help_text = " ".join(cli.invoke("key", "create-oauth", "--help").stdout.split())
    assert "With --generate: RS384 (default) or ES384" in help_text

    hook = ("destination", "create", "--env", "development", "--name", "H", "--kind", "webhook")
    spaced = cli.invoke(*hook, "--url", "https://hooks example.org/in", check=False)
    assert spaced.returncode == 1
    assert "url has an invalid host name (letters, digits, hyphens and dots)" in spaced.stderr


def test_the_printed_next_steps_deliver_a_first_message_and_logs_show_tells_what_happened(cli: Cli) -> None:
    """Quick start to first message: init's three next steps pasted into a shell as printed, then `logs show`
    of a message whose delivery keeps failing."""
    init = cli.run("init", "--admin-email", "admin@example.org").stdout
    steps = [line.strip() for line in init.splitlines() if line.startswith("     ")]
    assert len(steps) == 3, init
    cli.env |= {"HEALTHWAY_ALLOW_LOOPBACK_DESTINATIONS": "1", "HEALTHWAY_ALLOW_HTTP_DESTINATIONS": "1"}
    server = start_server(cli)
    try:
        for step in steps[:2]:
            subprocess.run(["bash", "-c", step], cwd=cli.cwd, env=cli.env, check=True, capture_output=True)
        source = _json(cli.invoke("source", "list", "--json"))["sources"][0]
        key = json.loads((cli.cwd / "healthway-key.json").read_text())
        assert key["kid"] and "private_key_pem" in key
        dead = f"http://127.0.0.1:{free_port()}/in"  # nobody listens: every attempt fails
        destination = _json(
            cli.invoke(
                "destination",
                "create",
                "--env",
                "development",
                "--name",
                "Down",
                "--kind",
                "webhook",
                "--url",
                dead,
                "--json",
            )
        )
        cli.invoke("subscription", "create", "--source", source["id"], "--destination", destination["id"])
        sent = subprocess.run(
            ["bash", "-c", steps[2]], cwd=cli.cwd, env=cli.env, capture_output=True, text=True, check=False
        )
        assert sent.returncode == 0, sent.stderr
        log_id = json.loads(sent.stdout)["Meta"]["Logs"][0]["ID"]
        shown = _wait_for_attempt(cli, log_id)
    finally:
        server.stop()
    assert shown.startswith(f"Log {log_id}  status: received (1 delivery(ies) pending, 1 of them retrying")
    assert f"to destination {destination['id']}: pending, next attempt " in shown
    assert re.search(r"#1 \S+  failed  cannot connect", shown), shown
    assert "data_model:   PatientAdmin" in shown and "None" not in shown and "message_type" not in shown
    assert shown.rstrip().endswith('"Sex":"Male"}}}')  # the payload, last


def _wait_for_attempt(cli: Cli, log_id: str) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        text = cli.invoke("logs", "show", log_id).stdout
        if "#1 " in text:
            return text
        time.sleep(0.2)
    raise AssertionError(f"no attempt recorded:\n{text}")
