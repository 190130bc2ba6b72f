#!/usr/bin/env bash
# Install everything, then lint, type-check and run the whole test suite (SQLite and PostgreSQL).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
.venv/bin/ruff check
.venv/bin/ruff format --check
.venv/bin/mypy
.venv/bin/lint-imports  # the layer rules of STYLE.md ([tool.importlinter] in pyproject.toml)
# pytest exits 5 when it collects no test: that fails here, as it should. Many tests wait on subprocesses and
# sockets, so twice as many workers as cores keep both cores busy (4: 398 s for the whole CI against 490 s with
# 3 on the 2-core machine; HEALTHWAY_TEST_WORKERS overrides).
# Branch coverage of the code run in the test processes (not in the `healthway` subprocesses some e2e tests start),
# with a floor: the figure measured when it was set, rounded down, less 2.
exec .venv/bin/pytest -n "${HEALTHWAY_TEST_WORKERS:-4}" \
  --cov=healthway --cov-branch --cov-report=term:skip-covered --cov-fail-under=91 "$@"
