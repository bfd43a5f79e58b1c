#!/usr/bin/env bash
# Makes sure Prometheus and promtool (Debian's prometheus package, 2.42 on
# bookworm) are installed. The Grafana folder's test starts its own private
# Prometheus on a free port with them and checks the alert rules with
# promtool; no running server is needed or used, so the package's service is
# kept from starting and stopped should it start anyway.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/usr/bin"
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
echo "prometheus or promtool not found; installing Debian's prometheus package" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
export DEBIAN_FRONTEND=noninteractive

# A policy-rc.d that answers 101 ("action forbidden") keeps package scripts
# from starting services; an existing one is the admin's and stays.
policy=/usr/sbin/policy-rc.d
own_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  own_policy=1
fi
cleanup() {
  if [ -n "$own_policy" ]; then $SUDO rm -f "$policy"; fi
}
trap cleanup EXIT

$SUDO apt-get update -qq
# Without the recommended node exporter: nothing here scrapes the machine.
$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
$SUDO service prometheus stop >/dev/null 2>&1 || true
command -v prometheus promtool >&2
