#!/usr/bin/env bash
# Makes sure Prometheus and promtool (Debian's prometheus package, 2.42 on
# bookworm) are installed. The Grafana folder's test starts its own private
# Prometheus on a free port and checks the alert rules with promtool; no
# running server is needed or used.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/usr/bin"
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
echo "prometheus or promtool not found; installing Debian's prometheus package" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Without the recommended node exporter: nothing here scrapes the machine.
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# Should the package have started its system service, stop it, so that no
# test comes to depend on a server it did not start.
$SUDO service prometheus stop >/dev/null 2>&1 || true
command -v prometheus promtool >&2
