#!/usr/bin/env bash
# Makes sure PostgreSQL server binaries (Debian's postgresql package, 15 on
# bookworm) are installed. Tests and the demo start their own private
# clusters with them; no running server is needed or used.
set -euo pipefail
if [ -n "${RISKWATCH_PG_BIN:-}" ] && [ -x "$RISKWATCH_PG_BIN/postgres" ]; then
  exit 0
fi
for d in /usr/lib/postgresql/*/bin; do
  if [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then
    exit 0
  fi
done
echo "PostgreSQL server binaries not found; installing Debian's postgresql package" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq postgresql >/dev/null
ls -d /usr/lib/postgresql/*/bin >&2
