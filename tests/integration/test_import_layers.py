"""``lint-imports`` (run by scripts/test.sh over the real tree) fails when an import breaks a layer rule."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint(project: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports over ``project`` (its pyproject.toml and src/), with that src/ first on the path."""
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_transport_importing_storage_breaks_the_lint(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(
        ROOT / "src" / "healthway", tmp_path / "src" / "healthway", ignore=shutil.ignore_patterns("__pycache__")
    )
    route = tmp_path / "src" / "healthway" / "transports" / "http" / "health.py"
    route.write_text(route.read_text() + "\nfrom healthway.storage.models import Source  # noqa: E402\n")
    run = _lint(tmp_path)
    assert run.returncode == 1
    assert "healthway.transports is not allowed to import healthway.storage" in run.stdout
    assert "healthway.transports.http.health -> healthway.storage.models" in run.stdout
