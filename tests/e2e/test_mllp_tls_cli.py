"""``healthway destination create --kind mllp --tls`` with CA and client certificate files, through the real CLI."""

from __future__ import annotations

import json

from tests.e2e.conftest import Cli
from tests.integration.test_mllp_tls import write_pki

MLLP = ("destination", "create", "--env", "development", "--kind", "mllp", "--host", "lab.example.org")


def test_mllp_tls_destination_stores_absolute_file_paths_and_refuses_bad_files(cli: Cli) -> None:
    (cli.cwd / "pki").mkdir()
    pki = write_pki(cli.cwd / "pki")
    cli.run("init", "--org", "Northwind", "--admin-email", "admin@example.org")
    files = ("--tls-ca-file", "pki/ca.pem", "--tls-cert-file", "pki/client.pem", "--tls-key-file", "pki/client.key")

    created = cli.run(*MLLP, "--name", "Lab", "--port", "6661", "--tls", *files, "--json")
    config = json.loads(created.stdout)["config"]
    assert config == {
        "host": "lab.example.org",
        "port": 6661,
        "tls": True,
        "ca_file": str(pki / "ca.pem"),  # relative paths are made absolute against the working directory
        "cert_file": str(pki / "client.pem"),
        "key_file": str(pki / "client.key"),
    }
    assert "BEGIN" not in created.stdout + created.stderr  # paths only, never the files' contents

    def refused(*args: str) -> str:
        result = cli.run(*MLLP, "--name", "Bad", "--port", "6662", *args, check=False)
        assert result.returncode == 1 and result.stdout == "", result
        assert "Traceback" not in result.stderr and "BEGIN" not in result.stderr
        return result.stderr.strip()

    missing = str(cli.cwd / "pki" / "nope.pem")
    assert refused("--tls", "--tls-ca-file", "pki/nope.pem") == f"error: ca_file {missing} does not exist"
    assert "both cert_file and key_file" in refused("--tls", "--tls-cert-file", "pki/client.pem")
    assert "set tls to true" in refused("--tls-ca-file", "pki/ca.pem")
