"""The README's client examples work as written (issue 16): the curl + one-liner block against a real server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.e2e.conftest import Cli, start_server


def _readme_block(containing: str) -> str:
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    [block] = [b for b in blocks if containing in b]
    return str(block)


def test_the_readme_curl_example_gets_a_token_and_sends(cli: Cli, tmp_path: Path) -> None:
    cli.invoke("init", "--admin-email", "admin@example.org")
    cli.invoke("source", "create", "--env", "development", "--name", "EHR")
    key = cli.invoke("key", "create-oauth", "--env", "development", "--generate", "--json").stdout
    (tmp_path / "healthway-key.json").write_text(key)
    server = start_server(cli)
    script = _readme_block("client_assertion_type")
    script = script.replace("URL=http://127.0.0.1:8080", f"URL={server.base_url}")
    script = script.replace(".venv/bin/python", sys.executable)
    try:
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False
        )
    finally:
        server.stop()
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert answer["Meta"]["DataModel"] == "PatientAdmin" and len(answer["Meta"]["Logs"]) == 1
