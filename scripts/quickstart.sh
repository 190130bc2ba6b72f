#!/usr/bin/env bash
# Install, initialize on first run (printing the URL, the first admin's credentials once and three next steps),
# and serve with the embedded defaults: SQLite in the user's data directory (~/.local/share/healthway unless
# HEALTHWAY_DATA_DIR says otherwise), HTTP on 8080 and MLLP on 2575 (the SFTP listener is not built yet).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
.venv/bin/healthway init --if-needed --org "${HEALTHWAY_ORG_NAME:-My Organization}" \
  --admin-email "${HEALTHWAY_ADMIN_EMAIL:-admin@example.org}"
exec .venv/bin/healthway serve
