#!/usr/bin/env bash
# Makes sure the dashboard's browser tests can run: Debian's Chromium (driven
# headless by playwright-core, which never downloads a browser of its own)
# and the dashboard's npm packages from web/package-lock.json.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x /usr/bin/chromium ]; then
  echo "Chromium not found; installing Debian's chromium package" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium >/dev/null
fi
if ! command -v npm >/dev/null; then
  echo "npm not found; installing Debian's nodejs and npm packages" >&2
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
# Install exactly the lock file, again only when it changed since the last
# install (the stamp is a copy of the lock file it installed).
if ! cmp -s web/package-lock.json web/node_modules/.riskwatch-installed 2>/dev/null; then
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
  cp web/package-lock.json web/node_modules/.riskwatch-installed
fi
