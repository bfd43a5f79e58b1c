#!/usr/bin/env bash
# Makes sure systemd-analyze (Debian's systemd package) is installed: the
# tests check deploy/riskwatch.service with it. Nothing is started; the
# machine's init is left as it is.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/usr/bin"
if command -v systemd-analyze >/dev/null; then
  exit 0
fi
echo "systemd-analyze not found; installing Debian's systemd package" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends systemd >/dev/null
command -v systemd-analyze >/dev/null
