"""Issue 14, destinations, through real processes: a path to the SQLite database named in every TLS file field of
an MLLP destination must not make the running server open it (closing any descriptor of the database drops every
POSIX lock the server holds on it; the next CLI command then believes it is alone and deletes the live WAL)."""

from __future__ import annotations

import json
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.e2e.conftest import Cli, Server, start_server

BODY = b'{"Meta": {"DataModel": "PatientAdmin", "EventType": "NewPatient"}, "n": %d}'
REFUSED = "TLS material is given by value (ca_pem, cert_pem, key_pem as PEM text), not as paths"


def _world(cli: Cli) -> dict[str, str]:
    init = json.loads(cli.run("init", "--admin-email", "admin@example.org", "--json").stdout)
    source = json.loads(cli.run("source", "create", "--env", "development", "--name", "EHR", "--json").stdout)
    key = json.loads(cli.run("key", "create-legacy", "--source", source["id"], "--json").stdout)
    return {"pat": init["personal_access_token"], **key}


def _send(server: Server, key: dict[str, str], first: int, count: int) -> list[str]:
    auth = httpx.post(f"{server.base_url}/auth/authenticate", json={"apiKey": key["api_key"], "secret": key["secret"]})
    headers = {"Authorization": f"Bearer {auth.json()['accessToken']}", "Content-Type": "application/json"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as client:

        def send(n: int) -> str | None:
            response = client.post("/endpoint", content=BODY % n)
            return str(response.json()["Meta"]["Logs"][0]["ID"]) if response.status_code == 202 else None

        with ThreadPoolExecutor(8) as pool:
            return [log_id for log_id in pool.map(send, range(first, first + count)) if log_id]


def _name_the_database_in_every_file_field(server: Server, pat: str, database: Path) -> None:
    headers = {"Authorization": f"Bearer {pat}"}
    base = {"environment": "development", "name": "Lab", "kind": "mllp", "host": "lab.example.org", "port": 2575}
    answers = []
    for path in (database, Path(f"{database}-wal"), Path(f"{database}-shm"), database.parent / "no-such-file"):
        for field in ("ca_file", "cert_file", "key_file"):
            body = base | {"tls": True, field: str(path)}
            answers.append(httpx.post(f"{server.base_url}/platform/v1/destinations", json=body, headers=headers))
        every = base | {"tls": True, "ca_file": str(path), "cert_file": str(path), "key_file": str(path)}
        answers.append(httpx.post(f"{server.base_url}/platform/v1/destinations", json=every, headers=headers))
    # The same generic answer whether the file exists or not: nothing to learn about the server's files.
    assert {(a.status_code, a.json()["error"]["message"]) for a in answers} == {(400, REFUSED)}


def test_database_paths_in_tls_fields_are_refused_and_acknowledged_messages_survive_sigkill(cli: Cli) -> None:
    world = _world(cli)
    database = Path(cli.env["HEALTHWAY_DATA_DIR"]).resolve() / "healthway.db"
    server = start_server(cli)
    acknowledged = _send(server, world, 0, 25)
    _name_the_database_in_every_file_field(server, world["pat"], database)
    cli.run("logs", "list", "--limit", "5", "--json")  # a read-only command while the server runs
    acknowledged += _send(server, world, 25, 25)
    cli.run("destination", "list", "--env", "development", "--json")
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(10)
    assert len(acknowledged) == 50

    restarted = start_server(cli)
    try:
        listed = json.loads(cli.run("logs", "list", "--limit", "500", "--json").stdout)["logs"]
        assert set(acknowledged) <= {log["id"] for log in listed}
        assert json.loads(cli.run("destination", "list", "--env", "development", "--json").stdout) == {
            "destinations": []
        }
    finally:
        assert restarted.stop() == 0


def test_the_cli_applies_the_same_destination_rules(cli: Cli, tmp_path: Path) -> None:
    cli.invoke("init", "--admin-email", "admin@example.org")
    hook = ("destination", "create", "--env", "development", "--kind", "webhook", "--name")
    strict = {"HEALTHWAY_ALLOW_LOOPBACK_DESTINATIONS": "0", "HEALTHWAY_ALLOW_HTTP_DESTINATIONS": "0"}

    def refused(*args: str, **env: str) -> str:
        result = cli.invoke(*args, check=False, **env)
        assert result.returncode == 1 and result.stdout == "" and "Traceback" not in result.stderr, result
        return result.stderr.strip()

    # Item 20: a control character in a value that becomes a header.
    injected = refused(*hook, "H", "--url", "https://hooks.example.org/in", "--verification-token", "vt\r\nX-Evil: 1")
    assert injected == "error: verification_token must not contain control characters"
    # Item 2: loopback, link-local and plain http need the operator's opt-ins.
    assert "address destinations may not reach" in refused(*hook, "H", "--url", "https://127.0.0.1/in", **strict)
    assert "address destinations may not reach" in refused(*hook, "H", "--url", "https://169.254.169.254/", **strict)
    assert "must be an https:// URL" in refused(*hook, "H", "--url", "http://hooks.example.org/in", **strict)
    assert cli.invoke(*hook, "Local", "--url", "http://127.0.0.1:9/in", "--json").returncode == 0  # opted in
    # Item 12: an SFTP host key fingerprint, when given, must be one (without one, the first key met is pinned).
    (tmp_path / "pw").write_text("pw-123\n")
    sftp: tuple[str, ...] = (
        "destination",
        "create",
        "--env",
        "development",
        "--kind",
        "sftp",
        "--name",
        "Drop",
        "--host",
    )
    sftp += ("files.example.org", "--port", "22", "--username", "u", "--password-file", str(tmp_path / "pw"))
    assert "host_key_sha256 must be a SHA256 fingerprint" in refused(*sftp, "--host-key-sha256", "MD5:ab")
    assert "host_key_sha256" not in json.loads(cli.invoke(*sftp, "--path", "/in", "--json").stdout)["config"]
