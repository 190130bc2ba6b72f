"""``healthway destination create --kind mllp --tls`` with CA and client certificate files, through the real CLI:
the CLI reads the files and the server stores their PEM content (DESIGN §6)."""

from __future__ import annotations

import json

from tests.e2e.conftest import Cli
from tests.integration.test_mllp_tls import write_pki

MLLP = ("destination", "create", "--env", "development", "--kind", "mllp", "--host", "lab.example.org")


def test_mllp_tls_destination_stores_the_files_pem_content_and_never_shows_the_key(cli: Cli) -> None:
    (cli.cwd / "pki").mkdir()
    pki = write_pki(cli.cwd / "pki")
    cli.invoke("init", "--org", "Northwind", "--admin-email", "admin@example.org")
    files = ("--tls-ca-file", "pki/ca.pem", "--tls-cert-file", "pki/client.pem", "--tls-key-file", "pki/client.key")

    created = cli.invoke(*MLLP, "--name", "Lab", "--port", "6661", "--tls", *files, "--json")
    config = json.loads(created.stdout)["config"]
    assert config == {
        "host": "lab.example.org",
        "port": 6661,
        "tls": True,
        "ca_pem": (pki / "ca.pem").read_text(),
        "cert_pem": (pki / "client.pem").read_text(),
        "has_key_pem": True,  # the key is a secret: stored, never shown
    }
    assert "PRIVATE KEY" not in created.stdout + created.stderr
    listed = cli.invoke("destination", "list", "--env", "development", "--json").stdout
    assert "PRIVATE KEY" not in listed and "has_key_pem" in listed

    def refused(*args: str) -> str:
        result = cli.invoke(*MLLP, "--name", "Bad", "--port", "6662", *args, check=False)
        assert result.returncode == 1 and result.stdout == "", result
        assert "Traceback" not in result.stderr and "BEGIN" not in result.stderr
        return result.stderr.strip()

    assert refused("--tls", "--tls-ca-file", "pki/nope.pem").startswith("error: cannot read pki/nope.pem")
    assert refused("--tls", "--tls-ca-file", "pki/client.key") == "error: ca_pem holds no PEM CA certificate"
    assert "both cert_pem and key_pem" in refused("--tls", "--tls-cert-file", "pki/client.pem")
    assert "set tls to true" in refused("--tls-ca-file", "pki/ca.pem")
