#!/usr/bin/env bash
# Install Healthway into ./.venv on Debian. `--test` also installs what the test suite needs
# (PostgreSQL server binaries, OpenSSH client, sshpass, curl) and the test/dev Python dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(python3 python3-venv python3-pip)
[ "${1:-}" = "--test" ] && packages+=(postgresql openssh-client sshpass curl)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}" >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip>=25.1"  # 25.1: dependency groups
if [ "${1:-}" = "--test" ]; then
  .venv/bin/pip install -q --disable-pip-version-check -e . --group dev
else
  .venv/bin/pip install -q --disable-pip-version-check -e .
fi
